"""Benchmark models on prepared test sets: PSNR/SSIM, params, FLOPs, energy, latency; one JSON per model and scale.

Models: ``bicubic`` (MATLAB's bicubic upscaling, the literature's baseline), BasicSR option
files (the network from ``network_g``; weights from ``path.pretrain_network_g``, or from
--checkpoint when one network model is given), or one network given by --arch,
--arch_args and --checkpoint. A network model runs at its own scale (the option file's
``scale``, else its ``upscale`` argument); bicubic runs at every scale asked for.

Test sets are read from --data in BasicSR's layout, as `ghostsr prepare-benchmarks`
writes it: <data>/<set>/GTmod{s} (HR) and <data>/<set>/LRbicx{s} (LR).
PSNR and SSIM are BasicSR's calculate_psnr/calculate_ssim on the Y channel with `scale`
pixels cropped at each border. FLOPs (torch.utils.flop_counter; a shift counts zero),
multiplications, additions and energy (ghostsr_plugin.cost: 45 nm float32, 3.7 pJ a
multiplication, 0.9 pJ an addition), and latency (median after a warm-up; CUDA events on a
GPU, wall clock on a CPU) are measured on one forward pass producing 1280 x 720, whole image;
the networks of one run are timed in turn, round after round, so their ratios are fair on a
noisy machine. --engine runs the networks (frozen) in eager PyTorch, torch.compile or
onnxruntime, for latency and outputs; on a CUDA device in float16 unless --fp32 (each JSON
records the precision and layout).
--tile only changes how the test images are processed. Each JSON records the versions, device, option and checkpoint
SHA-256, data SHA-256 and every option of the run; for the ``net_g_latest.pth`` of a run trained with
FastSRModel or GhostSRModel, also how it was trained (its ``training.json``: iterations, wall time, it/s, device).

Example:
  ghostsr benchmark bicubic options/demo/ghost_edsr_x2_demo.yml --sets Set5 Set14 \\
      --checkpoint experiments/demo_GhostEDSR_x2_f32b4/models/net_g_latest.pth --name 'GhostEDSR demo'
"""
import copy
import os
import os.path as osp
import platform
import subprocess
import sys
from datetime import datetime, timezone
from functools import partial

import torch
from basicsr.archs import build_network

from ghostsr_plugin import engines, trained_model
from ghostsr_plugin.archs.conversion import upscale_factor
from ghostsr_plugin.atomic import write_json
from ghostsr_plugin.commands import non_negative_int, positive_int, torch_device
from ghostsr_plugin.cost import (
    OUTPUT_SIZE,
    cost_input,
    device_name,
    energy_pj,
    input_dependent,
    interleaved_latency,
    mask_cost,
    model_cost,
)
from ghostsr_plugin.data_prep import matlab_bicubic, mosaic, read_color_image
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.evaluate import (
    evaluate,
    latest_checkpoint,
    load_model_and_key,
    network_input,
    network_upscale,
    paired_images,
)
from ghostsr_plugin.models.fast_sr_model import training_summary
from ghostsr_plugin.option_check import check_network_options, load_option_file
from ghostsr_plugin.outputs import check_files_folder, check_output_files
from ghostsr_plugin.results import BICUBIC, RESULT_FORMAT, portable_path, result_path, set_folders, set_order, sha256
from ghostsr_plugin.tiling import overlap_warning

MASK_COUNTS = ('flops', 'mults', 'adds', 'energy_pj')  # counts that an input-dependent network's masks decide


def add_arguments(parser):
    parser.add_argument('models', nargs='*', metavar='MODEL', help=f"'{BICUBIC}' or a BasicSR option file")
    trained_model.add_network_arguments(parser)
    parser.add_argument('--name', help="the one network model's row name (default: the option file's name, "
                        'or the arch)')
    parser.add_argument('--baseline', help='the row name of the plain model that the other (Ghost) models are '
                        "compared with; the leaderboard links them and gives their latency ratio")
    parser.add_argument('--data', default='datasets/benchmark', help='prepared test sets (default: %(default)s)')
    parser.add_argument('--sets', nargs='+', help='test sets under --data (default: all of them)')
    parser.add_argument('--scales', nargs='+', type=positive_int,
                        help="scales to run (default: the network models' scales, or 2 3 4 for bicubic alone)")
    parser.add_argument('--out', default='results/benchmark', help='folder for the result JSONs (default: %(default)s)')
    parser.add_argument('--device', type=torch_device, default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='torch device (default: %(default)s)')
    parser.add_argument('--engine', choices=engines.ENGINES, default='eager',
                        help='where the networks run, for latency and outputs alike; every engine runs the frozen '
                        'model (default: %(default)s)')
    engines.add_arguments(parser)
    parser.add_argument('--threads', type=positive_int, help="CPU threads of the engine (default: torch's)")
    parser.add_argument('--latency_only', action='store_true',
                        help='measure params, FLOPs, energy and latency only, on no test set (any weights of the '
                        'right shape)')
    parser.add_argument('--latency_size', nargs=2, type=positive_int, metavar=('H', 'W'),
                        help='LR size of the timed input (default: the one whose output is 1280 x 720)')
    parser.add_argument('--latency_input', default='random', metavar='random|SET',
                        help="the timed input: 'random' (default), or a test set under --data whose LR images are "
                        'tiled into it (for networks whose work depends on the image: SMSR)')
    parser.add_argument('--tile', type=positive_int, help='process test images in tiles of this many LR pixels')
    parser.add_argument('--tile_overlap', type=non_negative_int,
                        help='LR pixels of context around each tile; at least the receptive-field radius (a '
                        'warning names it) for results equal to whole-image inference within float rounding')
    parser.add_argument('--warmup', type=non_negative_int, default=3,
                        help='untimed forward passes (default: %(default)s)')
    parser.add_argument('--repeats', type=positive_int, default=10, help='timed forward passes (default: %(default)s)')
    parser.add_argument('--skip_corrupt', action='store_true',
                        help='report and skip unreadable images and images too small to measure')
    parser.add_argument('--overwrite', action='store_true', help='replace existing result files')


def network_models(args):
    """The network models named on the command line: name, network options, scale, checkpoint."""
    models = []
    for path in (m for m in args.models if m != BICUBIC):
        opt = load_option_file(path)
        network = check_network_options(path, opt)
        path_opt = opt.get('path') or {}
        models.append({'name': opt.get('name') or network['type'], 'run': opt.get('name'), 'option_file': path,
                       'network_g': network, 'scale': opt.get('scale', upscale_factor(network)),
                       'checkpoint': path_opt.get('pretrain_network_g'),
                       'param_key': path_opt.get('param_key_g', args.param_key)})
    if args.arch:
        network = {'type': args.arch, **trained_model.parse_arch_args(args.arch_args)}
        check_network_options('--arch/--arch_args', {'network_g': network})
        models.append({'name': args.arch, 'option_file': None, 'network_g': network,
                       'scale': upscale_factor(network), 'checkpoint': None, 'param_key': args.param_key})
    elif args.arch_args:
        raise InputError('--arch_args needs --arch')
    if len(models) > 1 and (args.checkpoint or args.name):
        raise InputError(f'--checkpoint and --name describe one network model; found {len(models)}: '
                         f'{", ".join(m["name"] for m in models)} (set path.pretrain_network_g in each option file)')
    for model in models:
        model.update({k: v for k, v in (('checkpoint', args.checkpoint), ('name', args.name)) if v})
        model['baseline'] = args.baseline if args.baseline != model['name'] else None
        source = model['option_file'] or '--arch'
        run = model.get('run')  # (the option file's name: its experiment folder, whatever --name shows)
        if not model['checkpoint'] and run and osp.isfile(latest_checkpoint(run)):
            model['checkpoint'] = latest_checkpoint(run)
        if not model['checkpoint'] and not args.latency_only:
            raise InputError(f'{source}: no checkpoint; set path.pretrain_network_g or pass --checkpoint')
        if model['checkpoint']:
            model['checkpoint'] = osp.expanduser(model['checkpoint'])
        if model['scale'] is None and args.scales and len(args.scales) == 1:
            model['scale'] = args.scales[0]
        if not isinstance(model['scale'], int):
            raise InputError(f"{source}: cannot tell the model's scale (expected an integer 'scale' or "
                             f"network_g's upscale or scale, found {model['scale']!r}); pass a single --scales")
    return models


def _scales(args, models):
    for model in models:
        if args.scales and model['scale'] not in args.scales:
            raise InputError(f"{model['name']} is a x{model['scale']} model; --scales asks for "
                             f"{' '.join(map(str, args.scales))}")
    return args.scales or sorted({m['scale'] for m in models}) or [2, 3, 4]


def _sets(args):
    if not osp.isdir(args.data):
        raise InputError(f'test-set folder {args.data} does not exist (make it with `ghostsr prepare-benchmarks`)')
    sets = args.sets or [d for d in os.listdir(args.data)  # hidden: a set still being prepared
                         if osp.isdir(osp.join(args.data, d)) and not d.startswith('.')]
    if not sets:
        raise InputError(f'no test sets in {args.data}: expected a folder per set, <set>/GTmod<s> and '
                         '<set>/LRbicx<s> (as `ghostsr prepare-benchmarks` writes them), found none')
    return set_order(sets)


def _git_commit():
    try:
        out = subprocess.run(['git', 'describe', '--always', '--dirty', '--abbrev=40'], capture_output=True,
                             text=True, cwd=osp.dirname(osp.abspath(__file__)), timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment():
    """Versions of everything that can change a result."""
    import basicsr
    import cv2
    import numpy
    import torchvision

    import ghostsr_plugin

    return {
        'ghostsr_plugin': ghostsr_plugin.__version__, 'ghostsr_plugin_commit': _git_commit(),
        'basicsr': basicsr.__version__, 'torch': torch.__version__, 'torchvision': torchvision.__version__,
        'numpy': numpy.__version__, 'opencv': cv2.__version__, 'python': platform.python_version(),
        'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version(), 'platform': platform.platform(),
    }


def _load_network(model, scale, args, device):
    """The network on ``args.engine``: its run function, description, cost (latency measured later) and the eager
    network.

    Without a checkpoint (``--latency_only``) the network keeps its seeded random initialization.
    A network whose work depends on its input is counted on the random input here; the test sets'
    images replace that count (``_image_cost``).
    """
    if model['checkpoint']:
        net, param_key = load_model_and_key(model['network_g'], model['checkpoint'], model['param_key'])
    else:
        torch.manual_seed(0)
        net, param_key = build_network(copy.deepcopy(model['network_g'])).eval(), None
    net = net.to(device)
    x = cost_input(scale, device)
    cost = {**model_cost(net, x), 'cost_input': list(x.shape)}
    if input_dependent(net):
        cost['dense'] = {k: v for k, v in mask_cost(net, x)['dense'].items() if k in MASK_COUNTS}
    run = engines.prepare(net, args.engine, args.threads, device, **engines.settings(args, device))
    if args.tile is not None:
        warning = overlap_warning(net, args.tile_overlap)
        if warning:
            print(warning, file=sys.stderr)
    files = [f for f in (model['checkpoint'], model['option_file']) if f]
    described = {'kind': 'network', 'network_g': model['network_g'], 'option_file': portable_path(model['option_file']),
                 'checkpoint': portable_path(model['checkpoint']), 'param_key': param_key,
                 'sha256': {portable_path(f): sha256([f]) for f in files},
                 'training': training_summary(model['checkpoint']) if model['checkpoint'] else None}
    return run, described, cost, net


def _image_cost(net, image):
    """The shares of its dense counts an input-dependent network's masks leave on one LR image, and their sparsity."""
    parameter = next(net.parameters())
    x = network_input(image, parameter.device).to(parameter.dtype)
    counted = mask_cost(net, x)
    return {**{f'{k}_ratio': counted['sparse'][k] / counted['dense'][k] for k in ('flops', 'mults', 'adds')},
            **{k: counted[k] for k in ('spatial_sparsity', 'channel_sparsity')}}


def _mask_counts(cost, results):
    """An input-dependent network's counts from the test images' masks: their mean share of the dense counts times
    its dense counts at 1280 x 720 (the FLOPs per set too), the energy of those; and their mean sparsity."""
    images = [image for result in results.values() for image in result['images']]
    for result in results.values():
        result['flops'] = result['flops_ratio'] * cost['dense']['flops']
    counts = {k: sum(i[f'{k}_ratio'] for i in images) / len(images) * cost['dense'][k]
              for k in ('flops', 'mults', 'adds')}
    return {**counts, 'energy_pj': energy_pj(counts['mults'], counts['adds']),
            'counts_from': 'the masks of the test images: their mean share of the dense counts, at 1280 x 720',
            'sparsity': {k: sum(i[f'{k}_sparsity'] for i in images) / len(images) for k in ('spatial', 'channel')}}


def _timed_input(args, scale, device):
    """The timed LR input: random, or ``--latency_input``'s LR images at ``scale`` tiled (1, 3, H, W)."""
    size = args.latency_size or [OUTPUT_SIZE[0] // scale, OUTPUT_SIZE[1] // scale]
    if args.latency_input == 'random':
        return torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    images = [read_color_image(lq) for _, _, lq in paired_images(*set_folders(args.data, args.latency_input, scale))]
    return network_input(mosaic(images, size), device)


def _latencies(loaded, args, device):
    """Each network's latency, all timed in turn in each round (fair ratios on a noisy machine); for a network
    whose work depends on its input, also its FLOPs and sparsity on the timed input."""
    inputs = {name: _timed_input(args, scale, device) for name, (_, scale, _, _, _) in loaded.items()}
    calls = {name: partial(run, inputs[name]) for name, (run, _, _, _, _) in loaded.items()}
    print(f"timing {', '.join(calls)}: {args.repeats} interleaved forward passes each on {args.engine}, "
          f'{device_name(device)}')
    seconds, method = interleaved_latency(calls, device, args.warmup, args.repeats)
    threads = args.threads if args.engine == 'onnxruntime' else torch.get_num_threads()
    latencies = {name: {'seconds': seconds[name], 'method': method, 'warmup': args.warmup, 'repeats': args.repeats,
                        'device': device_name(device), 'engine': args.engine, **engines.settings(args, device),
                        'threads': threads, 'input': list(inputs[name].shape), 'input_kind': args.latency_input}
                 for name in calls}
    for name, (_, _, _, _, net) in loaded.items():
        if input_dependent(net):
            counted = mask_cost(net, inputs[name].to(next(net.parameters()).dtype))
            latencies[name].update(flops=counted['sparse']['flops'], flops_dense=counted['dense']['flops'],
                                   **{k: counted[k] for k in ('spatial_sparsity', 'channel_sparsity')})
    return latencies


def _recorded_options(args):
    """Every option of the run as the JSON records it: paths portable, the device by name."""
    options = {k: v for k, v in vars(args).items() if k != 'run'}
    options['models'] = [m if m == BICUBIC else portable_path(m) for m in args.models]
    options.update({k: portable_path(options[k]) for k in ('checkpoint', 'data', 'out')})
    return {**options, 'device': str(args.device)}


def run(args):
    models = network_models(args)
    if not models and BICUBIC not in args.models:
        raise InputError(f"no model given: name '{BICUBIC}', option files, or --arch")
    if args.tile is not None and args.tile_overlap is None:
        raise InputError('--tile needs --tile_overlap (LR pixels of context around each tile)')
    device = args.device
    precision = engines.settings(args, device)['precision']
    scales, sets = _scales(args, models), [] if args.latency_only else _sets(args)
    runs = [(BICUBIC, s) for s in scales if BICUBIC in args.models] + [(m, m['scale']) for m in models]
    pairs = {(name, s): paired_images(*set_folders(args.data, name, s)) for name in sets for s in {s for _, s in runs}}
    paths, writer = {}, {}  # (name, scale) -> its result file; a result file -> the name writing it
    for model, scale in runs:
        name = model if model == BICUBIC else model['name']
        path = result_path(args.out, name, scale, *(('eager',) if model == BICUBIC else (args.engine, precision)))
        if path in writer:
            raise InputError(f"'{writer[path]}' x{scale} and '{name}' x{scale} would both write {path}; "
                             'give them distinct names (--name or the option files\' name)')
        paths[name, scale], writer[path] = path, name
    if args.latency_input != 'random':
        for lq_folder in {set_folders(args.data, args.latency_input, s)[1] for m, s in runs if m != BICUBIC}:
            if not osp.isdir(lq_folder):
                raise InputError(f"--latency_input {args.latency_input}: expected 'random' or a prepared test set; "
                                 f'{lq_folder} does not exist')
    read = [args.data, *(f for name, s in pairs for f in set_folders(args.data, name, s))] if sets else []
    check_files_folder(args.out, input_folders=read)  # (a set's folder may be a link to elsewhere)
    check_output_files(list(writer), args.overwrite)

    loaded = {}
    for model, scale in runs:
        if model != BICUBIC:
            print(f"{model['name']}: loading, counting FLOPs and energy, preparing the {args.engine} engine")
            run_network, described, cost, net = _load_network(model, scale, args, device)
            loaded[model['name']] = (run_network, scale, described, cost, net)
    latencies = _latencies(loaded, args, device)
    options = _recorded_options(args)
    for model, scale in runs:
        if model == BICUBIC:
            name, baseline, upscale = BICUBIC, None, partial(matlab_bicubic, scale=scale)
            described, cost = {'kind': BICUBIC}, {key: None for key in ('params', 'flops', 'mults', 'adds', 'energy_pj',
                                                                        'cost_input', 'latency')}
        else:
            name, baseline = model['name'], model['baseline']
            run_network, _, described, cost, net = loaded[name]
            cost = {**cost, 'latency': latencies[name]}
            upscale = partial(network_upscale, run_network, tile=args.tile, overlap=args.tile_overlap, scale=scale)
        measure = partial(_image_cost, net) if model != BICUBIC and input_dependent(net) else None
        results = {}
        for set_name in sets:
            gt_folder, lq_folder = set_folders(args.data, set_name, scale)
            result = evaluate(upscale, gt_folder, lq_folder, scale, desc=f'{name} {set_name} x{scale}',
                              skip_corrupt=args.skip_corrupt, measure=measure)
            files = [p for _, gt, lq in pairs[set_name, scale] for p in (gt, lq)]
            results[set_name] = {**result, 'gt_folder': portable_path(gt_folder), 'lq_folder': portable_path(lq_folder),
                                 'data_sha256': sha256(files)}
        if measure and results:
            cost.update(_mask_counts(cost, results))
        record = {
            'format': RESULT_FORMAT, 'name': name, 'baseline': baseline, 'scale': scale, 'model': described,
            'sets': results, **cost,
            'metrics': {'psnr': 'basicsr.metrics.calculate_psnr', 'ssim': 'basicsr.metrics.calculate_ssim',
                        'test_y_channel': True, 'crop_border': scale},
            'device': device_name(device) if model != BICUBIC else 'numpy (CPU)',
            'environment': environment(), 'options': options,
            'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        }
        path = paths[name, scale]
        write_json(path, record)  # (--out is made by the first result)
        summary = [f"{s} {r['psnr']:.2f} dB / {r['ssim']:.4f}" for s, r in results.items()]
        if cost['latency']:
            summary.append(f"{cost['latency']['seconds'] * 1e3:.1f} ms on {args.engine}")
        summary = ', '.join(summary)
        print(f'{name} x{scale}: {summary} -> {path}')
