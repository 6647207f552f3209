"""Training throughput (images/s) of the VAE, the beta-TCVAE and the Seatbelt-VAE on the same nets.

One optimiser step (forward, backward, Adam) on binary images, as `seatbelt.training.train` takes
it: channels-last images, the TC estimator's loops compiled, glibc told to keep freed memory
(`seatbelt.device.keep_freed_memory`, process-wide, so the peer below gets it too), and the nets'
matrix products written as convolutions run as matrix products (`seatbelt.nets.MatmulConv2d`, a
property of the nets, so the peer gets it too). Prints:
1. at 64x64 and 32x32, the models side by side with the overhead of the TC penalty and of the
   hierarchy over the plain VAE step; where pythae is installed (`pip install -e .[bench]`),
   pythae 0.1.2's BetaTCVAE step (MWS) wrapped around the same encoder and decoder beside ours,
   and, as context, around the same nets written with torch's convolution layers throughout (as
   Chen et al.'s code and a pythae user write them);
2. the TC overhead against the latent size d_z, at both image sizes, beside the estimator alone
   and its floor: two fused passes of one exp and one add per term of the (B, B, D) tensor (an
   exact estimator that does not store that tensor evaluates every term once forward and once
   backward), as a share of the plain VAE step: where the floor alone exceeds 10%, no such
   estimator meets the goal on this machine;
3. which of the speed-ups paid (channels-last images, matrix products as such, the compiled TC
   estimator, the kept allocator): each one switched off alone;
4. that training still means the same: the final held-out ELBO of the same seeds trained the
   fast way and the reference way (the textbook estimator, plain autograd over the whole
   (B, B, D) tensor, as pythae and Chen et al.'s code write it; default layout; torch's
   convolution layers), against the seed spread;
5. each training-speed goal, met or not: at least 1.5x pythae's step, TC overhead at most 10%. The
   speed-up over pythae is judged with both in one process (the same allocator); pythae as its
   users run it (a process of its own, glibc's default allocator) is printed beside it as context,
   and so is the ceiling: pythae's step over our plain VAE step, the speed-up a TC penalty that
   cost nothing would give on the same nets. The goal table is also written to
   _build/bench/train_throughput.csv for bench/goals.py, which prints it beside the attacks'.

Steps are timed in interleaved rounds (every model once per round), and the median is taken,
so that a slow spell of the machine does not land on one model alone.

    python bench/train_throughput.py [--batch 1024] [--rounds 3] [--threads N] [--skip-elbo]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext

import pandas as pd
import torch

from goals import save
from seatbelt import tc, zoo
from seatbelt.device import keep_freed_memory
from seatbelt.gaussian import log_density
from seatbelt.models import ModelConfig, build_model, seatbelt_sizes
from seatbelt.nets import ConvDecoder, ConvEncoder, MatmulConv2d, MatmulConvTranspose2d
from seatbelt.training import TrainConfig, train

SPEEDUP_GOAL = 1.5
TC_OVERHEAD_GOAL = 0.10
LATENTS = (10, 32, 64, 128)
DATASET_SIZE = 737_280


@contextmanager
def estimator_compiled(enabled: bool):
    """Inside the block the TC estimator's loops are compiled, or eager (never compiled where
    compiling is off)."""
    was = tc.compile_enabled()
    tc._COMPILE["enabled"] = enabled and was
    try:
        yield
    finally:
        tc._COMPILE["enabled"] = was


def textbook_log_qz(z, mu, logvar, dataset_size: int, estimator: str = "mws"):
    """tc.log_qz as most code writes it: plain autograd over the whole (B, B, D) tensor."""
    batch = z.shape[0]
    if estimator == "mws":
        log_w = torch.full((batch, batch), -math.log(dataset_size * batch), dtype=z.dtype)
    else:
        log_w = tc.mss_log_weights(batch, dataset_size, dtype=z.dtype)
    pairwise = log_density(z[:, None], mu[None], logvar[None])
    return torch.logsumexp(pairwise.sum(-1) + log_w, 1), torch.logsumexp(
        pairwise + log_w[:, :, None], 1
    ).sum(-1)


@contextmanager
def textbook_estimator():
    """Inside the block every model trains with :func:`textbook_log_qz`."""
    fast = tc.log_qz
    tc.log_qz = textbook_log_qz
    try:
        yield
    finally:
        tc.log_qz = fast


def torch_layers(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with the nets' matrix-product layers swapped for torch's convolutions holding the
    same parameters."""
    swaps = {MatmulConv2d: torch.nn.Conv2d, MatmulConvTranspose2d: torch.nn.ConvTranspose2d}
    for module in list(model.modules()):
        for name, layer in module.named_children():
            if type(layer) in swaps:
                plain = swaps[type(layer)](
                    layer.in_channels,
                    layer.out_channels,
                    layer.kernel_size,
                    layer.stride,
                    bias=layer.bias is not None,
                )
                plain.load_state_dict(layer.state_dict())
                setattr(module, name, plain)
    return model


class Stepper:
    """One model's optimiser step on a fixed batch, timed a step at a time."""

    def __init__(
        self,
        model: torch.nn.Module,
        loss,
        batch: int,
        shape,
        channels_last: bool = True,
        autocast: bool = False,
    ):
        torch.manual_seed(0)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(memory_format=layout).train()
        self.loss = loss
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.x = ((torch.rand(batch, *shape) > 0.8).float() * 2 - 1).contiguous(
            memory_format=layout
        )
        self.autocast = autocast
        self.times: list[float] = []
        self.step()  # warms allocators and compiles; not timed

    def step(self) -> float:
        start = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        context = torch.autocast("cpu", dtype=torch.bfloat16) if self.autocast else nullcontext()
        with context:
            loss = self.loss(self.model, self.x)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - start

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)


def time_interleaved(steppers: dict[str, Stepper], rounds: int, steps: int) -> dict[str, float]:
    for _ in range(rounds):
        for stepper in steppers.values():
            stepper.times += [stepper.step() for _ in range(steps)]
    return {name: s.seconds for name, s in steppers.items()}


def ours(config: ModelConfig, batch: int, torch_convs: bool = False, **kwargs) -> Stepper:
    torch.manual_seed(0)
    model = torch_layers(build_model(config)) if torch_convs else build_model(config)
    return Stepper(model, lambda m, x: m.loss(x).total, batch, config.data_shape, **kwargs)


def pythae(config: ModelConfig, batch: int, torch_convs: bool = False) -> Stepper | None:
    """pythae 0.1.2's BetaTCVAE (MWS) around our ConvEncoder and ConvDecoder (written with torch's
    convolution layers throughout where ``torch_convs``); None without pythae."""
    try:
        from pythae.models import BetaTCVAE, BetaTCVAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
    except ImportError:
        return None
    latent = config.latent_sizes[0]

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = ConvEncoder(config.data_shape)
            self.head = torch.nn.Linear(self.net.out_features, 2 * latent)

        def forward(self, x):
            mu, logvar = self.head(self.net(x)).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = ConvDecoder(latent, config.data_shape)

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z))

    torch.manual_seed(0)
    peer_config = BetaTCVAEConfig(
        input_dim=config.data_shape,
        latent_dim=latent,
        beta=config.beta,
        use_mss=False,
        reconstruction_loss="mse",
    )
    model = BetaTCVAE(peer_config, encoder=Encoder(), decoder=Decoder())
    if torch_convs:
        torch_layers(model)
    return Stepper(
        model,
        lambda m, x: m({"data": x}, dataset_size=DATASET_SIZE).loss,
        batch,
        config.data_shape,
        channels_last=False,
    )


def models_side_by_side(args) -> tuple[list[dict], list[dict]]:
    latents, hidden = seatbelt_sizes(4)
    rows, goals = [], []
    for size in (64, 32):
        common = dict(data_shape=(1, size, size), dataset_size=DATASET_SIZE)
        configs = {
            "VAE (ELBO)": ModelConfig(objective="elbo", **common),
            "beta-TCVAE (MWS)": ModelConfig(beta=4, **common),
            "beta-TCVAE (MSS)": ModelConfig(beta=4, tc_estimator="mss", **common),
            "Seatbelt L=4": ModelConfig(
                kind="seatbelt", beta=4, latent_sizes=latents, hidden_sizes=hidden, **common
            ),
        }
        steppers = {name: ours(config, args.batch) for name, config in configs.items()}
        peer = pythae(configs["beta-TCVAE (MWS)"], args.batch)
        if peer is not None:
            steppers["pythae 0.1.2 BetaTCVAE (MWS)"] = peer
            steppers["pythae, torch's conv layers"] = pythae(
                configs["beta-TCVAE (MWS)"], args.batch, torch_convs=True
            )
        seconds = time_interleaved(steppers, args.rounds, args.steps)
        if peer is not None:
            seconds["pythae, own process, glibc default"] = shipped = fresh_process(
                args, "pythae", size, default_allocator=True
            )
        base = seconds["VAE (ELBO)"]
        for name, s in seconds.items():
            rows.append(
                {
                    "size": f"{size}x{size}",
                    "model": name,
                    "s/step": round(s, 3),
                    "images/s": round(args.batch / s),
                    "overhead vs VAE": f"{s / base - 1:+.1%}",
                }
            )
        if peer is not None:
            # the goal is judged with the allocator shared: the speed-up our code brings, not the
            # process setting
            for peer_seconds, how in (
                (seconds["pythae 0.1.2 BetaTCVAE (MWS)"], "same process"),
                (seconds["pythae, torch's conv layers"], "pythae on torch's conv layers, context"),
                (shipped, "pythae as shipped, context"),
            ):
                speedup = peer_seconds / seconds["beta-TCVAE (MWS)"]
                goals.append(
                    {
                        "goal": f"{size}x{size}: beta-TCVAE step vs pythae's ({how})",
                        "target": f">= {SPEEDUP_GOAL}x",
                        "measured": f"{speedup:.2f}x",
                        "met": speedup >= SPEEDUP_GOAL,
                    }
                )
            # what any TC estimator could reach on these nets: our plain VAE step, the penalty at
            # zero cost
            ceiling = seconds["pythae 0.1.2 BetaTCVAE (MWS)"] / base
            goals.append(
                {
                    "goal": (
                        f"{size}x{size}: ceiling, pythae's step vs our plain VAE step (context)"
                    ),
                    "target": f">= {SPEEDUP_GOAL}x",
                    "measured": f"{ceiling:.2f}x",
                    "met": ceiling >= SPEEDUP_GOAL,
                }
            )
    return rows, goals


def overhead_by_latent(args) -> tuple[list[dict], list[dict]]:
    rows, goals = [], []
    alone = {latent: estimator_ms(args.batch, latent, args.rounds) for latent in LATENTS}
    floor = {latent: 2 * exp_pass_ms(args.batch, latent, args.rounds) for latent in LATENTS}
    for size in (32, 64):
        for latent in LATENTS:
            common = dict(
                data_shape=(1, size, size), dataset_size=DATASET_SIZE, latent_sizes=(latent,)
            )
            seconds = time_interleaved(
                {
                    "vae": ours(ModelConfig(objective="elbo", **common), args.batch),
                    "tcvae": ours(ModelConfig(beta=4, **common), args.batch),
                },
                args.rounds,
                args.steps if size == 32 else 1,
            )
            overhead = seconds["tcvae"] / seconds["vae"] - 1
            floor_share = floor[latent] / (1e3 * seconds["vae"])
            rows.append(
                {
                    "size": f"{size}x{size}",
                    "d_z": latent,
                    "VAE images/s": round(args.batch / seconds["vae"]),
                    "beta-TCVAE images/s": round(args.batch / seconds["tcvae"]),
                    "TC overhead": f"{overhead:+.1%}",
                    "estimator alone ms": round(alone[latent], 1),
                    "floor ms": round(floor[latent], 1),
                    "floor / VAE step": f"{floor_share:.1%}",
                }
            )
            goals.append(
                {
                    "goal": f"{size}x{size}: TC overhead, d_z {latent}",
                    "target": f"<= {TC_OVERHEAD_GOAL:.0%}",
                    "measured": f"{overhead:+.1%}",
                    "met": overhead <= TC_OVERHEAD_GOAL,
                }
            )
            goals.append(
                {
                    "goal": f"{size}x{size}: floor of that overhead, d_z {latent} (context)",
                    "target": f"<= {TC_OVERHEAD_GOAL:.0%}",
                    "measured": f"{floor_share:+.1%}",
                    "met": floor_share <= TC_OVERHEAD_GOAL,
                }
            )
    return rows, goals


def estimator_ms(batch: int, latent: int, rounds: int) -> float:
    """Median milliseconds of tc.log_qz forward and backward on posteriors like a trained
    model's."""
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(batch, latent, generator=gen).requires_grad_()
    logvar = (torch.randn(batch, latent, generator=gen) - 2).requires_grad_()
    z = (
        (mu + torch.exp(0.5 * logvar) * torch.randn(batch, latent, generator=gen))
        .detach()
        .requires_grad_()
    )

    def step():
        joint, marginals = tc.log_qz(z, mu, logvar, DATASET_SIZE)
        (joint - marginals).sum().backward()

    return _median_ms(step, rounds)


def exp_pass_ms(batch: int, latent: int, rounds: int) -> float:
    """Median milliseconds of one compiled pass of exp and a sum over a (B, D, B) tensor it never
    stores."""
    gen = torch.Generator().manual_seed(0)
    z, mu_t = torch.randn(batch, latent, generator=gen), torch.randn(latent, batch, generator=gen)
    one_pass = torch.compile(lambda z, mu_t: torch.exp(z[:, :, None] - mu_t).sum(-1), dynamic=True)
    return _median_ms(lambda: one_pass(z, mu_t), rounds)


def _median_ms(fn, rounds: int) -> float:
    fn()  # compiles; not timed
    times = []
    for _ in range(3 * rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def fresh_process(args, child: str, size: int, default_allocator: bool) -> float:
    """Median seconds of one step of ``child`` timed in a new process, with or without
    keep_freed_memory."""
    command = [
        sys.executable,
        __file__,
        "--child",
        child,
        "--size",
        str(size),
        "--batch",
        str(args.batch),
        "--rounds",
        str(args.rounds),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run(
        command + (["--default-allocator"] if default_allocator else []),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.split()[-1])


def child(args) -> None:
    """The --child mode of :func:`fresh_process`: print one median step time."""
    if not args.default_allocator:
        keep_freed_memory()
    config = ModelConfig(beta=4, data_shape=(1, args.size, args.size), dataset_size=DATASET_SIZE)
    stepper = pythae(config, args.batch) if args.child == "pythae" else ours(config, args.batch)
    print(time_interleaved({"x": stepper}, args.rounds, args.steps)["x"])


def avenues(args) -> list[dict]:
    """The beta-TCVAE step (32x32 at d_z 10 and 128, 64x64 at d_z 10) with each avenue switched off
    alone."""
    rows = []
    for size, latent in ((32, 10), (32, 128), (64, 10)):
        config = ModelConfig(
            beta=4, data_shape=(1, size, size), dataset_size=DATASET_SIZE, latent_sizes=(latent,)
        )
        steppers = {
            "all on": ours(config, args.batch),
            "contiguous layout (no channels-last)": ours(config, args.batch, channels_last=False),
            "torch's conv layers for the matrix products": ours(
                config, args.batch, torch_convs=True
            ),
            "bfloat16 autocast added": ours(config, args.batch, autocast=True),
        }
        seconds = time_interleaved(steppers, args.rounds, args.steps)
        with estimator_compiled(False):
            seconds["TC estimator eager (not compiled)"] = time_interleaved(
                {"x": ours(config, args.batch)}, args.rounds, args.steps
            )["x"]
        if latent == 10:  # the allocator is process-wide: a fresh process each way
            seconds["all on, fresh process"] = fresh_process(
                args, "beta-tcvae", size, default_allocator=False
            )
            seconds["glibc's default allocator, fresh process"] = fresh_process(
                args, "beta-tcvae", size, default_allocator=True
            )
        for name, s in seconds.items():
            rows.append(
                {
                    "size": f"{size}x{size}",
                    "d_z": latent,
                    "setting": name,
                    "s/step": round(s, 3),
                    "images/s": round(args.batch / s),
                    "vs all on": f"{s / seconds['all on']:.2f}x",
                }
            )
    return rows


def elbo_equivalence(seeds=(0, 1, 2), steps=150, batch=256) -> tuple[pd.DataFrame, dict]:
    """Final held-out ELBO of a dSprites beta-TCVAE (32x32, d_z 10, beta 4), fast and reference
    training (the textbook estimator, contiguous layout, torch's convolution layers)."""
    train_data, test = zoo.data("dsprites", "smoke"), zoo.data("dsprites", "smoke", split="test")
    x = test.get(slice(None))
    config = ModelConfig(beta=4, data_shape=train_data.item_shape, dataset_size=len(train_data))
    rows = []
    for seed in seeds:
        row = {"seed": seed}
        for name, fast in (("fast", True), ("reference", False)):
            torch.manual_seed(seed)
            model = build_model(config) if fast else torch_layers(build_model(config))
            start = time.perf_counter()
            with nullcontext() if fast else textbook_estimator():
                train(
                    model,
                    train_data,
                    TrainConfig(steps=steps, batch_size=batch, seed=seed),
                    show_progress=False,
                    channels_last=fast,
                )
            row[f"{name} seconds"] = round(time.perf_counter() - start, 1)
            with torch.no_grad():
                row[f"{name} ELBO"] = float(
                    model.elbo(x, generator=torch.Generator().manual_seed(99)).mean()
                )
        rows.append(row)
    table = pd.DataFrame(rows)
    spread = float(table["reference ELBO"].max() - table["reference ELBO"].min())
    gap = float((table["fast ELBO"] - table["reference ELBO"]).abs().max())
    goal = {
        "goal": "same seed: |ELBO fast - reference| vs seed spread",
        "target": f"<= {spread:.1f} nats",
        "measured": f"{gap:.2f} nats",
        "met": gap <= spread,
    }
    return table, goal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="steps per model per round")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--skip-elbo", action="store_true", help="skip the training-equivalence table (about 3 min)"
    )
    parser.add_argument("--child", choices=("pythae", "beta-tcvae"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--default-allocator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        return child(args)
    keep_freed_memory()

    print(
        f"batch {args.batch}, median of {args.rounds} interleaved rounds of {args.steps} steps, "
        f"{args.threads} threads, torch {torch.__version__}, TC loops compiled: "
        f"{tc.compile_enabled()}"
    )
    rows, goals = models_side_by_side(args)
    print(pd.DataFrame(rows).to_string(index=False))
    if not any("pythae" in r["model"] for r in rows):
        print(
            "(pythae is not installed: `pip install -e .[bench]` adds its BetaTCVAE step beside "
            "ours)"
        )

    by_latent, latent_goals = overhead_by_latent(args)
    print(
        f"\nTC overhead against the latent size, batch {args.batch} (64x64: one step per round); "
        "the estimator alone (forward and backward) and its floor"
    )
    print(pd.DataFrame(by_latent).to_string(index=False))

    print(
        "\nwhich avenues paid: the beta-TCVAE step with one avenue off (or bf16 added); the two "
        "fresh processes compare the allocator alone"
    )
    print(pd.DataFrame(avenues(args)).to_string(index=False))

    goals += latent_goals
    if not args.skip_elbo:
        table, goal = elbo_equivalence()
        print(
            "\ntraining means the same: dSprites beta-TCVAE, 32x32, d_z 10, beta 4, 150 steps of "
            "256, held-out ELBO (nats per image); reference: the textbook estimator, contiguous "
            "layout, torch's conv layers"
        )
        print(table.to_string(index=False))
        goals.append(goal)
    print("\ntraining-speed goals")
    print(pd.DataFrame(goals).to_string(index=False))
    print(
        f"(written to {save('train_throughput', goals)}; `python bench/goals.py` prints it beside "
        "the attacks')"
    )


if __name__ == "__main__":
    main()
