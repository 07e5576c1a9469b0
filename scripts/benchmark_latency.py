"""GhostSR's latency claim: GhostEDSR-L x2 against EDSR-L x2, and one Ghost layer against a plain conv, as JSON.

Two parts, each a plain network against its Ghost twin:
  model  EDSR-L x2 (256 features, 32 blocks) against GhostEDSR-L x2 on one 640 x 360 input
  layer  a 64 -> 64 3x3 conv against a Ghost layer (a 64 -> 32 conv plus the shift) on 1 x 64 x 256 x 256
and two modes:
  eager     the plain network, and the frozen Ghost network (the fused shift op)
  compiled  torch.compile of the plain network, of the frozen Ghost network (the shift lowered to
            padding and concat) and of the Ghost network in eval mode, not frozen (a gather at the
            argmax offsets): 'eval_over_frozen' says whether eval mode costs anything under compile
for each dtype and memory layout asked for. The networks of one (part, mode, dtype, layout) are
timed in turn, round after round (ghostsr_plugin.cost: CUDA events on a GPU, median), so their
ratios are fair; on a GPU the layer is timed as CUDA graph replays (the device's time, not
Python's launches). The Ghost networks' orientations are random, as after training; the eval
and frozen outputs are compared ('max_difference'). Each row is written to the JSON as soon as
it is measured, so a run stopped by a time limit keeps what it measured; a row that fails
records its error and the next one runs. scripts/gpu_check.py runs it on a GPU.

Example (a GPU): python scripts/benchmark_latency.py --json latency.json
Example (CPU, tiny): python scripts/benchmark_latency.py --device cpu --size 12 16 --num-feat 8 --num-block 2 \\
    --layer-size 8 16 16 --runs 2 --warmup 1 --compile-backend aot_eager --json /tmp/latency.json
"""
import argparse
import copy
import datetime
import os.path as osp
import sys
import time

import torch
from torch import nn

from ghostsr_plugin import cost
from ghostsr_plugin.archs import GhostConv2d, freeze, ghost_layers
from ghostsr_plugin.archs.ghost_edsr_arch import GhostEDSR
from ghostsr_plugin.atomic import write_json
from ghostsr_plugin.commands import positive_int
from ghostsr_plugin.engines import LAYOUTS
from ghostsr_plugin.errors import InputError, exit_on_input_error
from ghostsr_plugin.outputs import check_output_file

DTYPES = ('float32', 'float16', 'bfloat16')
MODES = ('eager', 'compiled')


def with_ghost_twins(plain, ghost):
    """``{'plain', 'ghost' (frozen), 'ghost eval'}``: ``ghost`` given random orientations, as after training.

    Each orientation's logit stands 1 above the others, so the argmax is the same in every dtype.
    """
    for layer in ghost_layers(ghost):
        picked = torch.randint(layer.logits.shape[1], (layer.logits.shape[0],))
        layer.logits.data = nn.functional.one_hot(picked, layer.logits.shape[1]).to(layer.logits)
    return {'plain': plain.eval(), 'ghost': freeze(copy.deepcopy(ghost).eval()), 'ghost eval': ghost.eval()}


def model_networks(args, device='cpu'):
    """EDSR and GhostEDSR of ``args``' width and depth, on ``device``."""
    from basicsr.archs.edsr_arch import EDSR  # (after ghostsr_plugin, whose compat fixes basicsr needs)

    common = dict(num_in_ch=3, num_out_ch=3, num_feat=args.num_feat, num_block=args.num_block, upscale=args.scale,
                  res_scale=0.1)
    torch.manual_seed(0)
    with torch.device(device):
        return with_ghost_twins(EDSR(**common), GhostEDSR(**common))


def layer_networks(channels):
    torch.manual_seed(0)
    return with_ghost_twins(nn.Conv2d(channels, channels, 3, padding=1), GhostConv2d(channels, channels))


def graphed(call):
    """``call`` captured once as a CUDA graph: its replay (after a warm-up call on a side stream)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    return graph.replay


@torch.no_grad()
def measure(networks, x, mode, layout, args, device, graphs):
    """One row: each network's median milliseconds (timed in turn), compile seconds, ratios, eval/frozen difference."""
    names = [name for name in networks if mode == 'compiled' or name != 'ghost eval']
    calls, compile_s, outputs = {}, {}, {}
    torch._dynamo.reset()  # (a fresh cache per row: dynamo's recompile limit never falls back to eager)
    for name in names:
        net = copy.deepcopy(networks[name]).to(device=device, dtype=x.dtype, memory_format=LAYOUTS[layout])
        run = torch.compile(net, backend=args.compile_backend, dynamic=False) if mode == 'compiled' else net
        begin = time.perf_counter()
        outputs[name] = run(x).float()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        compile_s[name] = time.perf_counter() - begin

        def call(run=run):
            return run(x)

        calls[name] = graphed(call) if graphs and device.type == 'cuda' else call
    seconds, timing = cost.interleaved_latency(calls, device, args.warmup, args.runs)
    row = {'ms': {name: s * 1e3 for name, s in seconds.items()},
           'timing': f"{timing}{', CUDA graph replay' if graphs and device.type == 'cuda' else ''}",
           'ratio': seconds['ghost'] / seconds['plain']}
    if mode == 'compiled':
        row.update(compile_s=compile_s, eval_over_frozen=seconds['ghost eval'] / seconds['ghost'],
                   max_difference=(outputs['ghost eval'] - outputs['ghost']).abs().max().item())
    return row


def cases(args):
    """``(part, mode, dtype, layout)`` in the order they run: part by part as --parts orders them, dtype by dtype."""
    return [(part, mode, dtype, layout) for part in args.parts
            for dtype in (args.layer_dtypes if part == 'layer' else args.dtypes) for layout in args.layouts
            for mode in args.modes]


def model_costs(args):
    """``{'plain', 'ghost'}``: each model's params and GFLOPs (torch.utils.flop_counter, on the meta device)."""
    x = torch.empty(1, 3, *args.size, device='meta')
    networks = model_networks(args, 'meta')
    return {name: {'params': cost.count_params(networks[name]), 'gflops': cost.count_flops(networks[name], x) / 1e9}
            for name in ('plain', 'ghost')}


def run(args, path):
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    h, w = args.size
    c, lh, lw = args.layer_size
    result = {
        'device': cost.device_name(device), 'date': datetime.datetime.now(datetime.timezone.utc).isoformat(),
        'torch': torch.__version__, 'cuda': torch.version.cuda,
        'command': ' '.join([osp.basename(sys.executable), *sys.argv]), 'runs': args.runs, 'warmup': args.warmup,
        'compile_backend': args.compile_backend,
        'model': {'plain': f'EDSR x{args.scale}', 'ghost': f'GhostEDSR x{args.scale}', 'num_feat': args.num_feat,
                  'num_block': args.num_block, 'input': f'{w}x{h}', 'cost': model_costs(args)},
        'layer': {'plain': f'Conv2d({c}, {c}, 3)', 'ghost': f'GhostConv2d({c}, {c}) (a {c} -> {c // 2} conv + shift)',
                  'input': f'1x{c}x{lh}x{lw}'},
        'rows': [],
    }
    networks = {'model': model_networks(args), 'layer': layer_networks(c)}
    for part, mode, dtype, layout in cases(args):
        shape = (1, 3, h, w) if part == 'model' else (1, c, lh, lw)
        x = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device, getattr(torch, dtype))
        row = {'part': part, 'mode': mode, 'dtype': dtype, 'layout': layout}
        try:
            row.update(measure(networks[part], x.contiguous(memory_format=LAYOUTS[layout]), mode, layout, args,
                               device, graphs=part == 'layer'))
            figures = ', '.join(f'{name} {ms:.3f} ms' for name, ms in row['ms'].items())
            extra = f", eval/frozen {row['eval_over_frozen']:.3f}" if mode == 'compiled' else ''
            print(f"{part} {mode} {dtype} {layout}: {figures}; ghost/plain {row['ratio']:.3f}{extra}", flush=True)
        except Exception as error:  # noqa: BLE001  (recorded; the next row still runs: GPU time is scarce)
            row['error'] = f'{type(error).__name__}: {error}'.splitlines()[0]
            print(f"{part} {mode} {dtype} {layout}: failed: {row['error']}", flush=True)
        result['rows'].append(row)
        write_json(path, result)
    print(f'wrote {path}')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--parts', nargs='+', choices=('layer', 'model'), default=['layer', 'model'],
                        help='what to measure, in this order (default: layer model)')
    parser.add_argument('--modes', nargs='+', choices=MODES, default=list(MODES))
    parser.add_argument('--dtypes', nargs='+', choices=DTYPES, default=list(DTYPES), help='of the model part')
    parser.add_argument('--layer-dtypes', nargs='+', choices=DTYPES, default=['float16'])
    parser.add_argument('--layouts', nargs='+', choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument('--size', nargs=2, type=positive_int, default=[360, 640], metavar=('H', 'W'),
                        help='the model input (default: 360 640)')
    parser.add_argument('--num-feat', type=positive_int, default=256)
    parser.add_argument('--num-block', type=positive_int, default=32)
    parser.add_argument('--scale', type=positive_int, default=2)
    parser.add_argument('--layer-size', nargs=3, type=positive_int, default=[64, 256, 256], metavar=('C', 'H', 'W'),
                        help='the layer input (default: 64 256 256; C even)')
    parser.add_argument('--runs', type=positive_int, default=20, help='timed runs per network (median)')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--compile-backend', default='inductor')
    parser.add_argument('--json', required=True, help='the output file')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing JSON file')
    args = parser.parse_args()
    with exit_on_input_error(parser):
        check_output_file(args.json, args.overwrite, option='--json')
        if args.layer_size[0] % 2:
            raise InputError(f'--layer-size: C must be even (half the channels are ghosts), found {args.layer_size[0]}')
        if args.device.startswith('cuda') and not torch.cuda.is_available():
            raise InputError(f'--device {args.device}: no CUDA device is available')
    run(args, args.json)


if __name__ == '__main__':
    main()
