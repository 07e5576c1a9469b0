"""Where a trained model runs: eager PyTorch, torch.compile or onnxruntime, behind one call.

Every engine runs the *frozen* model (each Ghost layer a fixed integer shift): in eager
PyTorch the shift is the fused op, in a graph it lowers to slicing, padding and concat
(:mod:`ghostsr_plugin.ops.traceable`), which inductor fuses and ONNX expresses with
standard ops. :func:`prepare` returns a function from an LR batch (N, C, H, W, a float
tensor in [0, 1]) to the SR batch, whatever the engine.
"""
import os
import tempfile

import torch

from ghostsr_plugin.archs import freeze
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.onnx_export import export_onnx, onnx_session, session_runner

ENGINES = ('eager', 'compile', 'onnxruntime')


def prepare(net, engine, threads=None, device='cpu', onnx_size=None):
    """``run(x)``: the frozen ``net`` on ``engine``, with ``threads`` CPU threads (default: torch's).

    ``onnx_size``: export the ONNX for inputs of this (N, C, H, W) only, for archs that torch.export
    cannot trace at every size (BasicSR's SwinIR); by default any batch, height and width.
    """
    if engine not in ENGINES:
        raise InputError(f"unknown engine '{engine}': expected one of {', '.join(ENGINES)}")
    if threads:
        torch.set_num_threads(threads)
    net = freeze(net.eval()).to(device)
    if engine == 'onnxruntime':
        if torch.device(device).type != 'cpu':
            raise InputError(f'--engine onnxruntime runs on the CPU here; found --device {device}')
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, 'model.onnx')
            export_onnx(net, path, **({} if onnx_size is None else {'example_size': onnx_size, 'dynamic': False}))
            return session_runner(onnx_session(path, threads))
    module = torch.compile(net) if engine == 'compile' else net

    @torch.no_grad()
    def run(x):
        return module(x.to(device))

    return run
