# `make test` does all the set-up on a fresh machine, then lints and runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FASHION_MNIST_DEB := /usr/share/datasets/fashion-mnist

.PHONY: test lint data venv clean

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Real Fashion-MNIST for offline machines: Debian's package, when apt is usable and it is missing.
data:
	@if [ -e $(FASHION_MNIST_DEB)/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "note: $(FASHION_MNIST_DEB) missing and apt unusable; Fashion-MNIST will be downloaded"; fi

lint: venv
	$(BIN)/ruff check .

test: venv data lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
