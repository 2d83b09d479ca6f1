# `make test` does all the set-up on a fresh machine, then lints and runs the suite (but `slow`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FASHION_MNIST_DEB := /usr/share/datasets/fashion-mnist

.PHONY: test test-all lint data system venv clean demo readme-figures study paper-figures cluster-demo slurm-demo notebook

# `make demo`: the quick study end to end, into results/DEMO_NAME and results/DEMO_NAME-report.
STAMP := $(shell date +%Y%m%d-%H%M%S)
DEMO_NAME ?= quick-$(STAMP)

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Debian packages, installed where apt is usable (root, or sudo without a password) and one is
# missing: `data` real Fashion-MNIST for offline machines; `system` that, a real Slurm (slurm-wlm,
# munge) for the tests and `make slurm-demo`, and headless Chromium (chromium, chromium-driver) for the
# test of report.html in a browser.
DATA_PACKAGES := dataset-fashion-mnist
SYSTEM_PACKAGES := $(DATA_PACKAGES) slurm-wlm munge chromium chromium-driver
define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done 2>/dev/null); \
	if [ -z "$$missing" ] || ! command -v dpkg >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "note: apt unusable, not installed: $$missing (without dataset-fashion-mnist, Fashion-MNIST \
	is downloaded; without slurm-wlm and munge, the Slurm tests skip; without chromium and chromium-driver, \
	the browser test skips)"; fi
endef

data:
	$(call apt_install,$(DATA_PACKAGES))

system:
	$(call apt_install,$(SYSTEM_PACKAGES))

lint: venv
	$(BIN)/ruff check .

# `make test`: everything but the tests marked `slow` (the suite under 8 minutes on 2 cores; a first install adds about 4);
# `make test-all`: the whole suite, `slow` included (the full fault matrix, the multi-node cluster
# scenarios, a cold compile). CI runs both.
test: venv system lint
	$(BIN)/python -m pytest -q -m "not slow"

test-all: venv system lint
	$(BIN)/python -m pytest -q

demo: venv data
	$(BIN)/python -m trainables data --dataset fashion_mnist
	$(BIN)/python -m sweep run sweep/specs/quick.yaml --storage results --name $(DEMO_NAME)
	$(BIN)/python -m analysis figures results/$(DEMO_NAME) -o results/$(DEMO_NAME)-report
	@echo
	@echo "Done. Report: results/$(DEMO_NAME)-report/report.md"
	@echo "      Gap table: results/$(DEMO_NAME)-report/gap_table.md; figures beside them (PNG)"
	@echo "      In a browser: results/$(DEMO_NAME)-report/report.html"

# `make notebook`: JupyterLab on analysis/notebooks/explore.ipynb, reading the newest `make demo` results
# (RESULTS_DIR/quick-*, through AMORTIZATION_GAP_RESULTS); as root (a container) with --allow-root.
# Without a browser here: make notebook JUPYTER_ARGS=--no-browser
RESULTS_DIR ?= results
JUPYTER_ARGS ?=
notebook: venv
	@res=$$($(BIN)/python -m analysis.newest $(RESULTS_DIR)) || exit 1; \
	echo "Opening analysis/notebooks/explore.ipynb on $$res"; \
	root=$$([ "$$(id -u)" = 0 ] && echo --allow-root); \
	AMORTIZATION_GAP_RESULTS="$$res" exec $(BIN)/jupyter lab analysis/notebooks/explore.ipynb $$root $(JUPYTER_ARGS)

# The cluster workflow on this machine: a real S3 server and a `ray start` cluster (0-CPU head, two
# workers), the quick spec submitted as a Ray job, status and the gap table read from the bucket.
cluster-demo: venv data
	$(BIN)/python benchmarks/cluster_demo.py

# The Slurm path on this machine: a real Slurm (munged, slurmctld, three slurmd nodes), the smoke spec
# submitted with sbatch (cluster/slurm/sweep.sbatch), status and export read from outside the job.
slurm-demo: venv system
	$(BIN)/python benchmarks/slurm_demo.py

# The demo's figures and gap table (README.md; the other figures in docs/studies.md): a fresh demo and
# its measured gaps, each step timed (timing.json), copied into docs/demo/; scripts/sync_docs.py then
# refills every number the pages quote from them.
READ := results/readme-$(STAMP)
readme-figures: venv data
	$(BIN)/python scripts/timed.py $(READ)-timing.json demo --tee $(READ)-display.log -- \
		$(MAKE) --no-print-directory demo DEMO_NAME=readme-$(STAMP)
	$(BIN)/python scripts/timed.py $(READ)-timing.json evaluate -- \
		$(BIN)/python -m sweep evaluate $(READ) --points 200 --iwae-samples 1000
	$(BIN)/python scripts/timed.py $(READ)-timing.json figures -- \
		$(BIN)/python -m analysis figures $(READ) -o $(READ)-report
	rm -rf docs/demo && mkdir -p docs/demo
	cp $(READ)-report/*.png $(READ)-report/*_table.md $(READ)-report/*_table.csv docs/demo/
	cp $(READ)-timing.json docs/demo/timing.json && cp $(READ)-display.log docs/demo/display.log
	$(BIN)/python scripts/screenshot.py $(READ)-report/report.html docs/demo/report_html.png
	$(BIN)/python scripts/sync_docs.py

# A shipped study end to end, its figures and tables (markdown and CSV; the closing width's where it
# has one) and its wall time (timing.json) copied into docs/STUDY/: make study STUDY=gap_vs_n (the
# times: docs/studies.md)
STUDY ?= gap_vs_n
SRES := results/$(STUDY)-$(STAMP)
study: venv data
	$(BIN)/python scripts/timed.py $(SRES)-timing.json run -- \
		$(BIN)/python -m sweep run sweep/specs/$(STUDY).yaml --storage results --name $(STUDY)-$(STAMP)
	$(BIN)/python scripts/timed.py $(SRES)-timing.json figures -- \
		$(BIN)/python -m analysis figures $(SRES) -o $(SRES)-report
	rm -rf docs/$(STUDY) && mkdir -p docs/$(STUDY)
	cp $(SRES)-report/*.png $(SRES)-report/*_table.md $(SRES)-report/*_table.csv docs/$(STUDY)/
	find $(SRES)-report -maxdepth 1 -name 'closing_width.*' -exec cp {} docs/$(STUDY)/ \;
	cp $(SRES)-timing.json docs/$(STUDY)/timing.json

# The paper-scale check (hours on one CPU thread per run; resumable): the ablation table in docs/studies.md
# and its figures of our runs over Margossian & Blei's published band, in docs/paper/.
paper-figures: venv data
	$(BIN)/python benchmarks/paper_check.py --epochs 2000 --jobs 2 --out results/paper_check --brief \
		--figures docs/paper

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
