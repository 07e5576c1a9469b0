"""What a network costs: parameters, FLOPs, multiplications, additions, energy and latency, measured the
same way for every model (plain, Ghost, Adder, any arch).

FLOPs are counted by ``torch.utils.flop_counter`` over one forward pass that produces a
1280 x 720 image (input ``720 // scale`` x ``1280 // scale``), the efficient-SR convention.
The counter has formulas for matrix products and convolutions only (2 FLOPs per
multiply-add, bias ignored): slicing, concatenation, element-wise ops and custom ops
without a registered formula count zero, so a Ghost layer's shift costs nothing, as in
the paper. Multiplications and additions are counted op by op over the same forward pass
(:mod:`ghostsr_plugin.op_count`: convolutions, adder layers, activations, normalization,
upsampling; a shift is data movement only), and the energy of one image is their sum
weighted by :data:`ENERGY_PJ`. A network whose work depends on its input (SMSR's masks) is
counted on the input as it runs (``mask_cost``): its sparse form's convolutions and matrix
products are exactly what it computes. Latency is the median of timed forward passes after a
warm-up, with CUDA events on a GPU and the wall clock on a CPU.
"""
import copy
import platform
import statistics
import time

import torch
from basicsr.archs import build_network
from torch.utils.flop_counter import FlopCounterMode

from ghostsr_plugin.archs.conversion import upscale_factor
from ghostsr_plugin.op_count import count_ops

OUTPUT_SIZE = (720, 1280)
# Energy of one 32-bit floating-point operation in a 45 nm process (Horowitz, "Computing's energy problem",
# ISSCC 2014), the figures AdderNet (Table 1) and AdderSR use; docs/peers.md.
ENERGY_PJ = {'mult': 3.7, 'add': 0.9}
ENERGY_TABLE = {**ENERGY_PJ, 'unit': 'pJ', 'source': '45 nm, 32-bit float (Horowitz, ISSCC 2014)'}


def count_params(net):
    """Number of parameters (every ``nn.Parameter``, as BasicSR prints it)."""
    return sum(p.numel() for p in net.parameters())


def cost_input(scale, device='cpu'):
    """A fixed random LR batch of one image whose x``scale`` output is (about) 1280 x 720."""
    generator = torch.Generator().manual_seed(0)
    shape = (1, 3, OUTPUT_SIZE[0] // scale, OUTPUT_SIZE[1] // scale)
    return torch.rand(shape, generator=generator).to(device)


@torch.no_grad()
def count_flops(net, x):
    """FLOPs of ``net(x)`` as counted by ``torch.utils.flop_counter``."""
    with FlopCounterMode(display=False) as counter:
        net(x)
    return counter.get_total_flops()


def energy_pj(mults, adds):
    """Picojoules of ``mults`` multiplications and ``adds`` additions by :data:`ENERGY_PJ`."""
    return mults * ENERGY_PJ['mult'] + adds * ENERGY_PJ['add']


@torch.no_grad()
def model_cost(net, x):
    """Every count of one forward pass ``net(x)``, in one pass: params, FLOPs, mults, adds, energy (pJ).

    ``outside_energy`` names what the energy leaves out: special-function evaluations (exp, log,
    a learned power) and ops without a formula, with their counts (see :mod:`ghostsr_plugin.op_count`).
    """
    with FlopCounterMode(display=False) as counter:
        ops = count_ops(net, x)
    return {'params': count_params(net), 'flops': counter.get_total_flops(), 'mults': ops.mults, 'adds': ops.adds,
            'energy_pj': energy_pj(ops.mults, ops.adds), 'energy_table': ENERGY_TABLE,
            'outside_energy': {'special': dict(sorted(ops.special.items())),
                               'uncounted': dict(sorted(ops.uncounted.items()))}}


def input_dependent(net):
    """Whether the work ``net`` does depends on its input (learned masks decide it: SMSR).

    Such a network reports ``mask_sparsity()`` after a forward and has an ``inference`` mode,
    ``'sparse'`` (only what the masks keep) or ``'dense'`` (everything, then masked).
    """
    return callable(getattr(net, 'mask_sparsity', None))


@torch.no_grad()
def mask_cost(net, x):
    """An input-dependent ``net`` on ``x``: ``model_cost`` as its masks decide (``sparse``) and computed densely
    (``dense``), and the masks' sparsity."""
    sparse = model_cost(net, x)
    sparsity = net.mask_sparsity()
    mode, net.inference = net.inference, 'dense'
    try:
        dense = model_cost(net, x)
    finally:
        net.inference = mode
    return {'sparse': sparse, 'dense': dense, **sparsity}


def network_cost(network_opt):
    """:func:`model_cost` of the network a BasicSR ``network_g`` section builds, in eval mode.

    Costs no weights and no arithmetic: the network lives on the meta device. RDN at 720p
    is counted in about a second. An arch whose constructor needs real values (SwinIR's
    reads a tensor with ``.item()``) is built and run on the CPU instead: the same counts, slowly.
    """
    try:
        with torch.device('meta'):
            net, device = build_network(copy.deepcopy(network_opt)).eval(), 'meta'
    except RuntimeError:
        net, device = build_network(copy.deepcopy(network_opt)).eval(), 'cpu'
    return model_cost(net, cost_input(upscale_factor(network_opt), device))


def device_name(device):
    """A readable name of ``device``: the GPU's model, or the CPU's model and thread count."""
    device = torch.device(device)
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            model = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{model} ({torch.get_num_threads()} threads)'


def measure_latency(run, device, warmup=3, repeats=10):
    """Median seconds of ``run()`` after ``warmup`` untimed calls, and the timing method."""
    seconds, method = interleaved_latency({None: run}, device, warmup, repeats)
    return seconds[None], method


@torch.no_grad()
def interleaved_latency(runs, device, warmup=3, repeats=10):
    """``({name: median seconds}, method)`` of the calls ``runs``, timed in turn in each round.

    Interleaving spreads a noisy machine's slow spells over every call alike, so the ratio
    of two latencies is fair even where each latency drifts.
    """
    for run in runs.values():
        for _ in range(warmup):
            run()
    cuda = torch.device(device).type == 'cuda'
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                torch.cuda.synchronize(device)
                times[name].append(start.elapsed_time(end) / 1000)
            else:
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, 'CUDA events' if cuda else 'wall clock'
