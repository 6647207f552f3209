"""seatbelt: TC-penalised and hierarchical VAEs, their adversarial attacks, the book around them.

The module map (README points here), one concept per module, grouped by layer, lowest first. A
module imports only from its own layer and the layers before it: ARCHITECTURE.md says why and
which files key which cache; tests/test_layers.py holds the layers and checks the rule.

base
    digest    hashes of the library's code for cache keys, blind to comments and docstrings
    device    the device (CUDA when present), seeding, the CPU allocator
    progress  training and attack progress for the terminal, never for the pages
data
    data      datasets: generated dSprites, Swiss roll; CIFAR-10, SVHN, CelebA, MNIST, Chairs,
              3D Faces read from $SEATBELT_DATA
models
    gaussian  diagonal Gaussians: densities, KL, W2
    tc        minibatch estimators of the aggregate posterior (Appendix C, Eq 43)
    nets      encoders and decoders (Chen et al. conv nets, MLPs)
    models    VAE / beta-VAE / beta-TCVAE and Seatbelt-VAE with one interface
training
    training  the training loop (Adam, cosine decay, per-epoch metrics); fit() trains or loads
    cache     checkpoints, and the cache of trained models and results keyed by code digests
attacks
    attacks   latent (KL, W2) and output attacks, solvers, the paper's protocol and battery;
              fixed-budget and untargeted attacks with restarts
analysis
    metrics   MIG (Chen et al. 2018) and its mutual-information table
    similarity  MS-SSIM at the scales an image supports (torchmetrics); attack success rates
    overlap   posterior overlap (Bhattacharyya) and widths; evaluating a model over a dataset
    heldout   held-out beta = 1 ELBO terms, active units, slopes against beta (Fig 6)
    disentanglement  MIG of trained models and its rank correlation with robustness
    denoising log p(x | z) with z ~ q(z | x + a eps) (Appendix F)
    classifiers  the downstream classifiers of Table 1, cached like models
    decomposition  Theorem 1's ELBO decomposition and the Eq 43 estimator study, numerically
    defences  HMC on the true posterior as an inference-time defence; attacks through it
    claims    the paper's claims C1-C13, their effect sizes, intervals and verdicts
    plots     figures shared by chapters (the attack panel)
    style     the book's theme and one colour per model family
zoo
    zoo       the book's models as named families, trained once per profile; cached batteries
chapters
    chapters  what each chapter asks of the zoo (the list the chapter and the build plan share)
    page      what a chapter page does besides its argument: set up, glue numbers and effects
book
    book      the book machine: parameters, profiles, running, rendering, page check, sweeps
"""

__version__ = "0.1.0"
