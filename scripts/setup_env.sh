#!/usr/bin/env bash
# Create (or update) the project's own environment in .venv: Python 3.11, torch 2.14.1 + torchvision 0.29.1,
# the package in editable mode with its extras [train,bench,dev], pinned by constraints.txt. On Debian-like
# machines where we are root, it also installs the real Fashion-MNIST data (package dataset-fashion-mnist).
# Idempotent: a second run with unchanged pyproject.toml / constraints.txt does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
  done
fi
[ -n "$PYTHON" ] || { echo "setup_env: no python3 found" >&2; exit 1; }

stamp=".venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup_env: creating .venv with $($PYTHON --version)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch first, on its own, so pip takes the pinned pair (several GB; served from this machine's local index).
  .venv/bin/python -m pip install --quiet -c constraints.txt torch torchvision
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[train,bench,dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup_env: installing Debian package dataset-fashion-mnist"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
      || echo "setup_env: could not install dataset-fashion-mnist; the demo and the data tests will say so" >&2
  else
    echo "setup_env: Fashion-MNIST not found; install it with: sudo apt-get install dataset-fashion-mnist" >&2
  fi
fi
.venv/bin/python -c "import torch, torchvision, transformers, vision_bigbird_hf; print('setup_env: torch', torch.__version__, '| torchvision', torchvision.__version__, '| transformers', transformers.__version__)"
