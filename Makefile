# Two commands for a fresh machine: `make demo` (LLaDARec on the bundled ml-100k) and `make test`.
# Both create ./.venv on first use and reuse it afterwards (idempotent).
VENV ?= .venv
PYTHON ?= python3
# torch 2.13.0 is a CPU build; any torch >= 2.6 works, e.g. the build for your CUDA (make TORCH=torch).
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	# RecBole 1.2.1 pins ray<=2.6.3 (no wheel for Python >= 3.12): install it without its pins; setup.py
	# declares its real dependencies.
	$(PY) -m pip install --quiet --no-deps recbole==1.2.1
	# This install ends with "ERROR: pip's dependency resolver ... recbole 1.2.1 requires ray<=2.6.3": expected.
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) run_recbole_llada.py --model=LLaDARec --dataset=ml-100k --config_files=properties/demo/LLaDARec-ml-100k.yaml

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) saved log log_tensorboard  # results/ (comparison tables, tuning reports) stays
