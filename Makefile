# Set-up is part of every target: the first run creates .venv and installs the package.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-fast demo lint gpu-check mutation clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# A plain `torch` requirement would pull a multi-GB CUDA build: install the CPU wheel first.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[test,plot,popgym,dev,export,sweep,ray,tracking]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(PY) -m d3rlpy_elmur demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# On one CUDA GPU (under 8 minutes once installed): the tests marked `cuda`, then training
# updates/s (ELMURDT and d3rlpy's DT) and evaluation throughput on cuda:0, and a JSON summary.
# The script sets up the venv itself (over the system's CUDA torch where there is one).
gpu-check:
	PYTHON=$(PYTHON) VENV=$(VENV) bash benchmarks/gpu_check.sh

# Mutants of the model, the replay and the evaluation against the fast tests ([tool.mutmut] in
# pyproject.toml). Hours on 2 cores, so not in CI; rerunning continues where it stopped. One torch
# thread per child: two children on two cores.
mutation: $(STAMP)
	$(PY) -m pip install -q -e ".[mutation]"
	OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2
	$(VENV)/bin/mutmut results
	# per module: mutants by status, then caught (killed, or hanging until the timeout) of all
	$(VENV)/bin/mutmut results --all true | awk -F': ' '{ \
	    m = $$1; sub(/^ +/, "", m); sub(/\.x(_|ǁ).*/, "", m); n[m " " $$2]++; all[m]++; \
	    if ($$2 == "killed" || $$2 == "timeout") caught[m]++ } \
	  END { for (x in n) print x, n[x]; \
	    for (m in all) { printf "%s caught %d of %d (%.1f%%)\n", m, caught[m], all[m], \
	      100 * caught[m] / all[m]; c += caught[m]; a += all[m] } \
	    printf "all modules caught %d of %d (%.1f%%)\n", c, a, 100 * c / a }' \
	  | sort

clean:
	rm -rf $(VENV) build dist *.egg-info mutants
