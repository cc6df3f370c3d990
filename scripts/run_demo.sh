#!/usr/bin/env bash
# The README's main job: install what is needed, then train Vision Big Bird on Fashion-MNIST and show predictions.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python scripts/demo.py "$@"
