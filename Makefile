# Every target does its own set-up on a fresh clone: `make train` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The stamp is rebuilt when the dependency list changes.
STAMP  := $(VENV)/.installed-dev
DEBIAN_DATA := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz

.PHONY: train test data bench figures docs venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

# Fashion-MNIST from Debian's package dataset-fashion-mnist (or wherever MINICNN_DATA points).
data:
	@if [ -n "$$MINICNN_DATA" ] || [ -f $(DEBIAN_DATA) ]; then \
		echo "Fashion-MNIST: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST is missing. Install it with:  sudo apt-get install dataset-fashion-mnist"; \
		echo "or put the four *-ubyte.gz files in a folder and set MINICNN_DATA to it."; \
	fi

train: $(STAMP) data
	$(PY) -m minicnn train --model article

test: $(STAMP) data
	$(PY) -m pytest

# The figures of docs/, drawn from minicnn's kernels (tests/test_figures.py checks they are current).
figures: $(STAMP)
	$(PY) docs/make_figures.py --out docs/figures

docs: figures

# The run, then its verdict target by target (a missed target is reported, not an error of make).
bench: $(STAMP)
	$(PY) -m benchmarks --update-readme
	-$(PY) -m benchmarks.machines --check

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
