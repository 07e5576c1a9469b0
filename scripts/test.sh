#!/usr/bin/env bash
# Set up, then lint and run the test suite (CPU; tests that need ../shared/data or nvcc skip with a reason).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
ruff check .
python -m pytest -ra tests "$@"
