# Two entry points: `make demo` and `make test`. Each builds .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[pyro,numpyro,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m faithful_guides demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2

bench: $(STAMP)
	$(BIN)/python benchmarks/inversion.py

clean:
	rm -rf $(VENV)
