#!/usr/bin/env bash
# The test command of README.md (and of .ci/run): install what is needed, then run the whole pytest suite.
# Arguments go to pytest: `bash scripts/run_tests.sh -m "not slow"` is the quick loop.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python scripts/fetch_transformers_tests.py >/dev/null
# two pytest workers on two cores, one thread each (OpenMP oversubscription slows the suite about tenfold); loadscope:
# a module (or test class) runs on one worker, so its module fixtures are built once
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest -n 2 --dist loadscope "$@"
