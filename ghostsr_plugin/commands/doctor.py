"""Show what the kernels need and which kernels the ops run: torch, CUDA, nvcc, ninja, GPU, the CPU adder kernels.

Each line is one finding; the last says whether the ops run the compiled CUDA kernels or the
PyTorch reference, and why. On a GPU this loads the kernels (compiling them on first use) and
runs their self-check. GHOSTSR_CUDA=0 forces the reference, GHOSTSR_CUDA=1 makes a failure an
error.
"""
import os
import shutil
import subprocess

import torch


def add_arguments(parser):
    """The command takes no options."""


def _nvcc(extension):
    nvcc = extension.find_nvcc()
    if nvcc is None:
        return 'not found (set CUDA_HOME to a CUDA toolkit)'
    try:
        version = subprocess.run([nvcc, '--version'], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return f'{nvcc} (does not run: {error})'
    release = [line.strip() for line in version.splitlines() if 'release' in line]
    return f'{nvcc} ({release[0] if release else "version unknown"})'


def _prebuilt(extension):
    import importlib.util

    spec = importlib.util.find_spec('ghostsr_plugin.ops._C')
    if spec is None or spec.origin is None:
        return 'none (build one with GHOSTSR_EXT=1 pip install --no-build-isolation -e .)'
    with open(spec.origin, 'rb') as f:
        stamp = extension.STAMP.search(f.read())
    current = stamp is not None and stamp.group(1).decode() == extension.source_hash()
    return f'{spec.origin} ({"current" if current else "stale: ignored"})'


def findings():
    """[(what, found)] in the order printed."""
    from torch.utils import cpp_extension

    from ghostsr_plugin.ops import cpu_kernels, extension

    rows = [('torch', f'{torch.__version__} (CUDA {torch.version.cuda or "none: a CPU-only build"})'),
            ('nvcc', _nvcc(extension)),
            ('ninja', shutil.which('ninja') or ('available' if cpp_extension.is_ninja_available()
                                                else 'not found (pip install ninja)')),
            ('prebuilt kernels', _prebuilt(extension)),
            ('GHOSTSR_CUDA', os.environ.get('GHOSTSR_CUDA', 'unset (fall back with a warning)')),
            ('CPU adder kernels', cpu_kernels.status()[1])]
    if not torch.cuda.is_available():
        return rows + [('GPU', 'none visible'), ('kernels', 'PyTorch reference: no CUDA GPU visible')]
    gpus = [f'{torch.cuda.get_device_name(i)} (sm {".".join(map(str, torch.cuda.get_device_capability(i)))})'
            for i in range(torch.cuda.device_count())]
    rows += [('GPU', '; '.join(gpus)), ('arch list', extension.arch_list())]
    _, why = extension.status()
    return rows + [('kernels', why)]


def run(args):
    for what, found in findings():
        print(f'{what + ":":<18} {found}')
