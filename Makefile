# samadapt: every user command. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SAMADAPT := $(VENV)/bin/samadapt
EXP ?=
ARGS ?=
CKPT ?=
EXPERIMENTS := $(filter-out base,$(basename $(notdir $(wildcard experiments/*.yaml))))
CONFIGS = --config experiments/base.yaml --config experiments/$(EXP).yaml
CHECK_EXP = @test -f "experiments/$(EXP).yaml" || { echo "no experiment file experiments/$(EXP).yaml; choose EXP= from: $(EXPERIMENTS)" >&2; exit 2; }
# No hub downloads, W&B offline, no albumentations update check (all overridable from the shell).
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export NO_ALBUMENTATIONS_UPDATE ?= 1

.PHONY: help install test test-all demo train eval bench lint app

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' Makefile | sed -E 's/:.*## /\t/'

# The stamp is newer than pyproject.toml once installed, so a second `make install` does nothing.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed  ## create .venv with the project and all its dependencies (idempotent)

test: install  ## run the test suite (slow, full-size tests are skipped)
	$(VENV)/bin/pytest

test-all: install  ## the suite including the slow ViT-B tests
	$(VENV)/bin/pytest --runslow

demo: install  ## the end-to-end demo on the CPU: synthetic data, tiny SAM, every method, a report in runs/demo
	$(SAMADAPT) demo --out runs/demo

train: install  ## train an experiment: make train EXP=shallow_refcoco ARGS="--trainer.max_steps=10"
	$(CHECK_EXP)
	$(SAMADAPT) fit $(CONFIGS) $(ARGS)

eval: install  ## evaluate a checkpoint on the test splits: make eval EXP=shallow_refcoco CKPT=runs/.../last.ckpt
	$(CHECK_EXP)
	@test -n "$(CKPT)" || { echo "set CKPT=path/to/checkpoint.ckpt" >&2; exit 2; }
	$(SAMADAPT) test $(CONFIGS) --ckpt_path $(CKPT) $(ARGS)

app: install  ## try the demo's checkpoints in the browser (after make demo): make app ARGS="--port 7861"
	$(SAMADAPT) serve --demo runs/demo $(ARGS)

# glibc otherwise hands every large freed block back to the OS and page-faults it in again on the next forward
# (attention masks of tens of MB): measured ~20% on the CPU, for official and samadapt code alike.
bench: install  ## speed and memory benchmarks, ratios measured side by side (QUICK=1: reduced set, minutes)
	MALLOC_MMAP_THRESHOLD_=2000000000 MALLOC_TRIM_THRESHOLD_=4000000000 $(PY) -m samadapt.commands.bench $(if $(QUICK),--quick) $(ARGS)

lint: install  ## ruff
	$(VENV)/bin/ruff check samadapt data_modules tests
