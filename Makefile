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
# uv (pip-installed into the venv, pinned) does the installs: the run-time venv took
# 34-44 s from a cold cache against 67-85 s with pip (BUILD_NOTES.md, "Set-up"). Where
# uv cannot be installed or its install fails, pip does the same install.
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
INSTALL = if $(UV) --version >/dev/null 2>&1; then \
	$(UV) pip install --quiet --python $(PY) --compile-bytecode $(1) || \
	{ echo "uv failed; installing with pip"; $(PY) -m pip install --quiet $(1); }; \
	else $(PY) -m pip install --quiet $(1); fi

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==$(UV_VERSION) || echo "uv unavailable; installing with pip"
	$(call INSTALL,-r requirements.txt)
	$(call INSTALL,--no-deps -e .)
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(call INSTALL,-r requirements.txt -r requirements-dev.txt)
	touch $(DEV_STAMP)

demo: $(STAMP)
	$(PY) tools/run_demo.py

test: $(DEV_STAMP)
	$(PY) -m pytest -q

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check sercseg_tf tools tests bench

clean:
	rm -rf $(VENV) data runs
