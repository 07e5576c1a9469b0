"""Benchmark the shift ops and GhostEDSR-L end to end: prints a table and writes JSON.

Ops: the shift, and the fused Ghost layer op (eval: a fixed offset; train: the learned
one-hot selection, whose backward also gives the logits' gradient), forward and backward,
each done four ways:
  kernel     ghostsr_plugin.ops (the fused CUDA kernels on a GPU; the reference on CPU)
  reference  the pure-PyTorch reference, ghostsr_plugin.ops.reference, called directly (the
             train op's backward: its reference backward, input and selection gradients)
  roll       torch.roll (wraps around instead of zero fill; a plain PyTorch data move)
  depthwise  the official code's way: a depthwise 3x3 conv with a one-hot kernel
Bandwidth is effective: the bytes the op must read and write once, over its time, set
against the device's copy bandwidth (``dst.copy_(src)``) measured in the same run. On a GPU
an op is timed as a CUDA graph replay (CUDA events, median), so the figures are the device's,
not Python's launch cost; the reference Ghost ops read the offsets back to the host and cannot
be captured, so they are timed as launched ('timing' in the JSON says which).

End to end: GhostEDSR-L x2 against EDSR-L x2 on one input (default 640 x 360), eval, median
latency after warm-up (ghostsr_plugin.cost: CUDA events on a GPU), with parameters and FLOPs
(torch.utils.flop_counter, counted on the meta device).

Example (a GPU): python scripts/benchmark_shift.py
Example (CPU, small): python scripts/benchmark_shift.py --device cpu --sizes 1x16x24x32 --dtypes float32 \\
    --e2e-size 24x32 --num-feat 16 --num-block 2 --runs 5 --json /tmp/shift.json
"""
import argparse
import contextlib
import datetime
import json
import os.path as osp
import re
import statistics
import sys
import time

import torch
from torch.nn import functional as F
from tqdm import tqdm

from ghostsr_plugin import cost, ops
from ghostsr_plugin.archs.ghost_edsr_arch import GhostEDSR
from ghostsr_plugin.atomic import atomic_path
from ghostsr_plugin.commands import positive_int
from ghostsr_plugin.errors import InputError, exit_on_input_error
from ghostsr_plugin.ops import extension, reference

OFFSET = (1, 1)  # the shift every op is timed with
LAYOUTS = {'nchw': torch.contiguous_format, 'channels_last': torch.channels_last}


def parse_size(text, parts, what):
    try:
        size = tuple(int(v) for v in text.lower().split('x'))
    except ValueError:
        size = ()
    if len(size) != parts or min(size) < 1:
        raise InputError(f'{what}: expected {parts} positive integers joined by x, found {text!r}')
    return size


def op_timer(device, runs, warmup):
    """``measure(fn)``: median seconds of ``fn()`` over ``runs`` calls after ``warmup``, and how.

    On a GPU (from a side stream: the default stream cannot be captured) ``fn`` is captured once
    as a CUDA graph, unless ``capture`` is False (``fn`` syncs with the host), and its replays,
    or calls, are timed between two events each, with no sync in between. On a CPU: the wall clock.
    """
    def median_time(fn, capture=True):
        for _ in range(warmup):
            fn()
        if device.type != 'cuda':
            times = []
            for _ in range(runs):
                begin = time.perf_counter()
                fn()
                times.append(time.perf_counter() - begin)
            return statistics.median(times), 'wall clock'
        run, timing = fn, 'CUDA events, eager'
        if capture:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=torch.cuda.current_stream()):
                fn()
            run, timing = graph.replay, 'CUDA events, graph replay'
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(runs)]
        for start, end in events:
            start.record()
            run()
            end.record()
        torch.cuda.synchronize(device)
        return statistics.median(start.elapsed_time(end) for start, end in events) / 1e3, timing

    return median_time


def copy_bandwidth(device, mib, measure):
    """GB/s of ``dst.copy_(src)`` on a ``mib`` MiB buffer (bytes read plus bytes written)."""
    src = torch.empty(mib * 2**20, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    return 2 * src.numel() / measure(lambda: dst.copy_(src))[0] / 1e9


def one_hot_kernel(channels, dy, dx, device, dtype):
    """Depthwise 3x3 weight whose conv shifts by (dy, dx): conv2d correlates, so tap (1 - dy, 1 - dx)."""
    weight = torch.zeros(channels, 1, 3, 3, device=device, dtype=dtype)
    weight[:, 0, 1 - dy, 1 - dx] = 1
    return weight


def straight_through(logits):
    hard = F.one_hot(logits.detach().argmax(-1), logits.shape[-1]).to(logits.dtype)
    return hard - logits.detach() + logits


def op_cases(n, c, h, w, device, dtype, memory_format):
    """{(op, impl): (make inputs, forward, bytes moved forward, bytes moved backward[, backward])} for one size.

    ``backward(inputs, grad_out)``, where given, is timed instead of autograd's backward.
    """
    c_ghost = c // 2
    c_int = c - c_ghost
    es = torch.empty((), dtype=dtype).element_size()
    offsets = torch.tensor([OFFSET], device=device)
    weight = one_hot_kernel(c, *OFFSET, device, dtype)
    ghost_weight = weight[:c_ghost]
    k = 4 + 3 * OFFSET[0] + OFFSET[1]  # OFFSET's orientation index for max_shift 1

    def x():
        return [torch.randn(n, c, h, w, device=device, dtype=dtype).contiguous(memory_format=memory_format)
                .requires_grad_()]

    def x1():
        return [torch.randn(n, c_int, h, w, device=device, dtype=dtype).contiguous(memory_format=memory_format)
                .requires_grad_()]

    def x1_logits():
        logits = torch.randn(1, 9, device=device, dtype=dtype)
        logits[0, k] = 10  # argmax: OFFSET
        return [*x1(), logits.requires_grad_()]

    def depthwise_train(a, logits):
        kernel = straight_through(logits).view(1, 1, 3, 3).flip(-1, -2).expand(c_ghost, 1, 3, 3)
        return torch.cat([a, F.conv2d(a[:, :c_ghost], kernel, padding=1, groups=c_ghost)], 1)

    shift_bytes = 2 * n * c * h * w * es
    ghost_bytes = (n * c_int * h * w + n * c * h * w) * es  # read x1 (grad_out), write out (grad_x1)
    train_bytes = ghost_bytes + n * c_int * h * w * es  # the backward also reads x1 for the logits' gradient
    return {
        ('shift', 'kernel'): (x, lambda a: ops.shift(a, OFFSET), shift_bytes, shift_bytes),
        ('shift', 'reference'): (x, lambda a: reference.shift(a, OFFSET), shift_bytes, shift_bytes),
        ('shift', 'roll'): (x, lambda a: torch.roll(a, OFFSET, (2, 3)), shift_bytes, shift_bytes),
        ('shift', 'depthwise'): (x, lambda a: F.conv2d(a, weight, padding=1, groups=c), shift_bytes, shift_bytes),
        ('ghost eval', 'kernel'): (x1, lambda a: ops.ghost_features(a, c_ghost, offsets), ghost_bytes, ghost_bytes),
        ('ghost eval', 'reference'): (
            x1, lambda a: reference.ghost_features(a, c_ghost, offsets), ghost_bytes, ghost_bytes),
        ('ghost eval', 'roll'): (
            x1, lambda a: torch.cat([a, torch.roll(a[:, :c_ghost], OFFSET, (2, 3))], 1), ghost_bytes, ghost_bytes),
        ('ghost eval', 'depthwise'): (
            x1, lambda a: torch.cat([a, F.conv2d(a[:, :c_ghost], ghost_weight, padding=1, groups=c_ghost)], 1),
            ghost_bytes, ghost_bytes),
        ('ghost train', 'kernel'): (
            x1_logits, lambda a, logits: ops.ghost_features_train(a, c_ghost, straight_through(logits), 1),
            ghost_bytes, train_bytes),
        ('ghost train', 'reference'): (
            x1_logits,
            lambda a, logits: reference.ghost_features_train_forward(a, c_ghost, straight_through(logits), 1),
            ghost_bytes, train_bytes,
            lambda inputs, grad: (
                reference.ghost_features_train_backward(grad, c_ghost, straight_through(inputs[1]), 1),
                reference.selection_grad(grad, inputs[0], 1, 1))),
        ('ghost train', 'depthwise'): (x1_logits, depthwise_train, ghost_bytes, train_bytes),
    }


# the reference Ghost ops read the offsets (or selection) back to the host: no CUDA graph of them
SYNCING = {('ghost eval', 'reference'), ('ghost train', 'reference')}


def benchmark_ops(args, device, measure, copy_gbs):
    rows = []
    jobs = [(size, dtype, layout) for size in args.sizes for dtype in args.dtypes for layout in args.layouts]
    for size, dtype, layout in tqdm(jobs, desc='ops', unit='case'):
        cases = op_cases(*size, device, dtype, LAYOUTS[layout])
        for (op, impl), (make, forward, fwd_bytes, bwd_bytes, *backward) in cases.items():
            inputs = make()
            out = forward(*inputs)
            grad_out = torch.randn_like(out)
            capture = (op, impl) not in SYNCING
            with torch.no_grad():
                fwd = measure(lambda forward=forward, inputs=inputs: forward(*inputs), capture)
                if backward:
                    bwd = measure(lambda a=inputs, g=grad_out, fn=backward[0]: fn(a, g), capture)
            if not backward:
                bwd = measure(lambda out=out, inputs=inputs, grad_out=grad_out: torch.autograd.grad(
                    out, inputs, grad_out, retain_graph=True), capture)
            for direction, (seconds, timing), moved in (('forward', fwd, fwd_bytes), ('backward', bwd, bwd_bytes)):
                gbs = moved / seconds / 1e9
                rows.append({'size': 'x'.join(map(str, size)), 'dtype': str(dtype).replace('torch.', ''),
                             'layout': layout, 'op': op,
                             'direction': direction, 'impl': impl, 'time_us': seconds * 1e6, 'bytes': moved,
                             'gb_per_s': gbs, 'copy_fraction': gbs / copy_gbs, 'timing': timing})
            del inputs, out, grad_out

    def case(row):
        return row['size'], row['dtype'], row['layout'], row['op'], row['direction']

    kernel_time = {case(row): row['time_us'] for row in rows if row['impl'] == 'kernel'}
    for row in rows:
        row['kernel_speedup'] = row['time_us'] / kernel_time[case(row)]
    return rows


def edsr_models(args, device):
    from basicsr.archs.edsr_arch import EDSR  # (imported after ghostsr_plugin, whose compat fixes basicsr needs)

    common = dict(num_in_ch=3, num_out_ch=3, num_feat=args.num_feat, num_block=args.num_block, upscale=args.scale,
                  res_scale=0.1)
    with torch.device(device):
        return {'EDSR': EDSR(**common), 'GhostEDSR': GhostEDSR(**common)}


def benchmark_end_to_end(args, device):
    h, w = args.e2e_size
    flops = {name: cost.count_flops(model.eval(), torch.empty(1, 3, h, w, device='meta'))
             for name, model in edsr_models(args, 'meta').items()}
    rows = []
    models = edsr_models(args, device)
    for dtype, mode in [(dtype, mode) for dtype in args.e2e_dtypes for mode in args.e2e_modes]:
        times = {}
        for name, model in tqdm(models.items(), desc=f'end to end {dtype} {mode}', unit='model'):
            model = model.eval().to(dtype)
            run = torch.compile(model, backend=args.compile_backend) if mode == 'compiled' else model
            x = torch.rand(1, 3, h, w, device=device, dtype=dtype)
            with torch.no_grad():
                times[name], timing = cost.measure_latency(lambda run=run, x=x: run(x), device, args.warmup,
                                                           args.runs)
            rows.append({'model': name, 'dtype': str(dtype).replace('torch.', ''), 'mode': mode, 'input': f'{w}x{h}',
                         'latency_ms': times[name] * 1e3, 'timing': timing, 'params': cost.count_params(model),
                         'gflops': flops[name] / 1e9})
        rows[-1]['latency_ratio'] = times['GhostEDSR'] / times['EDSR']
    return rows


def print_tables(result):
    print(f"\n{result['device']}, torch {result['torch']}, {result['date']}: copy bandwidth "
          f"{result['copy_gb_per_s']:.1f} GB/s")
    header = f"{'size':>16} {'dtype':>8} {'layout':>13} {'op':>11} {'dir':>8} {'impl':>9} {'time us':>10} " \
             f"{'GB/s':>8} {'% copy':>7} {'vs kernel':>9}"
    print(header)
    print('-' * len(header))
    for r in result['ops']:
        print(f"{r['size']:>16} {r['dtype']:>8} {r['layout']:>13} {r['op']:>11} {r['direction'][:8]:>8} {r['impl']:>9} "
              f"{r['time_us']:>10.1f} {r['gb_per_s']:>8.1f} {100 * r['copy_fraction']:>6.1f}% "
              f"{r['kernel_speedup']:>8.2f}x")
    if result['end_to_end']:
        print(f"\n{'model':>10} {'dtype':>8} {'mode':>8} {'input':>9} {'ms':>10} {'params':>12} {'GFLOPs':>9} "
              f"{'ratio':>6}")
        for r in result['end_to_end']:
            ratio = f"{r['latency_ratio']:.3f}" if 'latency_ratio' in r else ''
            print(f"{r['model']:>10} {r['dtype']:>8} {r['mode']:>8} {r['input']:>9} {r['latency_ms']:>10.2f} "
                  f"{r['params']:>12,} "
                  f"{r['gflops']:>9.1f} {ratio:>6}")


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
    args.e2e_size = None if args.e2e_size == 'none' else parse_size(args.e2e_size, 2, '--e2e-size')
    args.dtypes = parse_dtypes(args.dtypes, '--dtypes')
    args.e2e_dtypes = parse_dtypes(args.e2e_dtypes, '--e2e-dtypes') if args.e2e_dtypes else args.dtypes
    args.layouts = args.layouts.split(',')
    if not set(args.layouts) <= set(LAYOUTS):
        raise InputError(f'--layouts: expected some of {",".join(LAYOUTS)}, found {",".join(args.layouts)!r}')
    args.e2e_modes = args.e2e_modes.split(',')
    if not set(args.e2e_modes) <= {'eager', 'compiled'}:
        raise InputError(f'--e2e-modes: expected some of eager,compiled, found {",".join(args.e2e_modes)!r}')
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
    parser.add_argument('--dtypes', default='float32,float16')
    parser.add_argument('--layouts', default='nchw,channels_last', help='memory layouts of the ops\' inputs')
    parser.add_argument('--runs', type=int, default=50, help='timed runs per figure (median)')
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--copy-mib', type=int, default=None, help='copy-bandwidth buffer (default 1024 GPU, 64 CPU)')
    parser.add_argument('--e2e-size', default='360x640', help='end-to-end input HxW (default 640 x 360), or none')
    parser.add_argument('--e2e-dtypes', default=None, help='end-to-end dtypes (default: --dtypes)')
    parser.add_argument('--e2e-modes', default='eager,compiled', help='eager, and/or torch.compile\'d')
    parser.add_argument('--compile-backend', default='inductor', help='torch.compile backend (default inductor)')
    parser.add_argument('--num-feat', type=int, default=256)
    parser.add_argument('--num-block', type=int, default=32)
    parser.add_argument('--scale', type=positive_int, default=2)
    parser.add_argument('--json', default=None, help='output (default benchmarks/results/shift_<device>_<date>.json)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing JSON file')
    args = parser.parse_args()
    with exit_on_input_error(parser):
        path = check_arguments(args)

    device = torch.device(args.device)
    if device.type == 'cuda' and not extension.load():
        parser.exit(2, 'error: the CUDA kernels are unavailable (see the warning above): nothing to benchmark\n')
    torch.backends.cudnn.benchmark = True
    measure = op_timer(device, args.runs, args.warmup)
    # ops on a side stream, where CUDA graphs can be captured
    with torch.cuda.stream(torch.cuda.Stream(device)) if device.type == 'cuda' else contextlib.nullcontext():
        copy_gbs = copy_bandwidth(device, args.copy_mib or (1024 if device.type == 'cuda' else 64), measure)
        op_rows = benchmark_ops(args, device, measure, copy_gbs)
    result = {'device': cost.device_name(device), 'date': args.date, 'torch': torch.__version__,
              'cuda': torch.version.cuda, 'command': ' '.join([osp.basename(sys.executable), *sys.argv]),
              'runs': args.runs, 'warmup': args.warmup, 'offset': OFFSET, 'copy_gb_per_s': copy_gbs, 'ops': op_rows,
              'end_to_end': benchmark_end_to_end(args, device) if args.e2e_size else []}
    print_tables(result)
    with atomic_path(path) as temporary, open(temporary, 'w') as f:
        json.dump(result, f, indent=1)
    print(f'\nwrote {path}')


if __name__ == '__main__':
    main()
