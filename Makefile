# dldna-lite: `make book` builds the HTML book, `make test` runs the tests. Both do the whole set-up first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CACHE := $(or $(DLDNA_CACHE_DIR),$(HOME)/.cache/dldna_lite)
DATA := $(CACHE)/fashion_mnist_test.npz
PORT ?= 8000

.PHONY: setup data book test serve sync lock benchmarks check-html clean
.DEFAULT_GOAL := book

setup: $(STAMP) $(DATA)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

$(DATA): | $(STAMP)
	bash scripts/get-data.sh $(BIN)/python

data: $(DATA)

book: setup
	@# jupyter-cache keys on the code, not on DLDNA_PROFILE: drop the executed outputs when the profile changes
	@mkdir -p _build; profile=$${DLDNA_PROFILE:-cpu}; \
	  if [ "$$(cat _build/.profile 2>/dev/null)" != "$$profile" ]; then rm -rf _build/.jupyter_cache _build/jupyter_execute; fi; \
	  echo $$profile > _build/.profile
	DLDNA_PROFILE=$${DLDNA_PROFILE:-cpu} DLDNA_STATIC_WIDGETS=1 DLDNA_PROGRESS=0 \
	  $(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo
	@echo "The book is at $(CURDIR)/_build/html/index.html"
	@echo "Serve it with: make serve   (python -m http.server $(PORT) --directory _build/html), then open http://localhost:$(PORT)"

test: setup
	DLDNA_PROFILE=quick DLDNA_PROGRESS=0 $(BIN)/python -m pytest

serve:
	python3 -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

sync:  ## regenerate the paired .ipynb files (no outputs) from the MyST .md sources
	$(BIN)/jupytext --sync book/*.md exercises/*.md

lock:  ## refresh the exact versions used for local set-up
	$(BIN)/pip freeze --exclude-editable > constraints.txt

check-html:  ## after `make book`: sliders, math and no network in headless Chromium (needs apt's chromium)
	command -v chromium >/dev/null || apt-get install -y -q chromium
	$(BIN)/pip install -q playwright
	python3 -m http.server 8765 --bind 127.0.0.1 --directory _build/html >/dev/null 2>&1 & pid=$$!; sleep 1; \
	  $(BIN)/python scripts/check_html.py _build/html; rc=$$?; kill $$pid; exit $$rc

benchmarks: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf _build
