"""The compiled CPU kernels of the adder layer (``csrc/adder_cpu.cpp``): built, checked, or declined with a reason.

The first CPU call of an adder op compiles them with ``torch.utils.cpp_extension`` (the C++
compiler torch uses, and ninja) into a cache folder keyed by the source, torch and the
compiler flags (AVX2 and FMA where the CPU has them), printing one line; later runs only load
them. Loading registers their CPU kernels against the schemas :mod:`.adder` defines in the
namespace ``ghostsr_kernels``; then they run once on small shapes against the reference
(:func:`self_check`). Where anything fails the ops run the pure-PyTorch reference
(:mod:`.adder_reference`: the same results, slower) after one warning saying why.
``GHOSTSR_CPU_KERNELS=0`` forces the reference; ``GHOSTSR_CPU_KERNELS=1`` makes a failure an
error. ``ghostsr doctor`` shows what was found.
"""
import functools
import os
import sys
import warnings

import torch

from . import extension

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc', 'adder_cpu.cpp')
NAME = 'ghostsr_cpu_ops'
OPS = ('adder2d', 'adder2d_grad_input')
MODES = ('', '0', '1')


def flags():
    """Compiler flags: -O3, fused multiply-adds, and AVX2/FMA instructions where this CPU (and torch) have them."""
    vector = torch.backends.cpu.get_cpu_capability() in ('AVX2', 'AVX512')
    return ['-O3', '-ffp-contract=fast', *(['-mavx2', '-mfma'] if vector else [])]


def loaded():
    """True when every op has a compiled CPU kernel registered (this process loaded them)."""
    return all(torch._C._dispatch_has_kernel_for_dispatch_key(f'ghostsr_kernels::{name}', 'CPU') for name in OPS)


def check_mode():
    """Fail, naming it, on a ``GHOSTSR_CPU_KERNELS`` that means nothing."""
    from ghostsr_plugin.errors import InputError

    mode = os.environ.get('GHOSTSR_CPU_KERNELS', '')
    if mode not in MODES:
        raise InputError(f'GHOSTSR_CPU_KERNELS={mode}: expected 0 (the PyTorch reference) or 1 (the compiled '
                         'kernels, a failure is an error), or unset')
    return mode


def active():
    """Whether the CPU adder ops run the compiled kernels (building them on the first call)."""
    on, why = status()
    if not on and os.environ.get('GHOSTSR_CPU_KERNELS', '') == '1':
        raise RuntimeError(f'ghostsr_plugin: {why}')
    return on


@functools.cache
def status():
    """``(active, why)``; one attempt per process, a failure remembered."""
    mode = os.environ.get('GHOSTSR_CPU_KERNELS', '')
    if mode == '0':
        return False, 'GHOSTSR_CPU_KERNELS=0 forces the PyTorch reference'
    try:
        how = 'already loaded' if loaded() else f'built in {build()}'
        self_check()
        return True, f'compiled CPU kernels active ({how}; self-check passed)'
    except Exception as error:  # noqa: BLE001  (whatever stops the kernels, the reference takes over)
        if mode != '1':
            warnings.warn(f'ghostsr_plugin: the compiled CPU adder kernels are unavailable, the adder layer runs the '
                          f'PyTorch reference (slower): {error}. Set GHOSTSR_CPU_KERNELS=0 to silence this.',
                          RuntimeWarning, stacklevel=3)
        return False, f'PyTorch reference: {error}'


def build():
    """Compile (or find in the cache) and load the kernels; returns the build folder."""
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        raise RuntimeError('ninja not found, which compiling the kernels needs: pip install ninja')
    folder = extension.cache_folder(NAME, flags(), [SOURCE])
    if not os.path.exists(os.path.join(folder, f'{NAME}.so')):
        print(f'ghostsr_plugin: compiling the CPU adder kernels into {folder} (first use only, about a minute)',
              file=sys.stderr, flush=True)
    os.makedirs(folder, exist_ok=True)
    cpp_extension.load(name=NAME, sources=[SOURCE], extra_cflags=flags(), build_directory=folder,
                       is_python_module=False, verbose=False)
    if not loaded():
        raise RuntimeError('the compiled library registered no CPU kernel for some op')
    return folder


def self_check():
    """Every compiled kernel on small shapes (row tails, a block of output channels and a rest) against the
    reference; raises saying which differs."""
    from . import adder_reference

    generator = torch.Generator().manual_seed(0)
    for n, c, o, size, k in ((2, 5, 6, (7, 19), 3), (1, 3, 4, (4, 16), 1)):
        x = torch.randn(n, c, *size, generator=generator)
        weight = torch.randn(o, c, k, k, generator=generator)
        grad = torch.randn(n, o, *size, generator=generator)
        pad = k // 2
        for name, got, want in (
                ('adder2d', torch.ops.ghostsr_kernels.adder2d(x, weight, pad),
                 adder_reference.adder2d(x, weight, pad)),
                ('adder2d_grad_input', torch.ops.ghostsr_kernels.adder2d_grad_input(grad, x, weight, pad),
                 adder_reference.grad_input(grad, x, weight, pad))):
            if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-3):
                raise RuntimeError(f'self-check failed: {name} on {tuple(x.shape)} differs from the reference')
