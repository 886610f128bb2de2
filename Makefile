# The front door: `make demo` and `make test` set themselves up (via `make install`).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DEMO   ?= demo-out

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "visionperf needs Python >= 3.11: set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

# Synthetic ImageNet sample set + architecture-faithful ResNet50 (synthetic weights), then
# Offline performance (VALID, ~10 s) and accuracy on 2 CPU devices through the real LoadGen.
demo: install
	$(BIN)/visionperf sample-data imagenet --out $(DEMO)/imagenet --count 256
	$(BIN)/visionperf build-model resnet50 --out $(DEMO)/resnet50.onnx
	$(BIN)/visionperf run resnet50 --scenario Offline --mode performance --backend onnxruntime \
	    --devices 2 --duration 10 --model $(DEMO)/resnet50.onnx --dataset $(DEMO)/imagenet \
	    --cache $(DEMO)/cache --out $(DEMO)/results
	$(BIN)/visionperf run resnet50 --scenario Offline --mode accuracy --backend onnxruntime \
	    --devices 2 --model $(DEMO)/resnet50.onnx --dataset $(DEMO)/imagenet \
	    --cache $(DEMO)/cache --out $(DEMO)/results
	$(BIN)/visionperf run resnet50 --scenario Server --backend null --devices 2 \
	    --target-qps 50000 --duration 10 --model $(DEMO)/resnet50.onnx --dataset $(DEMO)/imagenet \
	    --cache $(DEMO)/cache --out $(DEMO)/results-null

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/harness_overhead.py
	$(BIN)/python benchmarks/offline_onnxruntime.py

clean:
	rm -rf $(VENV) $(DEMO) build src/*.egg-info
