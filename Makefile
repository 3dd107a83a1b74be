# lkr: `make demo` sets everything up and runs the main job on the built-in demo set;
# `make test` runs the tests. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test figures reproduce clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { echo "lkr needs Python >= 3.11 (the pinned numpy 2.4.6, scipy, scikit-learn, matplotlib, pillow and scikit-image do); $(PYTHON) is $$($(PYTHON) --version 2>&1). Give another: make PYTHON=python3.11 ..."; exit 1; }
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

# The figures and the documents' tables read only results/: the two run side by side (2 cores).
figures: setup
	@$(BIN)/python -m lkr figures & f=$$!; \
	$(BIN)/python scripts/readme_tables.py --write README.md docs/results.md docs/method.md docs/cpu-runs.md docs/performance.md; \
	t=$$?; wait $$f && exit $$t

# The notebooks on your real data: make reproduce FER=path/to/fer2013.zip CK=path/to/CK+48.zip
# (optional: SCALE=full|cpu, EPOCHS=n, DEVICE=cuda|cpu, QUICK=1 for 2 CK+ folds). SCALE=full (the
# default) is the paper's; SCALE=cpu the reduced scale that trains on a CPU (lkr/config.py SCALES).
# Writes results/<scale>/ and figures/*_<scale>.*.
reproduce: setup
	@test -n "$(FER)" -a -n "$(CK)" || { echo "usage: make reproduce FER=path/to/fer2013 CK=path/to/CK+ [SCALE=full|cpu] [EPOCHS=n] [DEVICE=cuda] [QUICK=1] [WORKERS=n]"; exit 2; }
	$(BIN)/python -m lkr reproduce --fer "$(FER)" --ck "$(CK)" $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(DEVICE),--device $(DEVICE)) $(if $(QUICK),--quick) $(if $(WORKERS),--workers $(WORKERS)) $(if $(SCALE),--scale $(SCALE))

clean:
	rm -rf out .pytest_cache
