# The front door: `make demo` and `make test` set themselves up (via `make install`).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DEMO   ?= demo-out

.PHONY: install demo test faults soak bench oracle clean

install: $(VENV)/.installed

# Optional extras, space- or comma-separated: `make install EXTRAS=cluster` (Ray, for --cluster),
# EXTRAS=tensorrt (NVIDIA GPUs). `make test` and `make faults` add cluster, so that the
# multi-node tests run (a local Ray cluster of node processes on this machine).
EXTRAS ?=
TEST_EXTRAS = cluster,openvino
test faults: EXTRAS += $(TEST_EXTRAS)
comma := ,
empty :=
space := $(empty) $(empty)
PIP_EXTRAS = $(subst $(space),$(comma),$(sort test $(subst $(comma),$(space),$(EXTRAS))))

# The extras installed are remembered: asking for one not installed yet reinstalls with it (and
# keeps the others), asking for fewer does nothing.
$(VENV)/.extras: FORCE
	@mkdir -p $(VENV)
	@have=$$(cat $@ 2>/dev/null); \
	 all=$$(echo "$(PIP_EXTRAS),$$have" | tr ',' '\n' | grep -v '^$$' | sort -u | paste -sd, -); \
	 [ "$$all" = "$$have" ] || echo "$$all" > $@

.PHONY: FORCE
FORCE:

# The compiled engine (engine/) is built here, by scikit-build-core: cmake and ninja come from
# the registry when the machine has none, LoadGen's source from its pinned release (pip).
ENGINE_SOURCES = engine/CMakeLists.txt engine/fetch_loadgen.py $(wildcard engine/src/*) \
                 src/visionperf/include/visionperf/device.h

$(VENV)/.installed: pyproject.toml $(ENGINE_SOURCES) $(VENV)/.extras
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "visionperf needs Python >= 3.11: set PYTHON=python3.11 (or newer)")'
	@command -v $${CXX:-c++} >/dev/null 2>&1 || { echo "visionperf builds a compiled engine and needs a C++17 compiler: install one (Debian/Ubuntu: apt-get install g++; Fedora: dnf install gcc-c++; macOS: xcode-select --install), then run make again" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$$(cat $(VENV)/.extras)]"
	@touch $@

# Synthetic ImageNet sample set + architecture-faithful ResNet50 (synthetic weights): Offline
# performance (VALID, ~10 s) and accuracy on 2 CPU devices through the real LoadGen; the int8
# model fed uint8 rows from its own cache; the harness alone at 50,000 Server QPS; SSD-MobileNet
# with host NMS; YOLO11n (synthetic weights) on the COCO-safe images, the reference's rect
# letterbox and host decode + NMS; a practice submission campaign for ResNet50 (every run the
# round asks, short, on the null device, assembled into a checked tree); and a report of every
# run with plots.
demo: install
	$(BIN)/visionperf sample-data imagenet --out $(DEMO)/imagenet --count 256
	$(BIN)/visionperf build-model resnet50 --out $(DEMO)/resnet50.onnx
	$(BIN)/visionperf run resnet50 --scenario Offline --mode performance --backend onnxruntime \
	    --devices 2 --duration 10 --model $(DEMO)/resnet50.onnx --dataset $(DEMO)/imagenet \
	    --cache $(DEMO)/cache --out $(DEMO)/results
	$(BIN)/visionperf run resnet50 --scenario Offline --mode accuracy --backend onnxruntime \
	    --devices 2 --model $(DEMO)/resnet50.onnx --dataset $(DEMO)/imagenet \
	    --cache $(DEMO)/cache --out $(DEMO)/results
	$(BIN)/visionperf quantize resnet50 --model $(DEMO)/resnet50.onnx --dataset $(DEMO)/imagenet \
	    --calibration-list $(DEMO)/imagenet/cal_image_list.txt --out $(DEMO)/resnet50_int8.onnx
	$(BIN)/visionperf run resnet50 --scenario Offline --backend onnxruntime --devices 2 --duration 10 \
	    --model $(DEMO)/resnet50_int8.onnx --dataset $(DEMO)/imagenet --cache $(DEMO)/cache \
	    --out $(DEMO)/results-int8
	$(BIN)/visionperf scale resnet50 --backend simulated --devices 1,2,4 --scenario Offline \
	    --card-rate 2000 --duration 5 --model $(DEMO)/resnet50_int8.onnx --dataset $(DEMO)/imagenet \
	    --cache $(DEMO)/cache --out $(DEMO)/scaling
	$(BIN)/visionperf run resnet50 --scenario Server --backend null --devices 2 \
	    --target-qps 50000 --duration 10 --model $(DEMO)/resnet50.onnx --dataset $(DEMO)/imagenet \
	    --cache $(DEMO)/cache --out $(DEMO)/results-null
	$(BIN)/visionperf sample-data coco --out $(DEMO)/coco --count 64
	$(BIN)/visionperf build-model ssd-mobilenet --out $(DEMO)/ssd_mobilenet.onnx
	$(BIN)/visionperf run ssd-mobilenet --scenario Offline --backend onnxruntime --devices 2 \
	    --duration 10 --model $(DEMO)/ssd_mobilenet.onnx --dataset $(DEMO)/coco \
	    --cache $(DEMO)/cache --out $(DEMO)/results-ssd
	$(BIN)/visionperf build-model yolo11n --out $(DEMO)/yolo11n.onnx
	$(BIN)/visionperf run yolo --scenario Offline --backend onnxruntime --devices 1 --duration 10 \
	    --model $(DEMO)/yolo11n.onnx --dataset $(DEMO)/coco --cache $(DEMO)/cache --out $(DEMO)/results-yolo
	$(BIN)/visionperf run yolo --scenario Offline --mode accuracy --backend onnxruntime --devices 1 \
	    --model $(DEMO)/yolo11n.onnx --dataset $(DEMO)/coco --cache $(DEMO)/cache --out $(DEMO)/results-yolo
	printf '{"cooling": "air", "host_memory_configuration": "as built"}\n' > $(DEMO)/system.json
	$(BIN)/visionperf campaign --round v6.1 --benchmarks resnet50 --model $(DEMO)/resnet50.onnx \
	    --dataset $(DEMO)/imagenet --cache $(DEMO)/cache --backend null --devices 2 --duration 0.5 \
	    --allow-short --submitter Demo --system demo_null --system-json $(DEMO)/system.json \
	    --out $(DEMO)/campaign --dry-run
	$(BIN)/visionperf campaign --round v6.1 --benchmarks resnet50 --model $(DEMO)/resnet50.onnx \
	    --dataset $(DEMO)/imagenet --cache $(DEMO)/cache --backend null --devices 2 --duration 0.5 \
	    --allow-short --submitter Demo --system demo_null --system-json $(DEMO)/system.json \
	    --out $(DEMO)/campaign
	$(BIN)/visionperf report $(DEMO)

test: install
	$(BIN)/python -m pytest -q

# The fault-injection suite alone (also part of `make test`): signals, full disks, damaged
# caches, stuck and failing devices, two writers.
faults: install
	$(BIN)/python -m pytest -q -m fault

# Ten-minute Server runs (null device, simulated cards) watched for memory growth and p99 drift;
# not part of CI. SOAK_MINUTES=1 for a quick look.
SOAK_MINUTES ?= 10
soak: install
	$(BIN)/python benchmarks/soak.py --minutes $(SOAK_MINUTES) --out soak.json

bench: install
	$(BIN)/python benchmarks/harness_ceiling.py
	$(BIN)/python benchmarks/offline_onnxruntime.py

# Ultralytics itself as the YOLO test oracle (issue 24), kept out of the default suite: its own
# environment (.venv-oracle, about 6 GB: PyTorch, the +cpu build where TORCH_INDEX answers, which
# pip prefers, else the registry's; ultralytics 8.3.214, the exporter's onnxslim, and ONNX
# Runtime, ONNX, OpenCV and NumPy at .venv's versions, so pixels and heads come from the same
# code); a random-weight yolo11n (fixed seed, nothing downloaded or auto-installed) exported to
# ONNX, dynamic and 640x640; Ultralytics' predict(conf=0.001) on a varied image set
# (oracle/images.py); then, in .venv, visionperf's letterbox, ONNX Runtime heads, NMS (NumPy and
# C++) and `visionperf run yolo --mode accuracy` compared with it image by image. Prints a
# verdict table and fails on any mismatch. ORACLE_OUT keeps every file it made;
# `python oracle/compare.py ORACLE_OUT --write-fixtures` refreshes tests/fixtures/yolo_oracle/.
ORACLE_VENV ?= .venv-oracle
ORACLE_OUT  ?= $(ORACLE_VENV)/run
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
ORACLE_ENV   = YOLO_OFFLINE=true YOLO_AUTOINSTALL=false YOLO_CONFIG_DIR=$(abspath $(ORACLE_OUT))/config PIP_NO_INDEX=1

$(ORACLE_VENV)/.installed: | install
	$(PYTHON) -m venv $(ORACLE_VENV)
	$(ORACLE_VENV)/bin/pip install --quiet --upgrade pip
	$(ORACLE_VENV)/bin/pip install --quiet --retries 1 --extra-index-url $(TORCH_INDEX) torch==2.14.1 torchvision==0.29.1
	@# Ultralytics without its opencv-python (the GUI build would replace .venv's headless cv2):
	@# every other requirement, and what its ONNX export would auto-install, named here.
	$(ORACLE_VENV)/bin/pip install --quiet ultralytics==8.3.214 --no-deps
	$(ORACLE_VENV)/bin/pip install --quiet $$($(BIN)/python -c 'from importlib.metadata import version as v; print(" ".join(f"{p}=={v(p)}" for p in ("numpy", "onnx", "onnxruntime", "opencv-python-headless")))') \
	    "onnxslim>=0.1.71" matplotlib pillow pyyaml requests scipy psutil polars "ultralytics-thop>=2.0.0" \
	    mlcommons-loadgen==6.0.17 pycocotools
	@touch $@

oracle: install $(ORACLE_VENV)/.installed
	$(BIN)/python oracle/images.py --out $(ORACLE_OUT)/images
	$(ORACLE_ENV) $(ORACLE_VENV)/bin/python oracle/ultralytics_side.py --images $(ORACLE_OUT)/images --out $(ORACLE_OUT)
	$(BIN)/python oracle/compare.py $(ORACLE_OUT)

clean:
	rm -rf $(VENV) $(DEMO) build src/*.egg-info
