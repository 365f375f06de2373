# samadapt: every user command. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SAMADAPT := $(VENV)/bin/samadapt
EXP ?=
ABL ?=
ARGS ?=
CKPT ?=
# Sets $configs to --config experiments/base.yaml --config experiments/$(EXP).yaml [--config experiments/$(EXP)/$(ABL).yaml]
# (an unknown name lists the choices), then echoes the command that follows.
FIND_CONFIGS = configs=$$(scripts/experiment_configs.sh "$(EXP)" "$(ABL)") && set -x
# No hub downloads, W&B offline, no albumentations update check (all overridable from the shell).
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export NO_ALBUMENTATIONS_UPDATE ?= 1

.PHONY: help install test test-all demo train eval bench lint app

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' Makefile | sed -E 's/:.*## /\t/'
	@echo "EXP=<dataset>/<method>: experiments/<dataset>/<method>.yaml on top of experiments/base.yaml (make train lists them)"
	@echo "ABL=<ablation>: also experiments/<dataset>/<method>/<ablation>.yaml, a file of only what differs"
	@echo "ARGS=\"--trainer.max_steps=10 ...\": overrides last; old flat names (EXP=ldit_refcoco) work for one release"

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

train: install  ## train, then test the best checkpoint: make train EXP=<dataset>/<method> [ABL=<ablation>] [ARGS="--trainer.max_steps=10"]
	@$(FIND_CONFIGS) && $(SAMADAPT) fit $$configs $(ARGS)

eval: install  ## evaluate a checkpoint on the test splits: make eval EXP=refcoco/ldit [ABL=...] CKPT=runs/.../last.ckpt
	@test -n "$(CKPT)" || { echo "set CKPT=path/to/checkpoint.ckpt" >&2; exit 2; }
	@$(FIND_CONFIGS) && $(SAMADAPT) test $$configs --ckpt_path $(CKPT) $(ARGS)

app: install  ## try the demo's checkpoints in the browser (after make demo): make app ARGS="--port 7861"
	$(SAMADAPT) serve --demo runs/demo $(ARGS)

# glibc otherwise hands every large freed block back to the OS and page-faults it in again on the next forward
# (attention masks of tens of MB): measured ~20% on the CPU, for official and samadapt code alike.
bench: install  ## speed and memory benchmarks, ratios measured side by side (QUICK=1: reduced set, minutes)
	MALLOC_MMAP_THRESHOLD_=2000000000 MALLOC_TRIM_THRESHOLD_=4000000000 $(PY) -m samadapt.commands.bench $(if $(QUICK),--quick) $(ARGS)

lint: install  ## ruff
	$(VENV)/bin/ruff check samadapt data_modules tests
