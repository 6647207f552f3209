"""dSprites: the official grid and index order, the renderer's geometry, selections, and the npz
path."""

import importlib
import math

import numpy as np
import pytest
import torch

from seatbelt.data import DamagedFileError, DatasetNotFoundError, dsprites, swiss_roll

ds = importlib.import_module(
    "seatbelt.data.dsprites"
)  # the module: `seatbelt.data.dsprites` is the loader function

torch.set_num_threads(1)


def test_grid_matches_the_official_description():
    assert ds.FACTOR_SIZES == (3, 6, 40, 32, 32)
    assert ds.N_IMAGES == 737_280
    official = (
        np.array([1.0, 2.0, 3.0]),
        np.linspace(0.5, 1, 6),
        np.linspace(0, 2 * np.pi, 40),
        np.linspace(0, 1, 32),
        np.linspace(0, 1, 32),
    )
    for ours, theirs in zip(ds.FACTOR_VALUES, official):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-12)


def test_index_is_the_official_c_order_formula():
    g = torch.Generator().manual_seed(0)
    factors = torch.stack([torch.randint(n, (1000,), generator=g) for n in ds.FACTOR_SIZES], 1)
    colour = np.zeros(len(factors), dtype=np.int64)
    expected = np.ravel_multi_index((colour, *factors.T.numpy()), (1, *ds.FACTOR_SIZES))
    np.testing.assert_array_equal(ds.index_of(factors).numpy(), expected)
    np.testing.assert_array_equal(
        ds.factors_of(torch.from_numpy(expected)).numpy(), factors.numpy()
    )
    # posY varies fastest, shape slowest
    assert ds.factors_of(torch.tensor([1]))[0].tolist() == [0, 0, 0, 0, 1]
    assert ds.factors_of(torch.tensor([32]))[0].tolist() == [0, 0, 0, 1, 0]
    assert ds.factors_of(torch.tensor([ds.N_IMAGES - 1]))[0].tolist() == [2, 5, 39, 31, 31]


def test_a_selection_comes_in_official_index_order_with_its_values():
    d = dsprites(size=16, shape=[2, 0], scale=5, orientation=[0, 39], posX=[3, 4], posY=[30, 1, 7])
    assert len(d) == 2 * 1 * 2 * 2 * 3
    index = ds.index_of(d.factors)
    assert torch.all(index[1:] > index[:-1])
    expected = [
        ds.index_of(torch.tensor([[s, 5, o, x, y]])).item()
        for s in (0, 2)
        for o in (0, 39)
        for x in (3, 4)
        for y in (1, 7, 30)
    ]
    assert index.tolist() == expected
    torch.testing.assert_close(d.factor_values, ds.factor_values_of(d.factors))
    assert d.factor_values[:, 0].unique().tolist() == [
        1.0,
        3.0,
    ]  # official shape values are 1, 2, 3
    assert torch.equal(d.labels, d.factors[:, 0])
    assert d.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert d.meta["source"] == "generated" and d.meta["selection"]["shape"] == [0, 2]


@pytest.mark.parametrize("size", [64, 32])
def test_images_are_binary_uint8_and_scale_to_plus_minus_one(size):
    d = dsprites(size=size, n=300, seed=1)
    assert d.x.dtype == torch.uint8 and d.x.shape == (300, 1, size, size) and d.levels == 2
    assert set(d.x.unique().tolist()) == {0, 1}
    assert set(d.get(slice(None)).unique().tolist()) == {-1.0, 1.0}
    assert (d.x.flatten(1).sum(1) > 0).all()  # every sprite is visible


def _brute_force(factors, size, pad):
    """Pixels of each sprite on a canvas extended by ``pad`` pixels on every side, from the
    documented geometry."""
    r = ds.RADIUS
    scale = ds.FACTOR_VALUES[1][factors[:, 1]] * r
    angle = ds.FACTOR_VALUES[2][factors[:, 2]]
    cx = r + ds.FACTOR_VALUES[3][factors[:, 3]] * (1 - 2 * r)
    cy = r + ds.FACTOR_VALUES[4][factors[:, 4]] * (1 - 2 * r)
    centres = (torch.arange(-pad, size + pad, dtype=torch.float64) + 0.5) / size
    dx = centres[None, None, :] - cx[:, None, None]
    dy = cy[:, None, None] - centres[None, :, None]  # y up
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    u = (cos * dx + sin * dy) / scale[:, None, None]
    v = (-sin * dx + cos * dy) / scale[:, None, None]
    out = torch.zeros(u.shape, dtype=torch.bool)
    for k in range(3):
        rows = factors[:, 0] == k
        out[rows] = ds.inside(k, u[rows], v[rows])
    return out


@pytest.mark.parametrize("size, orientations", [(32, range(0, 40, 2)), (64, range(0, 40, 8))])
def test_largest_sprites_stay_inside_the_frame_and_match_brute_force(size, orientations):
    """At scale 1, on the frame's edge positions, nothing falls outside the frame and the windowed
    renderer draws exactly the pixels a whole-canvas evaluation gives."""
    edge = [p for p in range(32)]
    positions = [(x, y) for x in edge for y in edge if x in (0, 31) or y in (0, 31)]
    factors = torch.tensor(
        [[s, 5, o, x, y] for s in range(3) for o in orientations for x, y in positions]
    )
    pad = size // 4
    full = _brute_force(factors, size, pad)
    frame = full[:, pad : pad + size, pad : pad + size]
    assert full.flatten(1).sum(1).tolist() == frame.flatten(1).sum(1).tolist()  # nothing outside
    rendered = ds.render(factors, size)[:, 0].bool()
    mismatch = (rendered != frame).flatten(1).sum(1)
    assert mismatch.sum() <= 1e-4 * frame.sum()  # float32 vs float64 on pixels at the boundary


def test_every_shape_fits_the_unit_disc_tightly():
    t = torch.linspace(-1.2, 1.2, 1201, dtype=torch.float64)
    u, v = torch.meshgrid(t, t, indexing="xy")
    r = torch.sqrt(u * u + v * v)
    for k in range(3):
        inside = ds.inside(k, u, v)
        assert not inside[r > 1 + 1e-9].any()
        assert inside[r > 0.99].any()  # the farthest point is at distance 1


def _pixel_area(shape):
    """Mean pixel count per unit area of the sprite frame, over a grid of positions and
    orientations."""
    scales = range(6)
    factors = torch.tensor(
        [
            [shape, k, o, x, y]
            for k in scales
            for o in range(0, 40, 4)
            for x in range(0, 32, 3)
            for y in range(0, 32, 3)
        ]
    )
    counts = ds.render(factors, 64).flatten(1).sum(1).double().reshape(6, -1).mean(1)
    unit = (ds.FACTOR_VALUES[1] * ds.RADIUS * 64) ** 2  # pixels per unit area at each scale
    return counts, counts / unit


def _heart_area():
    h = 1e-3
    t = torch.arange(-1 + h / 2, 1, h, dtype=torch.float64)
    u, v = torch.meshgrid(t, t, indexing="xy")
    return ds.inside(2, u, v).sum().item() * h * h


@pytest.mark.parametrize("shape, area", [(0, 2.0), (1, math.pi / 2), (2, None)])
def test_pixel_area_grows_with_scale_as_the_shape_area(shape, area):
    area = _heart_area() if area is None else area
    counts, per_unit = _pixel_area(shape)
    assert torch.all(counts[1:] > counts[:-1])
    # pixel-centre sampling is unbiased over positions: every scale recovers the true area
    torch.testing.assert_close(per_unit, torch.full_like(per_unit, area), rtol=0.03, atol=0)


def test_shapes_differ_and_the_orientation_grid_closes():
    g = torch.Generator().manual_seed(2)
    base = torch.stack([torch.randint(n, (200,), generator=g) for n in ds.FACTOR_SIZES], 1)

    def images(**fix):
        f = base.clone()
        for k, value in fix.items():
            f[:, ds.FACTOR_NAMES.index(k)] = value
        return ds.render(f, 64)

    square, ellipse, heart = (images(shape=k) for k in range(3))
    for a, b in [(square, ellipse), (square, heart), (ellipse, heart)]:
        assert (a != b).flatten(1).any(1).all()
    for k in range(3):  # orientations 0 and 2 pi coincide (the grid's step is 2 pi / 39)
        assert torch.equal(images(shape=k, orientation=0), images(shape=k, orientation=39))
        assert (images(shape=k, orientation=0) != images(shape=k, orientation=1)).flatten(1).any(
            1
        ).float().mean() > 0.9


def test_orientation_turns_counter_clockwise_on_screen():
    """The ellipse's long axis is horizontal at 0 and points up-right at index 5 (46 degrees)."""

    def covariance(orientation):
        img = ds.render(torch.tensor([[1, 5, orientation, 16, 16]]), 64)[0, 0]
        rows, cols = img.nonzero(as_tuple=True)
        rows, cols = rows.double() - rows.double().mean(), cols.double() - cols.double().mean()
        return (cols * cols).mean(), (rows * rows).mean(), (cols * rows).mean()

    xx, yy, xy = covariance(0)
    assert xx > 3 * yy and abs(xy) < 0.1 * xx
    xx, _, xy = covariance(5)
    assert xy < -0.3 * xx  # columns grow as rows shrink: up and to the right


def test_sample_is_seeded_sorted_and_inside_the_selection():
    a = dsprites(size=16, shape=[1, 2], scale=[0, 5], n=40, seed=7)
    b = dsprites(size=16, shape=[1, 2], scale=[0, 5], n=40, seed=7)
    c = dsprites(size=16, shape=[1, 2], scale=[0, 5], n=40, seed=8)
    assert torch.equal(a.x, b.x) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.factors, c.factors)
    assert set(a.factors[:, 0].tolist()) <= {1, 2} and set(a.factors[:, 1].tolist()) <= {0, 5}
    index = ds.index_of(a.factors)
    assert torch.all(index[1:] > index[:-1])
    assert torch.equal(a.x, ds.render(a.factors, 16))
    assert torch.equal(a.subset([0, 1]).factors, a.factors[:2])


def test_dict_selection_is_the_same_as_keywords():
    a = dsprites(size=16, **{"shape": [0], "posX": [0, 31], "orientation": 4})
    b = dsprites(size=16, shape=0, posX=[31, 0], orientation=[4])
    assert torch.equal(a.factors, b.factors) and torch.equal(a.x, b.x)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"size": 48}, "divisor of 64"),
        ({"size": 0}, "divisor of 64"),
        ({"shape": 3}, "shape takes class indices 0..2"),
        ({"orientation": [-1, 5]}, "orientation"),
        ({"posY": 32}, "posY"),
        ({"scale": [0.5]}, "integer class indices"),
        ({"scale": []}, "empty selection"),
        ({"n": 0}, "positive"),
        ({"shape": 0, "scale": 0, "orientation": 0, "n": 2000}, "exceeds"),
        ({"source": "web"}, "source"),
    ],
)
def test_bad_input_raises_a_clear_error(kwargs, words):
    with pytest.raises(ValueError, match=words):
        dsprites(**kwargs)


def test_render_rejects_bad_factors():
    with pytest.raises(ValueError, match="shape \\(N, 5\\)"):
        ds.render(torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="scale takes class indices 0..5"):
        ds.render(torch.tensor([[0, 6, 0, 0, 0]]))
    with pytest.raises(ValueError, match="indices must lie"):
        ds.factors_of(torch.tensor([ds.N_IMAGES]))


def _write_npz(path, rows):
    """A tiny file in the official layout: random images, so a test can tell loading from
    rendering."""
    g = np.random.default_rng(0)
    factors = ds.factors_of(torch.tensor(rows)).numpy()
    classes = np.concatenate([np.zeros((len(rows), 1), np.int64), factors], 1)
    values = ds.factor_values_of(torch.from_numpy(factors)).double().numpy()
    values = np.concatenate([np.ones((len(rows), 1)), values], 1)  # colour is 1
    imgs = (g.random((len(rows), 64, 64)) < 0.3).astype(np.uint8)
    metadata = np.array({"latents_sizes": np.array((1,) + ds.FACTOR_SIZES)}, dtype=object)
    np.savez_compressed(
        path, imgs=imgs, latents_classes=classes, latents_values=values, metadata=metadata
    )
    return imgs, factors, values


def test_npz_loads_the_stored_images_and_factors(tmp_path):
    rows = [0, 5, 1000, 40_000, 400_000, 737_279]
    imgs, factors, values = _write_npz(tmp_path / ds.NPZ_NAME, rows)
    d = dsprites(path=tmp_path / ds.NPZ_NAME)
    assert d.meta["source"] == "npz" and d.levels == 2
    np.testing.assert_array_equal(d.x[:, 0].numpy(), imgs)
    np.testing.assert_array_equal(d.factors.numpy(), factors)
    np.testing.assert_allclose(d.factor_values.numpy(), values[:, 1:], rtol=1e-6)

    shape2 = dsprites(path=tmp_path / ds.NPZ_NAME, shape=2)
    keep = factors[:, 0] == 2
    np.testing.assert_array_equal(shape2.x[:, 0].numpy(), imgs[keep])

    small = dsprites(path=tmp_path / ds.NPZ_NAME, size=32)
    blocks = imgs.reshape(len(rows), 32, 2, 32, 2).sum((2, 4))
    np.testing.assert_array_equal(
        small.x[:, 0].numpy(), (blocks >= 2).astype(np.uint8)
    )  # majority, ties on

    sample = dsprites(path=tmp_path / ds.NPZ_NAME, n=3, seed=0)
    assert len(sample) == 3 and set(ds.index_of(sample.factors).tolist()) <= set(rows)


def test_auto_source_finds_the_npz_in_the_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv("SEATBELT_DATA", raising=False)
    assert dsprites(size=16, shape=0, scale=0, orientation=0, posX=0).meta["source"] == "generated"
    assert (
        dsprites(size=16, shape=0, scale=0, orientation=0, posX=0, root=tmp_path).meta["source"]
        == "generated"
    )
    with pytest.raises(DatasetNotFoundError, match=ds.NPZ_NAME):
        dsprites(source="npz", root=tmp_path)
    _write_npz(tmp_path / ds.NPZ_NAME, [0, 1, 2])
    monkeypatch.setenv("SEATBELT_DATA", str(tmp_path))
    assert dsprites().meta["source"] == "npz" and len(dsprites()) == 3
    assert (
        dsprites(size=16, shape=0, scale=0, orientation=0, posX=0, source="generate").meta["source"]
        == "generated"
    )
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        dsprites(path=tmp_path / "nowhere.npz")


def test_packed_storage_gives_the_same_batches_at_an_eighth_of_the_memory():
    plain = dsprites(size=32, n=300, seed=4)
    packed = dsprites(size=32, n=300, seed=4, packed=True)
    assert packed.item_shape == plain.item_shape == (1, 32, 32)
    assert packed.x.numel() * 8 == plain.x.numel()
    torch.testing.assert_close(
        packed.get(torch.arange(300)), plain.get(torch.arange(300)), rtol=0, atol=0
    )
    torch.testing.assert_close(packed.subset([3, 1]).get([0, 1]), plain.get([3, 1]), rtol=0, atol=0)


def test_generated_data_needs_no_data_directory(tmp_path, monkeypatch):
    """A configured data directory that does not exist (a fresh clone) must not stop generation."""
    monkeypatch.setenv("SEATBELT_DATA", str(tmp_path / "absent"))
    assert dsprites(size=16, n=4).meta["source"] == "generated"
    assert len(swiss_roll(n=10)) == 10
    with pytest.raises(DatasetNotFoundError, match=f"{ds.NPZ_NAME}.*{tmp_path / 'absent'}"):
        dsprites(source="npz")


def test_a_damaged_npz_is_named(tmp_path):
    (tmp_path / ds.NPZ_NAME).write_bytes(b"<html>not the npz</html>")
    with pytest.raises(DamagedFileError, match=f"{tmp_path / ds.NPZ_NAME} is not a readable npz"):
        dsprites(root=tmp_path)
