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

test: env
	$(BIN)/python -m pytest tests

book: env
	$(BIN)/python -m seatbelt.book build --profile $(PROFILE)

bench: env
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/attacks.py

clean:
	rm -rf _build
