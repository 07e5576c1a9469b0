"""Freeze a trained model: every learned orientation becomes a fixed integer shift, every SMSR channel mask hard.

The deploy checkpoint has the offsets (SMSR: the sparse channels) as buffers and no logits; it
loads into the same arch built with ``deploy: true`` and gives outputs identical to the
eval-mode model. Both ``params`` and ``params_ema`` are frozen when present.
"""
import os.path as osp

import torch

from ghostsr_plugin.archs import freeze, named_shift_layers
from ghostsr_plugin.archs.smsr_arch import ChannelMask
from ghostsr_plugin.atomic import atomic_path
from ghostsr_plugin.checkpoint import load_checkpoint
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.evaluate import latest_checkpoint, load_model
from ghostsr_plugin.monitor import format_offsets
from ghostsr_plugin.option_check import check_network_options, load_option_file
from ghostsr_plugin.outputs import check_output_file


def add_arguments(parser):
    parser.add_argument('-opt', required=True, help='the option file the model was trained with')
    parser.add_argument('--checkpoint', help='default: experiments/<name>/models/net_g_latest.pth')
    parser.add_argument('--out', required=True, help='where to write the deploy checkpoint')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out file')


def run(args):
    opt = load_option_file(args.opt)
    check_network_options(args.opt, opt)
    checkpoint = args.checkpoint or latest_checkpoint(opt['name'])
    check_output_file(args.out, args.overwrite, inputs=(checkpoint, args.opt))
    state = load_checkpoint(checkpoint)
    keys = [k for k in ('params', 'params_ema') if k in state]
    if not keys:
        found = sorted(map(str, state))
        found = found[:5] + [f'... ({len(found)} keys)'] if len(found) > 5 else found
        raise InputError(f"{checkpoint}: expected a BasicSR checkpoint with 'params' and/or 'params_ema', "
                         f'found keys {found}')
    frozen = {key: freeze(load_model(opt['network_g'], checkpoint, key, loaded=state)) for key in keys}
    with atomic_path(args.out) as temporary:
        torch.save({key: net.state_dict() for key, net in frozen.items()}, temporary)

    for name, layer in named_shift_layers(frozen[keys[-1]]):
        print(f'{name}: (dy, dx) = {format_offsets(layer.offset().tolist())}')
    for name, mask in frozen[keys[-1]].named_modules():
        if isinstance(mask, ChannelMask):
            counts = ' '.join(map(str, mask.sparse_channels.sum(1).tolist()))
            print(f'{name}: sparse channels per layer {counts} (of {mask.sparse_channels.shape[1]})')
    print(f'{checkpoint} ({osp.getsize(checkpoint):,d} bytes) -> {args.out} ({osp.getsize(args.out):,d} bytes), '
          f'keys {keys}. Load it with network_g {{type: {opt["network_g"]["type"]}, ..., deploy: true}}.')
