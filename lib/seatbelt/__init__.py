"""seatbelt: TC-penalised and hierarchical VAEs, their adversarial attacks, and the book around them.

Modules, one concept each:
    gaussian  diagonal Gaussians: densities, KL, W2
    tc        minibatch estimators of the aggregate posterior (Appendix C, Eq 43)
    data      datasets: generated dSprites, Swiss roll, CIFAR-10, CelebA, MNIST, Chairs, 3D Faces
    nets      encoders and decoders (Chen et al. conv nets, MLPs)
    models    VAE / beta-VAE / beta-TCVAE and Seatbelt-VAE with one interface
    training  the training loop and the cache of trained models
    cache     checkpoints and the cache of trained models
    attacks   latent (KL, W2) and output attacks, solvers, the paper's protocol
    plots     figures shared by chapters (the attack panel)
    claims    the paper's claims C1-C13, their effect sizes, intervals and verdicts
    book      the runner: validated papermill parameters, profiles, rendering, sweeps
"""

__version__ = "0.1.0"
