"""SMSR's sparse inference against the same trained network computed densely: does its FLOPs saving become time saved?

Developer tool. The trained network of an option file (default: the SMSR demo, its run's
``net_g_latest.pth``) runs on a natural input: the LR images of a test set tiled into one frame
whose output is 1280 x 720 (as ``ghostsr benchmark --latency_input``), one thread. Three forms of
it are timed in turn, round after round (``cost.interleaved_latency``: fair ratios on a busy machine):

  sparse  the deploy form: the sparse channels only at the positions the masks keep (gather, matmul, scatter)
  dense   the same network, every conv whole, masked afterwards: the same outputs at the dense FLOPs
  open    the same weights with every channel dense (one conv per layer): the architecture's own dense
          cost, against which the dense form's split convolutions are measured

It records the FLOPs of each (``torch.utils.flop_counter``), the masks' sparsity, the largest
difference between the sparse and the dense outputs (on the timed frame and on every image of the
test sets), the share of the FLOPs saving that becomes time saved, ``(1 - t_sparse / t_dense) /
(1 - F_sparse / F_dense)``, against the target (issue 30: at least 0.5), and torch.profiler's
per-operator time of the sparse and dense forms (where the time goes, whether or not the target is met).

Example (from the repository root, nothing else running):
  /work/tools/cpu -x python scripts/benchmark_sparse.py --json benchmarks/results/smsr/sparse_speed.json
"""
import argparse
import copy
import os.path as osp
from collections import defaultdict
from datetime import datetime, timezone
from functools import partial

import torch

from ghostsr_plugin.atomic import write_json
from ghostsr_plugin.commands import positive_int
from ghostsr_plugin.commands.benchmark import environment
from ghostsr_plugin.cost import count_flops, device_name, interleaved_latency, mask_cost
from ghostsr_plugin.data_prep import mosaic, read_color_image
from ghostsr_plugin.errors import exit_on_input_error
from ghostsr_plugin.evaluate import latest_checkpoint, network_input, paired_images
from ghostsr_plugin.option_check import check_network_options, load_option_file
from ghostsr_plugin.outputs import check_output_file
from ghostsr_plugin.results import portable_path, set_folders, sha256
from ghostsr_plugin.trained_model import frozen_model

FORMAT = 'ghostsr-sparse-speed/1'
TARGET = 0.5  # issue 30: at least half the FLOPs saving turned into time saved
KINDS = {'aten::mkldnn_convolution': 'convolution', 'aten::convolution': 'convolution', 'aten::mm': 'matmul',
         'aten::addmm': 'matmul', 'aten::index_select': 'gather', 'aten::index': 'gather',
         'aten::index_add_': 'scatter', 'aten::nonzero': 'mask positions', 'aten::cumsum': 'mask positions'}


def keep_top(net, share):
    """Make every spatial mask of ``net`` keep the ``share`` of positions its learned scores rank highest (the
    learned masks' order at another sparsity)."""
    for module in net.body:
        branch = module.spatial_mask

        def forward(x, branch=branch):
            score = branch.body(x)[..., :x.shape[-2], :x.shape[-1]]
            score = (score[:, 1:] - score[:, :1]).flatten(1)
            count = max(int(round(share * score.shape[1])), 1)
            threshold = score.topk(count, dim=1).values[:, -1:]
            return (score >= threshold).view(x.shape[0], 1, *x.shape[-2:])

        branch.forward = forward
    return net


def forms(net):
    """``{'sparse', 'dense', 'open'}``: the trained network in its two inference forms, and with every channel dense."""
    dense, opened = copy.deepcopy(net), copy.deepcopy(net)
    dense.inference = 'dense'
    for module in opened.body:
        module.body.channel_mask.sparse_channels.zero_()
        module.body.channel_mask._sync_static_channels()
    return {'sparse': net, 'dense': dense, 'open': opened}


@torch.no_grad()
def profile(net, x):
    """Per operator kind, the self CPU time (ms) of one forward of ``net``; and the five costliest operators."""
    net(x)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        net(x)
    events = [(e.key, e.self_cpu_time_total / 1000) for e in prof.key_averages()]
    kinds = defaultdict(float)
    for name, ms in events:
        kinds[KINDS.get(name, 'other')] += ms
    top = sorted(events, key=lambda e: -e[1])[:5]
    return {'by_kind_ms': dict(sorted(kinds.items(), key=lambda k: -k[1])), 'top_ms': dict(top)}


@torch.no_grad()
def largest_difference(nets, images):
    """The largest |sparse - dense| over ``images`` (inputs)."""
    return max((nets['sparse'](x) - nets['dense'](x)).abs().max().item() for x in images)


def kept_share(nets, x, share, args):
    """Sparse against dense with every spatial mask keeping ``share`` of the positions (the learned ranking)."""
    forced = {k: keep_top(copy.deepcopy(nets[k]), share) for k in ('sparse', 'dense')}
    counted = mask_cost(forced['sparse'], x)
    seconds, _ = interleaved_latency({k: partial(net, x) for k, net in forced.items()}, 'cpu', args.warmup,
                                     args.repeats)
    flops_saved = 1 - counted['sparse']['flops'] / counted['dense']['flops']
    time_saved = 1 - seconds['sparse'] / seconds['dense']
    print(f'keeping {share:.0%} of the positions: FLOPs saved {flops_saved:.1%}, time saved {time_saved:.1%}',
          flush=True)
    return {'spatial_keep': share, 'flops_saved': flops_saved, 'time_saved': time_saved, 'seconds': seconds,
            'largest_difference': largest_difference(forced, [x]),
            'profile': profile(forced['sparse'], x)['by_kind_ms'], 'channel_sparsity': counted['channel_sparsity']}


def measure(args):
    opt = load_option_file(args.opt)
    network = check_network_options(args.opt, opt)
    checkpoint = args.checkpoint or (opt.get('path') or {}).get('pretrain_network_g') or latest_checkpoint(opt['name'])
    check_output_file(args.json, args.overwrite, inputs=(checkpoint, args.opt))
    torch.set_num_threads(args.threads)
    nets = forms(frozen_model(network, checkpoint, args.param_key))
    scale = opt['scale']
    lq = [read_color_image(p) for _, _, p in paired_images(*set_folders(args.data, args.set, scale))]
    x = network_input(mosaic(lq, args.frame or (720 // scale, 1280 // scale)))
    counted = mask_cost(nets['sparse'], x)
    flops = {'sparse': counted['sparse']['flops'], 'dense': counted['dense']['flops'],
             'open': count_flops(nets['open'], x)}
    print(f"FLOPs sparse / dense {flops['sparse'] / flops['dense']:.3f} at spatial sparsity "
          f"{counted['spatial_sparsity']:.3f}, channel sparsity {counted['channel_sparsity']:.3f}", flush=True)
    differences = {'timed frame': largest_difference(nets, [x])}
    for name in args.sets:
        images = [network_input(read_color_image(p)) for _, _, p in paired_images(*set_folders(args.data, name, scale))]
        differences[name] = largest_difference(nets, images)
    print(f'largest |sparse - dense|: {differences}', flush=True)
    seconds, method = interleaved_latency({k: partial(net, x) for k, net in nets.items()}, 'cpu', args.warmup,
                                          args.repeats)
    flops_saved, time_saved = 1 - flops['sparse'] / flops['dense'], 1 - seconds['sparse'] / seconds['dense']
    turned = time_saved / flops_saved if flops_saved > 0 else None
    print(f"time sparse / dense {seconds['sparse'] / seconds['dense']:.3f} (dense / open "
          f"{seconds['dense'] / seconds['open']:.3f}): {turned:.2f} of the FLOPs saving became time saved "
          f'(target {TARGET})', flush=True)
    at_keep = [kept_share(nets, x, share, args) for share in args.keep]
    files = [checkpoint, args.opt]
    record = {
        'format': FORMAT, 'model': {'option_file': portable_path(args.opt), 'checkpoint': portable_path(checkpoint),
                                    'network_g': network, 'sha256': {portable_path(f): sha256([f]) for f in files}},
        'input': {'set': args.set, 'size': list(x.shape), 'scale': scale},
        'sparsity': {k: counted[k] for k in ('spatial_sparsity', 'channel_sparsity')},
        'flops': flops, 'seconds': seconds, 'method': method, 'warmup': args.warmup, 'repeats': args.repeats,
        'threads': args.threads, 'flops_saved': flops_saved, 'time_saved': time_saved,
        'saving_turned_into_time': turned, 'target': TARGET, 'target_met': turned is not None and turned >= TARGET,
        'largest_difference': differences, 'profile': {k: profile(nets[k], x) for k in ('sparse', 'dense')},
        'at_spatial_keep': at_keep,
        'device': device_name('cpu'), 'environment': environment(),
        'date': datetime.now(timezone.utc).isoformat(timespec='seconds')}
    return write_json(args.json, record)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', default=osp.join('options', 'demo', 'smsr_x2_demo.yml'),
                        help='the SMSR option file (default: %(default)s)')
    parser.add_argument('--checkpoint', help="default: the option file's pretrain_network_g, else its run's latest")
    parser.add_argument('--param_key', help="default: 'params_ema' when present, else 'params'")
    parser.add_argument('--data', default=osp.join('datasets', 'benchmark'), help='prepared test sets')
    parser.add_argument('--set', default='Set14', help='the test set tiled into the timed frame (default: %(default)s)')
    parser.add_argument('--frame', nargs=2, type=positive_int, metavar=('H', 'W'),
                        help='the LR size of the timed frame (default: the one whose output is 1280 x 720)')
    parser.add_argument('--sets', nargs='*', default=['Set5', 'Set14'],
                        help='test sets whose images sparse and dense outputs are compared on (default: %(default)s)')
    parser.add_argument('--keep', nargs='*', type=float, default=[0.1, 0.3, 0.5],
                        help='also time both forms with every spatial mask keeping these shares of the positions '
                        'its learned scores rank highest (default: %(default)s)')
    parser.add_argument('--threads', type=positive_int, default=1)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeats', type=positive_int, default=9)
    parser.add_argument('--json', default=osp.join('benchmarks', 'results', 'smsr', 'sparse_speed.json'))
    parser.add_argument('--overwrite', action='store_true')
    args = parser.parse_args()
    with exit_on_input_error(parser):
        print(f'wrote {measure(args)}')


if __name__ == '__main__':
    main()
