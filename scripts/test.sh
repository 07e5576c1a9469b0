#!/usr/bin/env bash
# Set up, then lint and run the test suite (CPU; tests that need ../shared/data or nvcc skip with a reason).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
# The CUDA build test uses the toolkit here when CUDA_HOME does not name one (torch would guess from PATH).
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
ruff check .
python -m pytest -ra tests "$@"
