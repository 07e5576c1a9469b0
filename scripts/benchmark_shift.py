"""Benchmark the shift ops against a copy of the same bytes: prints a table and writes JSON.

Ops: the shift, and the fused Ghost layer op (eval: a fixed offset; train: the learned
one-hot selection, whose backward also gives the selection's gradient), forward and backward,
each done three ways, timed side by side:
  kernel     ghostsr_plugin.ops (the fused CUDA kernels on a GPU; the reference on CPU)
  reference  the pure-PyTorch reference, ghostsr_plugin.ops.reference, called directly (the
             train op's backward: its reference backward, input and selection gradients)
  depthwise  the official code's way: a depthwise 3x3 conv with a one-hot kernel (cuDNN on a GPU)
Bandwidth is effective: the bytes the op must read and write once, over its time. Each op is set
against a copy of the same dtype moving the same bytes (half read, half written), timed in the
same rounds: the fastest of ``dst.copy_(src)`` (the driver's memcpy, in a CUDA graph and as
launched) and an elementwise kernel (``torch.neg(src, out=dst)``), each in the JSON; the
device's peak (memory clock x bus width, or a table) is printed beside it. The impls of one op
and its copies are timed interleaved: one run of each in turn, ``--runs`` rounds, the median of
each. On a GPU a run is a CUDA graph replay between two CUDA events (the figures are the
device's, not Python's launch cost); the reference Ghost ops read the offsets back to the host
and cannot be captured, so they run as launched ('timing' in the JSON says which).

The end-to-end latency of GhostEDSR-L against EDSR-L is scripts/benchmark_latency.py's.

Example (a GPU): python scripts/benchmark_shift.py
Example (CPU, small): python scripts/benchmark_shift.py --device cpu --sizes 1x16x24x32 --dtypes float32 \\
    --runs 5 --json /tmp/shift.json
"""
import argparse
import contextlib
import datetime
import os.path as osp
import re
import statistics
import sys
import time

import torch
from torch.nn import functional as F
from tqdm import tqdm

from ghostsr_plugin import cost, ops
from ghostsr_plugin.atomic import write_json
from ghostsr_plugin.errors import InputError, exit_on_input_error
from ghostsr_plugin.ops import extension, reference

OFFSET = (1, 1)  # the shift every op is timed with
LAYOUTS = {'nchw': torch.contiguous_format, 'channels_last': torch.channels_last}
IMPLS = ('kernel', 'reference', 'depthwise')
# GB/s by device name where torch does not report the memory clock and bus width (datasheets)
PEAK_GB_PER_S = {'H200': 4800, 'H100 SXM': 3350, 'H100 NVL': 3900, 'H100 PCIe': 2000, 'H100': 3350, 'A100': 2039}


def parse_size(text, parts, what):
    try:
        size = tuple(int(v) for v in text.lower().split('x'))
    except ValueError:
        size = ()
    if len(size) != parts or min(size) < 1:
        raise InputError(f'{what}: expected {parts} positive integers joined by x, found {text!r}')
    return size


def peak_bandwidth(device):
    """The device memory's peak GB/s (read plus write), and where the figure comes from; None on a CPU."""
    if device.type != 'cuda':
        return None, 'none (CPU)'
    props = torch.cuda.get_device_properties(device)
    clock_khz, bus_bits = getattr(props, 'memory_clock_rate', 0), getattr(props, 'memory_bus_width', 0)
    if clock_khz and bus_bits:  # double data rate: two transfers a clock
        return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9, 'memory clock x bus width'
    for name, gbs in PEAK_GB_PER_S.items():
        if name in props.name:
            return gbs, f'datasheet ({name})'
    return None, 'unknown'


def interleaved_timer(device, runs, warmup):
    """``measure(fns)``: for ``{name: (fn, capture)}``, ``{name: (median seconds, timing)}``, interleaved.

    Each fn runs ``warmup`` times, then the fns run in turn, ``runs`` rounds. On a GPU (from a side
    stream: the default stream cannot be captured) a fn with ``capture`` is captured once as a CUDA
    graph and its replays are timed; one that syncs with the host is timed as called; each run
    between two CUDA events, no sync in between. On a CPU: the wall clock.
    """
    def measure(fns):
        runners, timing = {}, {}
        for name, (fn, capture) in fns.items():
            for _ in range(warmup):
                fn()
            runners[name], timing[name] = fn, 'wall clock' if device.type != 'cuda' else 'CUDA events, eager'
            if device.type == 'cuda' and capture:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=torch.cuda.current_stream()):
                    fn()
                runners[name], timing[name] = graph.replay, 'CUDA events, graph replay'
        samples = {name: [] for name in fns}
        for _ in range(runs):
            for name, run in runners.items():
                if device.type == 'cuda':
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    run()
                    end.record()
                    samples[name].append((start, end))
                else:
                    begin = time.perf_counter()
                    run()
                    samples[name].append(time.perf_counter() - begin)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
            samples = {name: [start.elapsed_time(end) / 1e3 for start, end in pairs] for name, pairs in samples.items()}
        return {name: (statistics.median(times), timing[name]) for name, times in samples.items()}

    return measure


def copies(nbytes, device, dtype):
    """{name: (fn, capture)}: copies of ``nbytes`` bytes of ``dtype`` (half read, half written)."""
    es = torch.empty((), dtype=dtype).element_size()
    src = torch.randn(max(1, nbytes // 2 // es), device=device).to(dtype)
    dst = torch.empty_like(src)
    return {'copy (memcpy)': (lambda: dst.copy_(src), True),
            'copy (memcpy, eager)': (lambda: dst.copy_(src), False),  # (a graph's memcpy node may take another path)
            'copy (kernel)': (lambda: torch.neg(src, out=dst), True)}


def one_hot_kernel(channels, dy, dx, device, dtype):
    """Depthwise 3x3 weight whose conv shifts by (dy, dx): conv2d correlates, so tap (1 - dy, 1 - dx)."""
    weight = torch.zeros(channels, 1, 3, 3, device=device, dtype=dtype)
    weight[:, 0, 1 - dy, 1 - dx] = 1
    return weight


def straight_through(logits):
    hard = F.one_hot(logits.detach().argmax(-1), logits.shape[-1]).to(logits.dtype)
    return hard - logits.detach() + logits


def op_cases(n, c, h, w, device, dtype, memory_format):
    """{op: {impl: (inputs, forward, backward or None)}, bytes} for one size: the bytes each op's
    forward and backward must move, and per impl its inputs and the two directions to time
    (``backward`` None: autograd's, through ``forward``)."""
    c_ghost = c // 2
    c_int = c - c_ghost
    es = torch.empty((), dtype=dtype).element_size()
    offsets = torch.tensor([OFFSET], device=device)
    weight = one_hot_kernel(c, *OFFSET, device, dtype)
    ghost_weight = weight[:c_ghost]
    k = 4 + 3 * OFFSET[0] + OFFSET[1]  # OFFSET's orientation index for max_shift 1

    def tensor(channels):
        return torch.randn(n, channels, h, w, device=device, dtype=dtype).contiguous(memory_format=memory_format)

    def x1_logits():
        logits = torch.randn(1, 9, device=device)  # (float32, as the Ghost layer's under autocast)
        logits[0, k] = 10  # argmax: OFFSET
        return [tensor(c_int).requires_grad_(), logits.requires_grad_()]

    def depthwise_train(a, logits):
        kernel = straight_through(logits).to(dtype).view(1, 1, 3, 3).flip(-1, -2).expand(c_ghost, 1, 3, 3)
        return torch.cat([a, F.conv2d(a[:, :c_ghost], kernel, padding=1, groups=c_ghost)], 1)

    def train_reference_backward(inputs, grad):
        selection = straight_through(inputs[1])
        return (reference.ghost_features_train_backward(grad, c_ghost, selection, 1),
                reference.selection_grad(grad, inputs[0], 1, 1))

    shift_bytes = 2 * n * c * h * w * es
    ghost_bytes = (n * c_int * h * w + n * c * h * w) * es  # read x1 (grad_out), write out (grad_x1)
    train_bytes = ghost_bytes + n * c_int * h * w * es  # the backward also reads x1 for the selection's gradient
    x = [tensor(c).requires_grad_()]
    x1 = [tensor(c_int).requires_grad_()]
    train = x1_logits()
    return {
        'shift': ({
            'kernel': (x, lambda a: ops.shift(a, OFFSET), None),
            'reference': (x, lambda a: reference.shift(a, OFFSET), None),
            'depthwise': (x, lambda a: F.conv2d(a, weight, padding=1, groups=c), None),
        }, (shift_bytes, shift_bytes)),
        'ghost eval': ({
            'kernel': (x1, lambda a: ops.ghost_features(a, c_ghost, offsets), None),
            'reference': (x1, lambda a: reference.ghost_features(a, c_ghost, offsets), None),
            'depthwise': (x1, lambda a: torch.cat([a, F.conv2d(a[:, :c_ghost], ghost_weight, padding=1,
                                                                groups=c_ghost)], 1), None),
        }, (ghost_bytes, ghost_bytes)),
        'ghost train': ({
            'kernel': (train, lambda a, logits: ops.ghost_features_train(a, c_ghost, straight_through(logits), 1),
                       None),
            'reference': (train, lambda a, logits: reference.ghost_features_train_forward(
                a, c_ghost, straight_through(logits), 1), train_reference_backward),
            'depthwise': (train, depthwise_train, None),
        }, (ghost_bytes, train_bytes)),
    }


# the reference Ghost ops read the offsets (or selection) back to the host: no CUDA graph of them
SYNCING = {('ghost eval', 'reference'), ('ghost train', 'reference')}


def timed_fns(op, impls, direction):
    """{impl: (fn, capture)} for one op and direction."""
    fns = {}
    for impl, (inputs, forward, backward) in impls.items():
        capture = (op, impl) not in SYNCING
        if direction == 'forward':
            fns[impl] = (lambda forward=forward, inputs=inputs: forward(*inputs), capture)
            continue
        out = forward(*inputs)
        grad_out = torch.randn_like(out)
        if backward:
            fns[impl] = (lambda fn=backward, inputs=inputs, grad_out=grad_out: fn(inputs, grad_out), capture)
        else:
            fns[impl] = (lambda out=out, inputs=inputs, grad_out=grad_out: torch.autograd.grad(
                out, inputs, grad_out, retain_graph=True), capture)
    return fns


def benchmark_ops(args, device, measure, peak_gbs):
    rows = []
    jobs = [(size, dtype, layout) for size in args.sizes for dtype in args.dtypes for layout in args.layouts]
    for size, dtype, layout in tqdm(jobs, desc='ops', unit='case'):
        for op, (impls, moved) in op_cases(*size, device, dtype, LAYOUTS[layout]).items():
            for direction, nbytes in zip(('forward', 'backward'), moved):
                fns = timed_fns(op, impls, direction)
                copy_fns = copies(nbytes, device, dtype)
                with torch.no_grad() if direction == 'forward' else contextlib.nullcontext():
                    times = measure({**fns, **copy_fns})
                copy_gbs = {name: nbytes / times[name][0] / 1e9 for name in copy_fns}
                best_copy = max(copy_gbs.values())
                kernel_time = times['kernel'][0]
                for impl in fns:
                    seconds, timing = times[impl]
                    gbs = nbytes / seconds / 1e9
                    rows.append({'size': 'x'.join(map(str, size)), 'dtype': str(dtype).replace('torch.', ''),
                                 'layout': layout, 'op': op, 'direction': direction, 'impl': impl,
                                 'time_us': seconds * 1e6, 'bytes': nbytes, 'gb_per_s': gbs,
                                 'copy_gb_per_s': best_copy, 'copy_fraction': gbs / best_copy,
                                 'copy_memcpy_gb_per_s': max(copy_gbs['copy (memcpy)'],
                                                             copy_gbs['copy (memcpy, eager)']),
                                 'copy_kernel_gb_per_s': copy_gbs['copy (kernel)'],
                                 'peak_fraction': gbs / peak_gbs if peak_gbs else None,
                                 'kernel_speedup': seconds / kernel_time, 'timing': timing})
    return rows


def print_table(result):
    peak = f"{result['peak_gb_per_s']:.0f} GB/s" if result['peak_gb_per_s'] else 'n/a'
    print(f"\n{result['device']}, torch {result['torch']}, {result['date']}: peak {peak} "
          f"({result['peak_source']}); fastest copy measured {result['copy_gb_per_s']:.0f} GB/s")
    header = (f"{'size':>14} {'dtype':>8} {'layout':>13} {'op':>11} {'dir':>8} {'copy GB/s':>9} "
              + ' '.join(f"{impl + ' us':>14} {'% copy':>6}" for impl in IMPLS))
    print(header)
    print('-' * len(header))
    cases = {}
    for r in result['ops']:
        cases.setdefault((r['size'], r['dtype'], r['layout'], r['op'], r['direction']), {})[r['impl']] = r
    for (size, dtype, layout, op, direction), impls in cases.items():
        copy_gbs = next(iter(impls.values()))['copy_gb_per_s']
        figures = ' '.join(f"{impls[i]['time_us']:>14.1f} {100 * impls[i]['copy_fraction']:>5.0f}%" if i in impls
                           else f"{'':>14} {'':>6}" for i in IMPLS)
        print(f'{size:>14} {dtype:>8} {layout:>13} {op:>11} {direction[:8]:>8} {copy_gbs:>9.0f} {figures}')


def default_json(device, date):
    slug = re.sub(r'[^a-z0-9]+', '-', cost.device_name(device).lower()).strip('-')
    return osp.join('benchmarks', 'results', f'shift_{slug}_{date}.json')


def parse_dtypes(text, what):
    names = text.split(',')
    if not all(isinstance(getattr(torch, name, None), torch.dtype) for name in names):
        raise InputError(f'{what}: expected torch dtype names like float32,float16, found {text!r}')
    return [getattr(torch, name) for name in names]


def check_arguments(args):
    """Parse the sizes and dtypes in place; returns the JSON path, refusing to replace a file unasked."""
    args.sizes = [parse_size(s, 4, '--sizes') for s in args.sizes.split(',')]
    args.dtypes = parse_dtypes(args.dtypes, '--dtypes')
    args.layouts = args.layouts.split(',')
    if not set(args.layouts) <= set(LAYOUTS):
        raise InputError(f'--layouts: expected some of {",".join(LAYOUTS)}, found {",".join(args.layouts)!r}')
    args.date = datetime.date.today().isoformat()
    path = args.json or default_json(torch.device(args.device), args.date)
    if osp.exists(path) and not args.overwrite:
        raise InputError(f'{path} exists; pass --overwrite to replace it')
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--sizes', default='1x256x360x640,16x256x48x48',
                        help='feature sizes NxCxHxW, comma-separated (ghost ops: C/2 intrinsic channels); default: '
                             'EDSR-L x2 at 720p output, and a training batch')
    parser.add_argument('--dtypes', default='float32,float16,bfloat16')
    parser.add_argument('--layouts', default='nchw,channels_last', help='memory layouts of the ops\' inputs')
    parser.add_argument('--runs', type=int, default=50, help='timed rounds per op (median)')
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--json', default=None, help='output (default benchmarks/results/shift_<device>_<date>.json)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing JSON file')
    args = parser.parse_args()
    with exit_on_input_error(parser):
        path = check_arguments(args)

    device = torch.device(args.device)
    if device.type == 'cuda' and not extension.load():
        parser.exit(2, 'error: the CUDA kernels are unavailable (see the warning above): nothing to benchmark\n')
    torch.backends.cudnn.benchmark = True
    measure = interleaved_timer(device, args.runs, args.warmup)
    peak_gbs, peak_source = peak_bandwidth(device)
    # ops on a side stream, where CUDA graphs can be captured
    with torch.cuda.stream(torch.cuda.Stream(device)) if device.type == 'cuda' else contextlib.nullcontext():
        op_rows = benchmark_ops(args, device, measure, peak_gbs)
    result = {'device': cost.device_name(device), 'date': args.date, 'torch': torch.__version__,
              'cuda': torch.version.cuda, 'command': ' '.join([osp.basename(sys.executable), *sys.argv]),
              'runs': args.runs, 'warmup': args.warmup, 'offset': OFFSET, 'peak_gb_per_s': peak_gbs,
              'peak_source': peak_source, 'copy_gb_per_s': max(r['copy_gb_per_s'] for r in op_rows),
              'ops': op_rows}
    print_table(result)
    write_json(path, result)
    print(f'\nwrote {path}')


if __name__ == '__main__':
    main()
