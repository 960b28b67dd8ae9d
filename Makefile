# framelake: `make demo` runs the pipeline on the bundled corpus, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/framelake validate --config conf/local.yaml
	$(BIN)/framelake run --config conf/local.yaml

test: install
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf lake dist build *.egg-info
