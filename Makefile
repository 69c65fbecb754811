# `make demo` and `make test` each bootstrap .venv from nothing, then run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint venv clean

venv: $(DEV_STAMP)

# The run-time packages (what `make demo` needs) and the test/bench extras (pytest, ruff,
# labelme, keras-hub) are installed in two steps, so the demo does not wait for the extras.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(DEV_STAMP)

demo: $(STAMP)
	$(PY) tools/run_demo.py

test: $(DEV_STAMP)
	$(PY) -m pytest -q

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check sercseg_tf tools tests bench

clean:
	rm -rf $(VENV) data runs
