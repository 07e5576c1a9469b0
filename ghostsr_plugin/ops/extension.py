"""The compiled CUDA kernels (``csrc/ghost_ops.cu``): built ahead of time, or on first use.

``GHOSTSR_EXT=1 pip install --no-build-isolation -e .`` builds them with the package as
``ghostsr_plugin/ops/_C`` (the way BasicSR builds its ops with ``BASICSR_EXT``). Otherwise
the first CUDA call compiles them with ``torch.utils.cpp_extension`` into a cache folder
keyed by the source, torch and the target GPUs, so later runs only load them. Where nvcc is
missing or the build fails, :func:`load` warns once with the reason and returns False: the
ops then run the pure-PyTorch reference, slower but the same, and training goes on.
"""
import contextlib
import functools
import hashlib
import importlib.util
import os
import sys
import warnings

import torch

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc', 'ghost_ops.cu')
NAMESPACE = 'ghostsr_cuda'
NVCC_FLAGS = ['-O3']


def loaded():
    """True when ``torch.ops.ghostsr_cuda`` holds the kernels (this process loaded them)."""
    return hasattr(getattr(torch.ops, NAMESPACE), 'shift')


@functools.cache
def load():
    """Make the CUDA kernels available; False (after one warning saying why) where they cannot be."""
    try:
        if not loaded():
            _load_prebuilt() or build()
        return True
    except Exception as error:  # noqa: BLE001  (whatever stops the build, training falls back and goes on)
        warnings.warn(f'ghostsr_plugin: CUDA shift kernels unavailable, using the PyTorch reference ops '
                      f'instead: {error}', RuntimeWarning, stacklevel=2)
        return False


def _load_prebuilt():
    """Load ``ghostsr_plugin.ops._C`` if ``GHOSTSR_EXT=1`` built it; False if it is absent or stale."""
    spec = importlib.util.find_spec('ghostsr_plugin.ops._C')
    if spec is None or spec.origin is None:
        return False
    try:
        torch.ops.load_library(spec.origin)
    except OSError as error:  # built against another torch: compile afresh instead
        warnings.warn(f'ghostsr_plugin: ignoring the prebuilt {spec.origin} ({error})', RuntimeWarning, stacklevel=3)
        return False
    return True


def arch_list():
    """``TORCH_CUDA_ARCH_LIST`` if set, else the compute capabilities of the visible GPUs (e.g. '9.0')."""
    if os.environ.get('TORCH_CUDA_ARCH_LIST'):
        return os.environ['TORCH_CUDA_ARCH_LIST']
    capabilities = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return ';'.join(f'{major}.{minor}' for major, minor in sorted(capabilities))


def find_nvcc():
    """The nvcc torch.utils.cpp_extension would use, or None where CUDA_HOME is no CUDA toolkit."""
    from torch.utils import cpp_extension

    home = cpp_extension.CUDA_HOME or ''
    nvcc = os.path.join(home, 'bin', 'nvcc')
    toolkit = os.path.exists(nvcc) and os.path.exists(os.path.join(home, 'include', 'cuda_runtime.h'))
    return nvcc if home and toolkit else None


def build_folder(name, sources, archs):
    """The cache folder of one build: sources, torch, CUDA toolkit and target architectures."""
    from torch.utils import cpp_extension

    key = [name, torch.__version__, torch.__file__, str(cpp_extension.CUDA_HOME), archs, ' '.join(NVCC_FLAGS)]
    digest = hashlib.sha256('\0'.join(key).encode())
    for path in sorted({*sources, SOURCE}):  # (a test build includes SOURCE)
        with open(path, 'rb') as f:
            digest.update(f.read())
    cache = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(cache, 'ghostsr_plugin', f'{name}_{digest.hexdigest()[:16]}')


def build(archs=None, name='ghostsr_cuda_ops', sources=(SOURCE,)):
    """Compile (or find in the cache) and load the kernels for ``archs`` (default: :func:`arch_list`).

    Returns the path of the shared library; raises with the reason if nvcc is missing or the
    build fails.
    """
    from torch.utils import cpp_extension

    if find_nvcc() is None:
        raise RuntimeError(f'nvcc not found (CUDA_HOME={cpp_extension.CUDA_HOME!r}); set CUDA_HOME to the CUDA '
                           f'toolkit that matches torch (CUDA {torch.version.cuda})')
    archs = archs or arch_list()
    if not archs:
        raise RuntimeError('no GPU visible and TORCH_CUDA_ARCH_LIST unset: no architecture to compile for')
    folder = build_folder(name, sources, archs)
    if not os.path.exists(os.path.join(folder, f'{name}.so')):
        print(f'ghostsr_plugin: compiling CUDA kernels {name} for sm {archs} into {folder} (first use only, '
              'a minute or two)', file=sys.stderr, flush=True)
    os.makedirs(folder, exist_ok=True)
    with _environ(TORCH_CUDA_ARCH_LIST=archs):
        return cpp_extension.load(name=name, sources=list(sources), extra_cuda_cflags=NVCC_FLAGS,
                                  build_directory=folder, is_python_module=False, verbose=False)


@contextlib.contextmanager
def _environ(**values):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
