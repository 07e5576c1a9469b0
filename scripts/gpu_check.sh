#!/usr/bin/env bash
# The GPU check on a fresh machine with a GPU and this repo: installs the wheels carried in .whl/
# (scripts/gpu_env.sh says which), then runs scripts/gpu_check.py (kernel build, GPU tests, op
# bandwidth, latency eager and compiled; each step's JSON into --out as it ends; 8 minutes, --quick 4).
# Arguments go to gpu_check.py: --out DIR, --quick, --dry-run, --overwrite.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/gpu_env.sh
. scripts/gpu_env.sh
exec "$PYTHON" scripts/gpu_check.py "$@"
