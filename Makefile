# Two commands a newcomer needs: `make book` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
# The data directory: real images (CIFAR-10, CelebA, MNIST) that cannot be downloaded here.
# Override with `make book SEATBELT_DATA=/path/to/data`; ../shared/data is where this workplace keeps them.
SEATBELT_DATA ?= $(abspath ../shared/data)
export SEATBELT_DATA

.PHONY: env test book clean bench

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# The unit tests, then every notebook of the toc under nbval at its smoke defaults, in toc order
# (the scorecard last, reading what the chapters wrote into _build/smoke/results), in one run.
test: env
	notebooks="$$($(BIN)/python -m seatbelt.book toc)" && \
	$(BIN)/python -m pytest --nbval-lax tests $$notebooks

# Execute the chapters whose source, parameters or library changed (PROFILE=smoke|cpu|paper),
# render _build/$(PROFILE)/html, then open every page in headless Chromium. Chromium is
# Debian's package, installed here when missing; CI skips this check (installing a browser
# every run costs more than the tests).
book: env
	command -v chromium >/dev/null || { apt-get update && apt-get install -y --no-install-recommends chromium; }
	$(BIN)/python -m seatbelt.book build --profile $(PROFILE) --check

bench: env
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/attacks.py

clean:
	rm -rf _build
