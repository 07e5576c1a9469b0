"""Benchmark the adder layer's op against nn.Conv2d at one shape: time and peak memory; prints a table, writes JSON.

Issue 29's targets, at batch 16, 32 -> 32 channels, 32 x 32, a 3 x 3 window, one thread: the
adder's forward at most 3x nn.Conv2d's, forward and backward at most 5x, peak memory at most 2x
the conv's. Each is done four ways, timed side by side (interleaved: one run of each in turn,
``--repeats`` rounds, the median of each):
  conv          nn.Conv2d(C, O, k, padding=k // 2) (oneDNN), the yardstick
  adder         ghostsr_plugin.ops.adder2d: the compiled CPU kernels (forward; backward: the
                input-gradient kernel and a convolution's filter gradient, AdderNet's rule)
  reference     ghostsr_plugin.ops.adder_reference, the pure-PyTorch fallback
  unfold_cdist  what a user would write: unfold, then torch.cdist(p=1) of windows and filters
Peak memory: the most bytes the call holds at once beyond its inputs (outputs, saved tensors,
gradients, workspaces), from torch.profiler's allocation records. The JSON also holds a
profile of the adder's forward and backward (self CPU time per op) and whether each target is met.

Example: OMP_NUM_THREADS=1 python scripts/benchmark_adder.py        (benchmarks/results/adder/kernel_<cpu>_<date>.json)
"""
import argparse
import datetime
import os.path as osp
import re
import sys

import torch
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from ghostsr_plugin import cost, ops
from ghostsr_plugin.atomic import write_json
from ghostsr_plugin.errors import InputError, exit_on_input_error
from ghostsr_plugin.ops import adder_reference, cpu_kernels

IMPLS = ('conv', 'adder', 'reference', 'unfold_cdist')
TARGETS = {'forward': 3, 'forward_backward': 5, 'peak_memory_forward': 2, 'peak_memory_forward_backward': 2}


def unfold_cdist(x, weight, padding):
    """The adder as unfold + ``torch.cdist(p=1)``: every window against every filter."""
    n, _, h, w = x.shape
    o, _, k, _ = weight.shape
    windows = F.unfold(x, k, padding=padding).transpose(1, 2)  # (N, L, C k k)
    out = -torch.cdist(windows, weight.reshape(1, o, -1).expand(n, -1, -1), p=1)  # (N, L, O)
    return out.transpose(1, 2).reshape(n, o, h + 2 * padding - k + 1, w + 2 * padding - k + 1)


def cases(n, c, o, size, k, generator):
    """``{impl: (forward(x, weight), x, weight)}`` on the same values."""
    x = torch.randn(n, c, *size, generator=generator)
    conv = torch.nn.Conv2d(c, o, k, padding=k // 2)
    weight = torch.randn(o, c, k, k, generator=generator)
    return {'conv': (lambda t, _: conv(t), x, conv.weight),
            'adder': (lambda t, wt: ops.adder2d(t, wt, k // 2), x, weight),
            'reference': (lambda t, wt: adder_reference.adder2d(t, wt, k // 2), x, weight),
            'unfold_cdist': (lambda t, wt: unfold_cdist(t, wt, k // 2), x, weight)}


def forward_call(forward, x, weight):
    return lambda: forward(x, weight)


def forward_backward_call(forward, x, weight, impl):
    """One forward and backward; the reference's backward is the reference's own (AdderNet's rule)."""
    x = x.detach().clone().requires_grad_()
    weight = weight if impl == 'conv' else weight.detach().clone().requires_grad_()

    def run():
        if impl == 'reference':  # (no autograd function: its forward, then its backward, as the op calls them)
            out = forward(x.detach(), weight.detach())
            adder_reference.adder2d_backward(torch.ones_like(out), x.detach(), weight.detach(), weight.shape[-1] // 2)
            return
        with torch.enable_grad():
            x.grad, weight.grad = None, None
            out = forward(x, weight)
            out.backward(torch.ones_like(out))
    return run


def peak_bytes(run):
    """The most bytes ``run()`` holds at once beyond what existed before, by torch.profiler's allocation records."""
    run()  # (a first call's one-off allocations, a kernel build, stay out)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == '[memory]'),
                    key=lambda e: e.start_ns())
    held = peak = 0
    for event in events:
        held += event.nbytes()
        peak = max(peak, held)
    return peak


def op_profile(run, rows=12):
    """Self CPU time per op of one ``run()``, slowest first."""
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    averages = sorted(prof.key_averages(), key=lambda a: a.self_cpu_time_total, reverse=True)[:rows]
    return [{'op': a.key, 'calls': a.count, 'self_cpu_ms': a.self_cpu_time_total / 1e3} for a in averages]


def measure(args):
    generator = torch.Generator().manual_seed(0)
    impls = cases(args.batch, args.in_channels, args.out_channels, args.size, args.kernel, generator)
    if not args.slow:
        impls = {k: v for k, v in impls.items() if k in ('conv', 'adder')}
    calls = {'forward': {name: forward_call(f, x, w) for name, (f, x, w) in impls.items()},
             'forward_backward': {name: forward_backward_call(f, x, w, name) for name, (f, x, w) in impls.items()}}
    result = {}
    for direction, runs in calls.items():
        print(f'timing {direction}: {", ".join(runs)}, {args.repeats} interleaved rounds', flush=True)
        seconds, method = cost.interleaved_latency(runs, 'cpu', args.warmup, args.repeats)
        memory = {name: peak_bytes(run) for name, run in runs.items()}
        result[direction] = {name: {'seconds': seconds[name], 'peak_bytes': memory[name],
                                    'time_ratio': seconds[name] / seconds['conv'],
                                    'memory_ratio': memory[name] / memory['conv']} for name in runs}
        result[direction]['method'] = method
    return result, op_profile(calls['forward_backward']['adder'])


def targets(result):
    """Every target of issue 29: the figure it is judged on and whether it is met."""
    figures = {'forward': result['forward']['adder']['time_ratio'],
               'forward_backward': result['forward_backward']['adder']['time_ratio'],
               'peak_memory_forward': result['forward']['adder']['memory_ratio'],
               'peak_memory_forward_backward': result['forward_backward']['adder']['memory_ratio']}
    return {name: {'ratio_to_conv': figures[name], 'at_most': limit, 'met': figures[name] <= limit}
            for name, limit in TARGETS.items()}


def print_table(result, judged):
    print(f"\n{'direction':>17} {'impl':>13} {'ms':>10} {'x conv':>7} {'peak MiB':>9} {'x conv':>7}")
    for direction in ('forward', 'forward_backward'):
        for name, row in result[direction].items():
            if name != 'method':
                print(f"{direction:>17} {name:>13} {row['seconds'] * 1e3:>10.2f} {row['time_ratio']:>7.2f} "
                      f"{row['peak_bytes'] / 2**20:>9.2f} {row['memory_ratio']:>7.2f}")
    for name, target in judged.items():
        print(f"target {name}: {target['ratio_to_conv']:.2f}x conv (at most {target['at_most']}x): "
              f"{'met' if target['met'] else 'MISSED'}")


def default_json(date):
    slug = re.sub(r'[^a-z0-9]+', '-', cost.device_name('cpu').lower()).strip('-')
    return osp.join('benchmarks', 'results', 'adder', f'kernel_{slug}_{date}.json')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--in_channels', type=int, default=32)
    parser.add_argument('--out_channels', type=int, default=32)
    parser.add_argument('--size', type=int, nargs=2, default=(32, 32), metavar=('H', 'W'))
    parser.add_argument('--kernel', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1, help='CPU threads (default: %(default)s, the target\'s)')
    parser.add_argument('--repeats', type=int, default=20, help='timed rounds (median)')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--fast', dest='slow', action='store_false',
                        help='time conv and adder only (not the reference nor unfold + cdist)')
    parser.add_argument('--json', help='output (default benchmarks/results/adder/kernel_<cpu>_<date>.json)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing JSON file')
    args = parser.parse_args()
    date = datetime.date.today().isoformat()
    path = args.json or default_json(date)
    with exit_on_input_error(parser):
        if min(args.batch, args.in_channels, args.out_channels, *args.size, args.kernel, args.threads,
               args.repeats) < 1 or args.kernel % 2 == 0:
            raise InputError('sizes, threads and repeats must be positive, the kernel odd')
        if osp.exists(path) and not args.overwrite:
            raise InputError(f'{path} exists; pass --overwrite to replace it')
    torch.set_num_threads(args.threads)
    if not cpu_kernels.active():
        parser.exit(2, f'error: the compiled CPU kernels are unavailable ({cpu_kernels.status()[1]})\n')
    result, profile_rows = measure(args)
    judged = targets(result)
    print_table(result, judged)
    record = {'device': cost.device_name('cpu'), 'date': date, 'torch': torch.__version__,
              'command': ' '.join([osp.basename(sys.executable), *sys.argv]),
              'shape': {'batch': args.batch, 'in_channels': args.in_channels, 'out_channels': args.out_channels,
                        'size': list(args.size), 'kernel': args.kernel},
              'threads': torch.get_num_threads(), 'repeats': args.repeats, 'warmup': args.warmup,
              'kernels': 'compiled (ghostsr_plugin/ops/csrc/adder_cpu.cpp)', 'compiler_flags': cpu_kernels.flags(),
              **result, 'targets': judged, 'adder_forward_backward_profile': profile_rows}
    write_json(path, record)
    print(f'\nwrote {path}')


if __name__ == '__main__':
    main()
