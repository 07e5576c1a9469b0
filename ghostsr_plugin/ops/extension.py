"""The compiled CUDA kernels (``csrc/ghost_ops.cu``): found, built, checked, or declined with a reason.

``GHOSTSR_EXT=1 pip install --no-build-isolation -e .`` builds them with the package as
``ghostsr_plugin/ops/_C`` (the way BasicSR builds its ops with ``BASICSR_EXT``), stamped with
the hash of the source; a stamp that does not match the source is ignored with a notice.
Otherwise the first CUDA call compiles them with ``torch.utils.cpp_extension`` (nvcc and ninja)
into a cache folder keyed by the source, torch and the target GPUs, so later runs only load
them. Loading them registers their CUDA kernels against the schemas ``library.py`` defines in the
namespace ``ghostsr_kernels`` (the public ops' CUDA kernels call them after checking their
arguments); then every kernel runs once on a few small shapes against the reference
(:func:`self_check`), so a
kernel image missing for this GPU, a launch error or a wrong result is caught before training
uses it. Where anything fails the ops run the pure-PyTorch reference (slower, the same
results) after one warning saying why and what to do.

``GHOSTSR_CUDA=0`` forces the reference; ``GHOSTSR_CUDA=1`` makes any failure an error (CI on
GPU machines). ``ghostsr doctor`` shows what was found.
"""
import contextlib
import functools
import hashlib
import importlib.util
import os
import re
import sys
import warnings

import torch

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc', 'ghost_ops.cu')
NVCC_FLAGS = ['-O3']
OPS = ('shift', 'ghost_features', 'ghost_features_backward', 'ghost_features_train', 'ghost_features_train_backward')
STAMP = re.compile(rb'ghostsr-source-sha256:([0-9a-f]{64})')


def source_hash():
    """sha256 of ``csrc/ghost_ops.cu``: what a prebuilt ``_C`` is stamped with."""
    with open(SOURCE, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def loaded():
    """True when every op has a compiled CUDA kernel registered (this process loaded them)."""
    return all(torch._C._dispatch_has_kernel_for_dispatch_key(f'ghostsr_kernels::{name}', 'CUDA') for name in OPS)


def load():
    """Make the CUDA kernels available; False (after one warning saying why) where they cannot be, an error
    under ``GHOSTSR_CUDA=1``."""
    active, why = status()
    if not active and os.environ.get('GHOSTSR_CUDA', '') == '1':
        raise RuntimeError(f'ghostsr_plugin: {why}')
    return active


MODES = ('', '0', '1')  # GHOSTSR_CUDA: unset, the reference, the compiled kernels or an error


def check_mode():
    """Fail, naming it, on a ``GHOSTSR_CUDA`` that means nothing, or asks for kernels no GPU here can run."""
    from ghostsr_plugin.errors import InputError

    mode = os.environ.get('GHOSTSR_CUDA', '')
    if mode not in MODES:
        raise InputError(f"GHOSTSR_CUDA={mode}: expected 0 (the PyTorch reference) or 1 (the CUDA kernels, "
                         "a failure is an error), or unset")
    if mode == '1' and not torch.cuda.is_available():
        raise InputError('GHOSTSR_CUDA=1 asks for the CUDA kernels, but no CUDA GPU is visible here; unset it '
                         'to run the PyTorch reference')
    return mode


@functools.cache
def status():
    """``(active, why)``: whether the ops run the compiled kernels on CUDA, and the reason.

    One attempt per process, failed or not: a failure is remembered, never built again.
    """
    mode = os.environ.get('GHOSTSR_CUDA', '')
    if mode == '0':
        return False, 'GHOSTSR_CUDA=0 forces the PyTorch reference'
    try:
        how = 'already loaded' if loaded() else (_load_prebuilt() or f'compiled in {build()}')
        if not loaded():
            raise RuntimeError('the compiled library registered no CUDA kernel for some op')
        self_check()
        return True, f'compiled kernels active ({how}; self-check passed)'
    except Exception as error:  # noqa: BLE001  (whatever stops the kernels, training falls back and goes on)
        if mode == '1':
            return False, f'CUDA kernels unavailable and GHOSTSR_CUDA=1: {error}'
        warnings.warn(f'ghostsr_plugin: CUDA kernels unavailable, the ops run the PyTorch reference (slower): '
                      f'{error}. Run `ghostsr doctor` for details; set GHOSTSR_CUDA=0 to silence this.',
                      RuntimeWarning, stacklevel=3)
        return False, f'PyTorch reference: {error}'


def _load_prebuilt():
    """Load ``ghostsr_plugin.ops._C`` if ``GHOSTSR_EXT=1`` built it from this source; how, or None."""
    spec = importlib.util.find_spec('ghostsr_plugin.ops._C')
    if spec is None or spec.origin is None:
        return None
    with open(spec.origin, 'rb') as f:
        stamp = STAMP.search(f.read())
    if stamp is None or stamp.group(1).decode() != source_hash():
        print(f'ghostsr_plugin: ignoring the prebuilt {spec.origin}: it was built from another version of '
              'ghost_ops.cu (rebuild it with GHOSTSR_EXT=1 pip install --no-build-isolation -e .)', file=sys.stderr)
        return None
    try:
        torch.ops.load_library(spec.origin)
    except OSError as error:  # built against another torch: compile afresh instead
        print(f'ghostsr_plugin: ignoring the prebuilt {spec.origin} ({error})', file=sys.stderr)
        return None
    return f'prebuilt {spec.origin}'


def self_check():
    """Every compiled kernel on a few small CUDA shapes against the reference; raises saying which differs."""
    from . import reference

    ops = torch.ops.ghostsr_kernels  # (the schemas: defined by library.py when the package was imported)
    device = torch.device('cuda')
    generator = torch.Generator(device='cpu').manual_seed(0)
    offsets = torch.tensor([[1, -1], [0, 2]], device=device)
    for shape, channels_last, dtype in (((2, 4, 5, 7), False, torch.float32), ((1, 8, 9, 33), True, torch.float16)):
        x1 = torch.randn(shape, generator=generator).to(device, dtype)
        x1 = x1.contiguous(memory_format=torch.channels_last) if channels_last else x1
        n, c, h, w = shape
        grad = torch.randn(n, 2 * c, h, w, generator=generator).to(device, dtype)
        grad = grad.contiguous(memory_format=torch.channels_last) if channels_last else grad
        selection = torch.nn.functional.one_hot(torch.tensor([2, 7]), 9).float().to(device)
        cases = [
            ('shift', ops.shift(x1, [1, -2]), reference.shift(x1, (1, -2))),
            ('ghost_features', ops.ghost_features(x1, c, offsets), reference.ghost_features(x1, c, offsets)),
            ('ghost_features_backward', ops.ghost_features_backward(grad, c, offsets),
             reference.ghost_features_backward(grad, c, offsets)),
            ('ghost_features_train', ops.ghost_features_train(x1, c, selection, 1),
             reference.ghost_features_train_forward(x1, c, selection, 1)),
        ]
        got_x1, got_selection = ops.ghost_features_train_backward(grad, x1, c, selection, 1)
        cases += [('ghost_features_train_backward', got_x1,
                   reference.ghost_features_train_backward(grad, c, selection, 1)),
                  ('ghost_features_train_backward (selection)', got_selection,
                   reference.selection_grad(grad, x1, 2, 1))]
        torch.cuda.synchronize()  # (a launch error surfaces here)
        for name, got, want in cases:
            if got.shape != want.shape or not torch.allclose(got.float(), want.float(), rtol=1e-3, atol=1e-3):
                raise RuntimeError(f'self-check failed: {name} on shape {shape} ({dtype}) differs from the reference '
                                   f'(report it, with `ghostsr doctor`\'s output)')


def arch_list():
    """``TORCH_CUDA_ARCH_LIST`` if set, else torch's own rule for the visible GPUs.

    Each GPU's compute capability, clamped to the newest one this torch is built for, and
    ``+PTX`` on the highest, so that a GPU newer than torch knows still gets a kernel (e.g. '9.0+PTX').
    """
    if os.environ.get('TORCH_CUDA_ARCH_LIST'):
        return os.environ['TORCH_CUDA_ARCH_LIST']
    supported = [int(a.split('_')[1]) for a in torch.cuda.get_arch_list() if a.startswith('sm_')]
    newest = max(((sm // 10, sm % 10) for sm in supported), default=None)
    capabilities = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    capabilities = sorted(min(c, newest) if newest else c for c in capabilities)
    archs = [f'{major}.{minor}' for major, minor in capabilities]
    return ';'.join(archs[:-1] + [archs[-1] + '+PTX']) if archs else ''


def find_nvcc():
    """The nvcc torch.utils.cpp_extension would use, or None where CUDA_HOME is no CUDA toolkit."""
    from torch.utils import cpp_extension

    home = cpp_extension.CUDA_HOME or ''
    nvcc = os.path.join(home, 'bin', 'nvcc')
    toolkit = os.path.exists(nvcc) and os.path.exists(os.path.join(home, 'include', 'cuda_runtime.h'))
    return nvcc if home and toolkit else None


def cache_folder(name, key, sources):
    """The cache folder of one compiled library: its name, ``key`` (what else decides the binary) and sources."""
    digest = hashlib.sha256('\0'.join([name, torch.__version__, torch.__file__, *key]).encode())
    for path in sorted(sources):
        with open(path, 'rb') as f:
            digest.update(f.read())
    cache = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(cache, 'ghostsr_plugin', f'{name}_{digest.hexdigest()[:16]}')


def build_folder(name, sources, archs):
    """The cache folder of one CUDA build: sources, torch, CUDA toolkit and target architectures."""
    from torch.utils import cpp_extension

    # (a test build includes SOURCE)
    return cache_folder(name, [str(cpp_extension.CUDA_HOME), archs, ' '.join(NVCC_FLAGS)], {*sources, SOURCE})


def build(archs=None, name='ghostsr_cuda_ops', sources=(SOURCE,)):
    """Compile (or find in the cache) and load the kernels for ``archs`` (default: :func:`arch_list`).

    Returns the build folder; raises with the reason and the fix if nvcc or ninja is missing or
    the build fails.
    """
    from torch.utils import cpp_extension

    if find_nvcc() is None:
        raise RuntimeError(f'nvcc not found (CUDA_HOME={cpp_extension.CUDA_HOME!r}); set CUDA_HOME to the CUDA '
                           f'toolkit that matches torch (CUDA {torch.version.cuda})')
    if not cpp_extension.is_ninja_available():
        raise RuntimeError('ninja not found, which compiling the kernels needs: pip install ninja')
    archs = archs or arch_list()
    if not archs:
        raise RuntimeError('no GPU visible and TORCH_CUDA_ARCH_LIST unset: no architecture to compile for')
    folder = build_folder(name, sources, archs)
    if not os.path.exists(os.path.join(folder, f'{name}.so')):
        print(f'ghostsr_plugin: compiling CUDA kernels {name} for sm {archs} into {folder} (first use only, '
              'a minute or two)', file=sys.stderr, flush=True)
    os.makedirs(folder, exist_ok=True)
    with _environ(TORCH_CUDA_ARCH_LIST=archs):
        cpp_extension.load(name=name, sources=list(sources), extra_cuda_cflags=NVCC_FLAGS,
                           build_directory=folder, is_python_module=False, verbose=False)
    return folder


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
