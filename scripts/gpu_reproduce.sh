#!/usr/bin/env bash
# Issue 22's GPU run (scripts/gpu_reproduce.py says what it does and how the device tool runs it):
# installs the wheels carried in .whl/ (scripts/gpu_env.sh says which), then runs gpu_reproduce.py
# with these arguments (--dry-run, --out DIR, --work DIR, --shared DIR, --iters N, --overwrite, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/gpu_env.sh
. scripts/gpu_env.sh
exec "$PYTHON" scripts/gpu_reproduce.py "$@"
