"""The book machine: run the chapters with papermill, render them with Jupyter Book, check them.

    python -m seatbelt.book build --profile cpu --check   # what `make book` runs
    python -m seatbelt.book validate --profile all        # every chapter's params, no execution
    python -m seatbelt.book params book/intro.ipynb       # what a chapter declares
    python -m seatbelt.book run book/intro.ipynb -p beta_tc 8 -p steps 600
                                                          # one chapter, your values
    python -m seatbelt.book sweep book/intro.ipynb --grid beta_tc=4,8 --grid seed=0,1 --out DIR
    python -m seatbelt.book toc                           # the toc's notebooks (for nbval)
    python -m seatbelt.book clean --references book/x.ipynb
                                                          # outputs cleared, nbval references stored

Modules: :mod:`.toc` (which pages, in order), :mod:`.params` (declared parameters, profiles,
validation), :mod:`.layout` (a build's folders, and its jobs: each chapter with its final
parameters), :mod:`.runner` (papermill execution, change detection, the build lock),
:mod:`.monitor` (progress on the terminal), :mod:`.plan` (what the chapters need from the zoo,
and the ETA), :mod:`.render` (Jupyter Book), :mod:`.publish` (the static site), :mod:`.browser`
(headless Chromium check of the HTML), :mod:`.sweep` (grids), :mod:`.tasks` (in order or on
Dask), :mod:`.clean` (committed notebooks: no outputs but nbval's references).
"""

from .params import PROFILES, ParameterError

__all__ = ["PROFILES", "ParameterError"]
