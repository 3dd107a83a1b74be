# lkr: `make demo` sets everything up and runs the main job on the built-in demo set;
# `make test` runs the tests. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test figures reproduce clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: setup
	$(BIN)/python -m lkr demo --out out/demo

test: setup
	$(BIN)/python -m pytest -q

figures: setup
	$(BIN)/python -m lkr figures

clean:
	rm -rf out .pytest_cache
