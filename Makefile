# Two commands a newcomer needs: `make book` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
# The data directory: real images (CIFAR-10, CelebA, MNIST) that cannot be downloaded here.
# Override with `make book SEATBELT_DATA=/path/to/data`. ../shared/data, where this workplace keeps
# them, is used only if it exists (a fresh clone still generates dSprites, downloads CIFAR-10).
SEATBELT_DATA ?= $(abspath $(wildcard ../shared/data))
export SEATBELT_DATA

.PHONY: env test book publish clean bench zoo plan

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Lint and format checks (ruff, settings in pyproject.toml), the unit tests, then every notebook of the toc under nbval at its smoke defaults, in toc order
# (the scorecard last, reading what the chapters wrote into _build/smoke/results), in one run.
test: env
	$(BIN)/ruff check lib tests bench
	$(BIN)/ruff format --check lib tests bench
	notebooks="$$($(BIN)/python -m seatbelt.book toc)" && \
	$(BIN)/python -m pytest --nbval-lax tests $$notebooks

# The page check's browser: any installed Chromium or Chrome (CHROMIUM=/path picks one). Debian's
# chromium is installed only where that needs no one's permission (root with apt-get) and never
# fails the build; elsewhere (a laptop, macOS, conda, CI) the check is skipped with a line saying
# how to enable it.
CHROMIUM_IF_POSSIBLE = command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	[ -n "$$CHROMIUM" ] || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
	{ apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || true

# Execute the chapters whose source, parameters or library changed (PROFILE=smoke|cpu|paper),
# render _build/$(PROFILE)/html, then open every page in headless Chromium with no network:
# figures shown, maths typeset, no request outside the site, nothing wider than the text column.
book: env
	@$(CHROMIUM_IF_POSSIBLE)
	$(BIN)/python -m seatbelt.book build --profile $(PROFILE) --check

# The same book as a self-contained static site in _build/publish (relative links, MathJax and
# every asset inside, each chapter's results CSVs linked as downloads): open its index.html from
# disk, or serve the folder (.github/workflows/pages.yml deploys the smoke book to GitHub Pages).
publish: env
	@$(CHROMIUM_IF_POSSIBLE)
	$(BIN)/python -m seatbelt.book publish --profile $(PROFILE) --check

# Train every model the chapters of PROFILE need, then run their attacks (DASK=tcp://host:8786 on a
# Dask cluster), so that a machine with time (a cluster, a GPU box) fills the caches for everyone.
zoo: env
	$(BIN)/python -m seatbelt.book zoo --profile $(PROFILE) $(if $(DASK),--dask $(DASK))

# What `make book` would train and attack, what is cached, and the estimated minutes.
plan: env
	$(BIN)/python -m seatbelt.book plan --profile $(PROFILE)

bench: env
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/zoo_parallel.py --profile $(PROFILE)
	$(BIN)/python bench/time_to_quality.py --profile $(PROFILE)
	$(BIN)/python bench/compiled_step.py --profile $(PROFILE)
	$(BIN)/python bench/solver_threads.py --profile $(PROFILE)
	$(BIN)/python bench/attacks.py
	$(BIN)/python bench/attack_families.py --profile $(PROFILE)
	$(BIN)/python bench/peer_attack.py --profile $(PROFILE)
	$(BIN)/python bench/goals.py
	$(BIN)/python bench/mig.py
	$(BIN)/python bench/book_build.py --profile $(PROFILE)

clean:
	rm -rf _build
