# Sourced by the GPU scripts (gpu_check.sh, gpu_reproduce.sh) from the repository root: installs the
# wheels carried in .whl/ and puts them and this repo on PYTHONPATH; PYTHON names the interpreter.
#
# The GPU machine may have no package index. Beforehand, on a machine with one, put the wheels
# it lacks into .whl/ (git-ignored: echo /.whl/ >> .git/info/exclude), for its Python (3.12):
#   pip wheel --no-deps --no-build-isolation -w .whl basicsr==1.4.2   # basicsr ships an sdist only
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       -d .whl lmdb addict
# (torch, ninja, nvcc, pytest-xdist and basicsr's other needs are on this workplace's H100/H200 image).
PYTHON=${PYTHON:-python3}
if compgen -G '.whl/*.whl' > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ghostsr_site .whl/*.whl
  export PYTHONPATH=/tmp/ghostsr_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
