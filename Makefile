# attn-export: every target sets itself up on a machine that has only Python 3.
# `make run` exports and verifies CBAM; `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The tested CPU install: torch pinned to the CPU wheel (an unpinned torch pulls CUDA packages).
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,bench
STAMP := $(VENV)/.installed-$(subst ==,-,$(TORCH_SPEC))

.PHONY: install run test test-gpu bench lint clean docker-cpu docker-trt

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

run: install
	$(BIN)/attn-export cbam --shape 1,512,7,7

test: install
	$(BIN)/python -m pytest -q

# GPU hosts: a separate venv with the `gpu` extra (TensorRT, onnxruntime-gpu in place of onnxruntime).
GPU_VENV ?= .venv-gpu
GPU_BIN := $(GPU_VENV)/bin
GPU_TORCH_SPEC ?= torch==2.13.0

$(GPU_VENV)/.installed: pyproject.toml
	@test -x $(GPU_BIN)/python || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_BIN)/python -m pip install --quiet --upgrade pip
	$(GPU_BIN)/python -m pip install --quiet "$(GPU_TORCH_SPEC)" -e ".[dev,bench,gpu]"
	ort=$$($(GPU_BIN)/python -m pip show onnxruntime-gpu | sed -n 's/^Version: //p') && \
	  $(GPU_BIN)/python -m pip uninstall --yes --quiet onnxruntime && \
	  $(GPU_BIN)/python -m pip install --quiet --force-reinstall --no-deps "onnxruntime-gpu==$$ort"
	@touch $@

test-gpu: $(GPU_VENV)/.installed
	$(GPU_BIN)/python -m pytest -q -m gpu -rs

bench: install
	$(BIN)/attn-export bench --all --json bench.json --plot bench.png

# ruff (lint rules and layout) and mypy (types), over the package, the zoo and the tests.
lint: install
	$(BIN)/python -m ruff check attn_export modules tests
	$(BIN)/python -m ruff format --check attn_export modules tests
	$(BIN)/python -m mypy

clean:
	rm -rf attn_export_out build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +

docker-cpu:
	docker build -f docker/Dockerfile.cpu -t attn-export:cpu .

docker-trt:
	docker build -f docker/Dockerfile.trt -t attn-export:trt .
