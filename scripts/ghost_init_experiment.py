"""Compare GhostEDSR starts: clustering init, first-filters init, random init; before and after fine-tuning.

For a plain teacher option file and GhostEDSR option files (each with a ``ghost_init``
section, or none for random init), evaluates on benchmark sets (PSNR/SSIM, Y channel,
border = scale): bicubic, the teacher, each Ghost model right after its initialization
(no training), and each Ghost model after fine-tuning (``experiments/<name>/models/
net_g_latest.pth``, EMA weights). Prints a Markdown table; ``--json`` also writes the figures.

Example (after training the four option files of options/demo with ``basicsr train``):
python scripts/ghost_init_experiment.py --teacher options/demo/edsr_baseline_x2_demo.yml \\
    --ghost options/demo/ghost_edsr_baseline_x2_{cluster,order,scratch}_demo.yml
"""
import argparse
import glob
import json
import os.path as osp
from functools import partial

import torch

from ghostsr_plugin.atomic import atomic_path
from ghostsr_plugin.data_prep import matlab_bicubic
from ghostsr_plugin.errors import InputError, exit_on_input_error
from ghostsr_plugin.evaluate import evaluate, latest_checkpoint, load_model, network_upscale
from ghostsr_plugin.init import ghost_init_from_section
from ghostsr_plugin.option_check import load_option_file
from ghostsr_plugin.results import set_folders


def trained_iterations(opt):
    """How far the run went: its latest training state (``--force_yml`` may have changed the budget)."""
    folder = osp.join('experiments', opt['name'], 'training_states')
    states = [osp.basename(s).split('.')[0] for s in glob.glob(osp.join(folder, '*.state'))]
    iterations = [int(s) for s in states if s.isdigit()]
    if not iterations:
        raise InputError(f"no training state (<iteration>.state) in {folder}: train '{opt['name']}' first "
                         '(basicsr train -opt ...)')
    return max(iterations)


def initialized(opt, seed=0):
    """``network_g`` as training starts it: ghost_init applied, or BasicSR's random init."""
    from basicsr.archs import build_network  # after ghostsr_plugin's imports (its torchvision shim)

    torch.manual_seed(seed)
    net = build_network(opt['network_g'])
    if 'ghost_init' in opt:
        ghost_init_from_section(net, opt['ghost_init'], opt)
    return net.eval()


def start_name(opt):
    return f"{opt['ghost_init'].get('method', 'cluster')} init" if 'ghost_init' in opt else 'random init'


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--teacher', required=True, help='option file of the plain teacher')
    parser.add_argument('--ghost', nargs='+', required=True, help='option files of the Ghost models')
    parser.add_argument('--sets', nargs='+', default=['Set5', 'Set14'], help='under --benchmark (default: %(default)s)')
    parser.add_argument('--benchmark', default='datasets/benchmark', help='`ghostsr prepare-benchmarks` output')
    parser.add_argument('--json', help='also write the figures here')
    args = parser.parse_args()
    with exit_on_input_error(parser):
        experiment(args)


def experiment(args):
    teacher = load_option_file(args.teacher)
    scale = teacher['scale']
    methods = {'bicubic': partial(matlab_bicubic, scale=scale),
               f"plain {teacher['network_g']['type']} (teacher)": partial(
                   network_upscale, load_model(teacher['network_g'], latest_checkpoint(teacher['name'])))}
    for path in args.ghost:
        opt = load_option_file(path)
        methods[f'{start_name(opt)}, no training'] = partial(network_upscale, initialized(opt))
    for path in args.ghost:
        opt = load_option_file(path)
        net = load_model(opt['network_g'], latest_checkpoint(opt['name']))
        methods[f'{start_name(opt)}, fine-tuned {trained_iterations(opt)} it'] = partial(network_upscale, net)

    results = {}
    for method, upscale in methods.items():
        for name in args.sets:
            result = evaluate(upscale, *set_folders(args.benchmark, name, scale), scale, desc=f'{method} on {name}')
            results.setdefault(method, {})[name] = {'psnr': result['psnr'], 'ssim': result['ssim']}

    print(f"\n| x{scale}, PSNR (dB) / SSIM | " + ' | '.join(args.sets) + ' |')
    print('| --- |' + ' ---: |' * len(args.sets))
    for method, by_set in results.items():
        print(f'| {method} | ' + ' | '.join(f"{r['psnr']:.2f} / {r['ssim']:.4f}" for r in by_set.values()) + ' |')
    if args.json:
        with atomic_path(args.json) as temporary, open(temporary, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
