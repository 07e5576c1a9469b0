#!/usr/bin/env bash
# Create .venv and install torch, torchvision, basicsr 1.4.2 and this plugin (editable, with test tools).
# Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
# (the grep hides this machine's pip-config noise about absent extra index folders)
pip_install() {
  python -m pip install --quiet --disable-pip-version-check "$@" 2>&1 |
    { grep -v 'is ignored: it is neither a file nor a directory' || true; }
}

# The index's torch builds carry CUDA and run fine on CPU; pinned to the tested pair.
pip_install torch==2.14.1 torchvision==0.29.2
# basicsr's sdist imports torch in setup.py: build it against the torch just installed.
pip_install --no-build-isolation basicsr==1.4.2
pip_install --no-build-isolation -e '.[test,deploy]'
python -c "import ghostsr_plugin, basicsr; print('ghostsr-plugin', ghostsr_plugin.__version__, 'with basicsr', basicsr.__version__)"
