"""Initialize a Ghost model from a pretrained plain model, offline (the option file's ghost_init).

Builds the option file's ``network_g`` (a Ghost arch), initializes it as its ``ghost_init``
section says (see ghostsr_plugin.init.from_options), and writes a BasicSR checkpoint with
``params`` and ``params_ema`` (the same weights), which stock BasicSR flows can load as
``path.pretrain_network_g``. Nothing is written if the checkpoint does not fit. The network
is built under the file's ``manual_seed`` (or ``--seed``), seeded as ``basicsr train`` seeds
rank 0, so that what the init leaves random (``orientation: random``'s logits) is the draw
training with that seed starts from.

Example: ghostsr cluster-init -opt options/train/GhostEDSR/train_GhostEDSR_Mx2_init.yml --out ghost_init.pth
"""
import torch
from basicsr.archs import build_network
from basicsr.utils import set_random_seed

from ghostsr_plugin.atomic import atomic_path
from ghostsr_plugin.init.from_options import describe, ghost_init_from_section
from ghostsr_plugin.option_check import check_ghost_init_file
from ghostsr_plugin.outputs import check_output_file


def add_arguments(parser):
    parser.add_argument('-opt', required=True, help='option file with network_g (a Ghost arch) and ghost_init')
    parser.add_argument('--out', required=True, help='checkpoint to write (BasicSR format)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out')
    parser.add_argument('--seed', type=int, help="random seed of the network's construction (default: the file's "
                        'manual_seed, as in basicsr train)')


def run(args):
    opt = check_ghost_init_file(args.opt)
    check_output_file(args.out, args.overwrite, inputs=(args.opt, opt['ghost_init'].get('checkpoint')))
    seed = opt.get('manual_seed') if args.seed is None else args.seed
    if seed is not None:
        set_random_seed(seed)
    net = build_network(opt['network_g'])
    print(f"{describe(opt['ghost_init'])}:")
    for line in ghost_init_from_section(net, opt['ghost_init'], opt, progress=True):
        print(f'  {line}')
    state = net.state_dict()
    with atomic_path(args.out) as temporary:
        torch.save({'params': state, 'params_ema': state}, temporary)
    print(f"Wrote {args.out} ({opt['network_g']['type']}, keys params and params_ema)")
