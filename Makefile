# dldna-lite: `make book` builds the HTML book, `make test` runs the tests. Both do the whole set-up first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CACHE := $(or $(DLDNA_CACHE_DIR),$(HOME)/.cache/dldna_lite)
DATA := $(CACHE)/fashion_mnist_test.npz
PORT ?= 8000
QUICK := _build/quick
QUICK_HTML := $(QUICK)/_build/html
STUDENT := _build/student-venv

.PHONY: setup data browser book book-quick test test-notebooks lab serve sync lock benchmarks check-html gpu-check clean
.DEFAULT_GOAL := book

setup: $(STAMP) $(DATA)

# The package with its runtime dependencies (what a notebook's install cell brings) plus the book's build tools and the
# test tools (pyproject.toml's extras), at the exact versions of constraints.txt.
$(STAMP): constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[book,test]" -c constraints.txt
	touch $(STAMP)

$(DATA): | $(STAMP)
	bash scripts/get-data.sh $(BIN)/python

data: $(DATA)

browser:  ## Debian's chromium for the browser test (tests/test_html.py); playwright comes with requirements-dev.txt
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || \
	  echo "chromium is missing and could not be installed: tests/test_html.py will be skipped (apt-get install chromium)"

book: setup
	@# jupyter-cache keys on the notebooks' code only: drop it when the profile or the package changed
	@bash scripts/cache-guard.sh _build $${DLDNA_PROFILE:-cpu}
	DLDNA_PROFILE=$${DLDNA_PROFILE:-cpu} DLDNA_STATIC_WIDGETS=1 DLDNA_PROGRESS=0 \
	  $(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo; echo "Execution time per page (profile $${DLDNA_PROFILE:-cpu}):"; $(BIN)/python scripts/page_times.py _build
	@echo
	@echo "The book is at $(CURDIR)/_build/html/index.html"
	@echo "Serve it with: make serve   (python -m http.server $(PORT) --directory _build/html), then open http://localhost:$(PORT)"

book-quick: setup  ## the whole book in the quick profile, in its own folder with its own execution cache
	@bash scripts/cache-guard.sh $(QUICK)/_build quick
	DLDNA_PROFILE=quick DLDNA_STATIC_WIDGETS=1 DLDNA_PROGRESS=0 \
	  $(BIN)/jupyter-book build . --path-output $(QUICK) --warningiserror --keep-going

test: setup book-quick browser  ## unit tests + the browser test of the quick book + every notebook in the student kernel
	DLDNA_PROFILE=quick DLDNA_PROGRESS=0 DLDNA_HTML_DIR=$(QUICK_HTML) DLDNA_REQUIRE_BROWSER=1 \
	  $(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-notebooks

# Every book and exercise notebook under nbval, as a student runs it: in a fresh venv that holds only torch and
# ipykernel (scripts/student-kernel.sh); the notebook's own install cell installs the rest, from this clone.
test-notebooks: setup data
	bash scripts/student-kernel.sh $(PYTHON) $(STUDENT)
	DLDNA_PROFILE=quick DLDNA_PROGRESS=0 DLDNA_INSTALL=$(CURDIR) JUPYTER_PATH=$(CURDIR)/$(STUDENT)/share/jupyter \
	  $(BIN)/python -m pytest --nbval-lax --nbval-kernel-name dldna-student --nbval-cell-timeout=600 book exercises
	@ls -d $(STUDENT)/lib/python*/site-packages/dldna_lite >/dev/null 2>&1 || \
	  { echo "the notebooks passed, but no install cell installed dldna_lite into $(STUDENT): the test ran elsewhere"; exit 1; }

gpu-check: setup data  ## on a CUDA machine: quick tests, the gpu-profile book in _build/gpu, time per page
	bash scripts/gpu-check.sh

lab: setup  ## JupyterLab in the venv, opened on the exercise notebooks
	$(BIN)/pip install -q -c constraints.txt jupyterlab
	$(BIN)/jupyter lab --notebook-dir=$(CURDIR) exercises/

serve:
	python3 -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

sync: setup  ## install cells and launch links from _config.yml, then the paired .ipynb files (no outputs) from the .md
	$(BIN)/python scripts/sync_notebooks.py
	$(BIN)/jupytext --sync book/*.md exercises/*.md

lock:  ## refresh the exact versions used for local set-up
	$(BIN)/pip freeze --exclude-editable > constraints.txt

check-html: setup browser  ## after `make book`: the browser test on the cpu book in _build/html
	DLDNA_HTML_DIR=_build/html DLDNA_REQUIRE_BROWSER=1 $(BIN)/python -m pytest tests/test_html.py -v

# Each prints one summary line "NAME: ratio Rx (median of N)" (warm-up, alternated contenders, equality checked);
# scan_distributed compares 1 process with torchrun's 2 on one run.
benchmarks: setup  ## every benchmark in benchmarks/ (several minutes on 2 cores)
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/landscape_scan.py
	$(BIN)/python benchmarks/hessian_top_eigenvalues.py
	$(BIN)/python benchmarks/scan_distributed.py

clean:
	rm -rf _build
