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
# Under the tests, torch's OpenMP threads sleep instead of spinning while they wait: on a loaded machine (CI, a laptop
# doing other work) spinning threads of several processes starve each other (a quick-profile epoch took 41 s instead
# of 1.9 s with other work on both cores). The numbers do not change; only who waits how. Not for `make book`: on an
# idle machine sleeping threads made a cpu-profile epoch 1.6-2x slower (2.6-3.2 s against 1.3-2.1 s, 2 threads), and
# the cpu book took 31 min instead of about 15. A busy machine can still ask for it: OMP_WAIT_POLICY=PASSIVE make book.
test test-book test-built test-units test-notebooks test-lowest notebooks gpu-check-dry gpu-time-model: export OMP_WAIT_POLICY ?= PASSIVE
COLAB := constraints-colab.txt
LOWEST := _build/lowest-venv
# The oldest Python that pyproject.toml allows, for make test-lowest (pyenv's, where `python3.10` is only a shim)
LOWEST_PYTHON ?= $(firstword $(foreach p,$(shell command -v python3.10) $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10),$(if $(shell $(p) -V 2>/dev/null),$(p))) $(PYTHON))

.PHONY: setup data browser book book-quick test test-book test-built test-units test-notebooks test-lowest student-kernel colab-constraints lab serve sync lock \
	notebooks benchmarks check-html gpu-bundle gpu-check gpu-check-dry gpu-time-model clean
.DEFAULT_GOAL := book

setup: $(STAMP) $(DATA)

# uv does the set-up's installs (scripts/fast_install.py: the same packages and versions as pip, from the same
# indexes, several times faster). pip puts it in _build/uv; where that fails (no network), pip does the installs.
UV_VERSION := 0.13.9
UV := _build/uv/bin/uv
export DLDNA_UV := $(CURDIR)/$(UV)
$(UV):
	@$(PYTHON) -m pip install -q --target _build/uv "uv==$(UV_VERSION)" >/dev/null 2>&1 || \
	  echo "uv $(UV_VERSION) could not be installed: the set-up installs with pip (slower)"

# The package with its runtime dependencies (what a notebook's install cell brings) plus the book's build tools and the
# test tools (pyproject.toml's extras), at the exact versions of constraints.txt.
$(STAMP): constraints.txt pyproject.toml | $(UV)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PYTHON) scripts/fast_install.py $(BIN)/python -- -q -e ".[book,test]" -c constraints.txt
	touch $(STAMP)

$(DATA): | $(STAMP)
	bash scripts/get-data.sh $(BIN)/python

data: $(DATA)

browser:  ## Debian's chromium for the browser test (tests/test_html.py); playwright comes with the test extras of pyproject.toml
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || \
	  echo "chromium is missing and could not be installed: tests/test_html.py will be skipped (apt-get install chromium)"

book: setup
	@# jupyter-cache keys on the notebooks' code only: drop it when the profile or the package changed
	@bash scripts/cache-guard.sh _build $${DLDNA_PROFILE:-cpu}
	DLDNA_PROFILE=$${DLDNA_PROFILE:-cpu} DLDNA_STATIC_WIDGETS=1 DLDNA_PROGRESS=0 \
	  $(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo; echo "Execution time per page (profile $${DLDNA_PROFILE:-cpu}):"; \
	  $(BIN)/python scripts/page_times.py _build --json _build/page-times-$${DLDNA_PROFILE:-cpu}.json
	@echo
	@echo "The book is at $(CURDIR)/_build/html/index.html"
	@echo "Serve it with: make serve   (python -m http.server $(PORT) --directory _build/html), then open http://localhost:$(PORT)"

book-quick: setup  ## the whole book in the quick profile, in its own folder with its own execution cache
	@bash scripts/cache-guard.sh $(QUICK)/_build quick
	DLDNA_PROFILE=quick DLDNA_STATIC_WIDGETS=1 DLDNA_PROGRESS=0 \
	  $(BIN)/jupyter-book build . --path-output $(QUICK) --warningiserror --keep-going
	@echo; echo "Execution time per page (profile quick):"; \
	  $(BIN)/python scripts/page_times.py $(QUICK)/_build --json $(QUICK)/page-times-quick.json

# The student kernel: a fresh venv with Colab's versions (constraints-colab.txt) of everything that installing this
# repository touches, but not dldna-lite itself (scripts/student_kernel.py).
# scripts/student_kernel.py needs only the standard library: it runs beside the set-up of .venv (make test: -j).
student-kernel: | $(UV)
	$(PYTHON) scripts/student_kernel.py build $(STUDENT) --python $(PYTHON) --constraints $(COLAB)

# make test, in three phases that keep both cores busy (phase 2: each process at one thread, OMP/MKL_NUM_THREADS=1,
# 1. set-up: .venv (local wheels), the student kernel at Colab's versions (downloads) and chromium, side by side;
# 2. side by side: the quick book executed in the student kernel (each page from its own install cell, at Colab's
#    versions), followed by the tests of the built book (browser, claims ledger, citations), and the unit tests that
#    do not need the built book (pytest -m "not built_book");
# 3. the exercise notebooks under nbval in the same kernel (after the book: its first install cell installs the
#    package there), and the check that the install cells changed no version Colab ships.
# `make -j1 test` is not needed: the phases run one after the other whatever -j says.
# (OMP_NUM_THREADS=2 make test runs it at two threads per process instead)
PHASE := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=$${MKL_NUM_THREADS:-1} $(MAKE) --no-print-directory \
  --output-sync=target
test:
	@$(MAKE) --no-print-directory -j3 --output-sync=target setup browser student-kernel
	@$(PHASE) -j2 test-built test-units
	$(MAKE) --no-print-directory notebooks KERNEL_VENV=$(STUDENT) NOTEBOOKS=exercises
	$(BIN)/python scripts/student_kernel.py verify $(STUDENT) --constraints $(COLAB)

test-book:  ## (phase 2 of make test) the quick book, executed in the student kernel
	@bash scripts/cache-guard.sh $(QUICK)/_build quick $(COLAB)
	@start=$$(date +%s); DLDNA_PROFILE=quick DLDNA_STATIC_WIDGETS=1 DLDNA_PROGRESS=0 DLDNA_INSTALL=$(CURDIR) \
	  DLDNA_BOOK_KERNEL=dldna-student JUPYTER_PATH=$(CURDIR)/$(STUDENT)/share/jupyter \
	  $(BIN)/jupyter-book build . --path-output $(QUICK) --warningiserror --keep-going && \
	  echo "test-book: the quick book in $$(( $$(date +%s) - start )) s"

test-built: test-book  ## (phase 2 of make test, after the quick book) the tests of the built pages
	@start=$$(date +%s); DLDNA_PROFILE=quick DLDNA_PROGRESS=0 DLDNA_HTML_DIR=$(QUICK_HTML) DLDNA_REQUIRE_BROWSER=1 \
	  $(BIN)/python -m pytest -m built_book && echo "test-built: pytest -m built_book in $$(( $$(date +%s) - start )) s"

test-units:  ## (phase 2 of make test) the unit tests that do not read the built book
	@start=$$(date +%s); DLDNA_PROFILE=quick DLDNA_PROGRESS=0 DLDNA_STUDENT_PYTHON=$(CURDIR)/$(STUDENT)/bin/python \
	  $(BIN)/python -m pytest -m "not built_book" && echo "test-units: pytest in $$(( $$(date +%s) - start )) s"

# Every book and exercise notebook under nbval in a fresh student kernel at Colab's versions (the book's pages are
# already run this way by `make test`'s quick book; this runs them live, with ipywidgets instead of static sliders).
test-notebooks: student-kernel data
	$(MAKE) --no-print-directory notebooks KERNEL_VENV=$(STUDENT) NOTEBOOKS="book exercises"
	$(BIN)/python scripts/student_kernel.py verify $(STUDENT) --constraints $(COLAB)

# The same at the lowest versions pyproject.toml allows, on its oldest Python (not part of make test: about 10 min
# and a 3 GB download of torch 2.5; run it whenever pyproject.toml changes and quote the result in the README).
test-lowest: setup data | $(UV)
	$(BIN)/python scripts/lowest_constraints.py > _build/constraints-lowest.txt
	$(BIN)/python scripts/student_kernel.py build $(LOWEST) --python $(LOWEST_PYTHON) --constraints _build/constraints-lowest.txt
	$(MAKE) --no-print-directory notebooks KERNEL_VENV=$(LOWEST) NOTEBOOKS="book exercises"
	DLDNA_STUDENT_PYTHON=$(CURDIR)/$(LOWEST)/bin/python $(BIN)/python -m pytest tests/test_colab.py -k live_kernel
	$(BIN)/python scripts/student_kernel.py verify $(LOWEST) --constraints _build/constraints-lowest.txt

# nbval over NOTEBOOKS in the kernel of KERNEL_VENV; each notebook's install cell installs this clone
notebooks:
	DLDNA_PROFILE=quick DLDNA_PROGRESS=0 DLDNA_INSTALL=$(CURDIR) JUPYTER_PATH=$(CURDIR)/$(KERNEL_VENV)/share/jupyter \
	  $(BIN)/python -m pytest --nbval-lax --nbval-kernel-name dldna-student --nbval-cell-timeout=900 $(NOTEBOOKS)

colab-constraints:  ## constraints-colab.txt from a newer Colab freeze: make colab-constraints FREEZE=<file> SOURCE="..."
	$(BIN)/python scripts/colab_constraints.py $(FREEZE) --source "$(SOURCE)" > $(COLAB)

# The offline GPU check (issue 27). Here: `make gpu-bundle` (the wheels the GPU image lacks + Fashion-MNIST, 44 MiB).
# On the lent GPU machine (python3 with torch, no network; carry _build/gpu-bundle): `make gpu-check [BUDGET=540]`,
# or `python3 scripts/gpu_check.py --budget 540` where there is no make. The report goes to $OUT (or _build/gpu-check).
GPU_BUNDLE := _build/gpu-bundle
BUDGET ?= 540

gpu-bundle: setup  ## the bundle scripts/gpu_check.py needs on the offline GPU machine
	$(BIN)/python scripts/gpu_bundle.py --out $(GPU_BUNDLE)

gpu-check:  ## on the GPU machine: every page in the gpu profile within BUDGET s, one report (JSON + table)
	python3 scripts/gpu_check.py --budget $(BUDGET) --bundle $(GPU_BUNDLE)

gpu-check-dry: setup  ## the same rehearsed here on the CPU in the quick profile (about 6 min on 2 cores)
	$(BIN)/python scripts/gpu_check.py --dry --budget 900 --bundle $(GPU_BUNDLE) --out _build/gpu-dry

# The time model's counts (every page in the quick profile with each operator and FLOP counted) and its predictions
# (scripts/gpu_time_model.py); the quick times come from make book-quick, measured as make book measures the cpu
# times; CPU_TIMES: {page: seconds} of a cpu-profile build (make book writes _build/page-times-cpu.json).
# Run it on an idle machine: the model measures this CPU's speed too.
gpu-time-model: book-quick
	$(BIN)/python scripts/gpu_check.py --dry --count --budget 1400 --out _build/gpu-count --work _build/gpu-count-work
	$(BIN)/python scripts/gpu_time_model.py calibrate --counts _build/gpu-count/gpu-check.json \
	  --quick-times $(QUICK)/page-times-quick.json $(if $(CPU_TIMES),--cpu-times $(CPU_TIMES))

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
