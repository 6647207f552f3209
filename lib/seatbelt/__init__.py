"""seatbelt: TC-penalised and hierarchical VAEs, their adversarial attacks, and the book around them.

Modules, one concept each:
    gaussian  diagonal Gaussians: densities, KL, W2
    tc        minibatch estimators of the aggregate posterior (Appendix C, Eq 43)
    data      datasets: generated dSprites, Swiss roll, CIFAR-10, CelebA, MNIST, Chairs, 3D Faces
    nets      encoders and decoders (Chen et al. conv nets, MLPs)
    models    VAE / beta-VAE / beta-TCVAE and Seatbelt-VAE with one interface
    training  the training loop and the cache of trained models
    cache     checkpoints and the cache of trained models and results
    zoo       the book's models as named families, trained once per profile; cached attack batteries
    chapters  what each chapter asks of the zoo (the list the chapter and the build plan share)
    metrics   MIG (Chen et al. 2018) and its mutual-information table
    overlap   posterior overlap (Bhattacharyya) and widths; evaluating a model over a dataset
    heldout   held-out beta = 1 ELBO terms, active units, slopes against beta (Fig 6)
    disentanglement  MIG of trained models and its rank correlation with robustness
    denoising log p(x | z) with z ~ q(z | x + a eps) (Appendix F)
    classifiers  the downstream classifiers of Table 1, cached like models
    style     the book's theme and one colour per model family
    decomposition  Theorem 1's ELBO decomposition and the Eq 43 estimator study, numerically
    progress  training and attack progress for the terminal, never for the pages
    attacks   latent (KL, W2) and output attacks, solvers, the paper's protocol
    plots     figures shared by chapters (the attack panel)
    claims    the paper's claims C1-C13, their effect sizes, intervals and verdicts
    book      the runner: validated papermill parameters, profiles, rendering, sweeps
"""

__version__ = "0.1.0"
