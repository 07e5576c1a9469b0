"""The trained model a deploy command runs: a network and its weights, frozen.

From a BasicSR option file (``network_g``; weights from --checkpoint, else
``path.pretrain_network_g``, else the run's ``net_g_latest.pth``) or from --arch and
--arch_args with --checkpoint. A deploy checkpoint (``ghostsr freeze``) loads into the
frozen form; a training checkpoint is frozen after loading, with a notice.
"""
import os.path as osp
from collections import Counter

import yaml

from ghostsr_plugin.archs import freeze, gumbel_modules
from ghostsr_plugin.errors import InputError

# the example the help gives (a test builds it as written)
EXAMPLE_ARCH, EXAMPLE_ARCH_ARGS = 'GhostEDSR', 'num_in_ch=3 num_out_ch=3 num_feat=64 num_block=16 upscale=2'


def add_arguments(parser):
    parser.add_argument('-opt', help='the BasicSR option file of the model (its network_g)')
    add_network_arguments(parser)


def add_network_arguments(parser):
    """--arch, --arch_args, --checkpoint and --param_key: a network without an option file, and its weights."""
    parser.add_argument('--arch', help=f'the network by arch type instead of an option file, e.g. {EXAMPLE_ARCH}')
    parser.add_argument('--arch_args', nargs='+', default=[], metavar='KEY=VALUE',
                        help=f'arguments of --arch, values in YAML, e.g. {EXAMPLE_ARCH_ARGS}')
    parser.add_argument('--checkpoint', help="the weights (default: the option file's path.pretrain_network_g, "
                        'else experiments/<name>/models/net_g_latest.pth)')
    parser.add_argument('--param_key', help="the weights' key in the checkpoint (default: the option file's "
                        "path.param_key_g, else 'params_ema' when present, else 'params')")


def parse_arch_args(pairs):
    """``KEY=VALUE`` strings as a dict, each value read as YAML."""
    args = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not (sep and key):
            raise InputError(f"--arch_args: expected KEY=VALUE, found '{pair}'")
        args[key] = yaml.safe_load(value)
    return args


def network_and_checkpoint(args):
    """``(network_g, checkpoint, param_key)`` named by the arguments of :func:`add_arguments`."""
    from ghostsr_plugin.evaluate import latest_checkpoint
    from ghostsr_plugin.option_check import check_network_options, load_option_file

    if bool(args.opt) == bool(args.arch):
        raise InputError('name the model by -opt FILE or by --arch (with --arch_args and --checkpoint), not '
                         f"{'both' if args.opt else 'neither'}")
    if args.opt:
        opt = load_option_file(args.opt)
        network = check_network_options(args.opt, opt)
        checkpoint = args.checkpoint or (opt.get('path') or {}).get('pretrain_network_g') or latest_checkpoint(
            opt.get('name', ''))
        return network, checkpoint, args.param_key or (opt.get('path') or {}).get('param_key_g')
    network = {'type': args.arch, **parse_arch_args(args.arch_args)}
    check_network_options('--arch/--arch_args', {'network_g': network})
    if not args.checkpoint:
        raise InputError('--arch needs --checkpoint')
    return network, args.checkpoint, args.param_key


def load_frozen(args):
    """``(net, network_g, checkpoint)``: the model of the arguments, in eval mode, every Ghost layer frozen."""
    network, checkpoint, param_key = network_and_checkpoint(args)
    return frozen_model(network, checkpoint, param_key), network, checkpoint


def frozen_model(network, checkpoint, param_key=None):
    """The network ``network`` with the weights of ``checkpoint``, in eval mode, every learned choice frozen."""
    from ghostsr_plugin.evaluate import load_model

    net = load_model(network, osp.expanduser(checkpoint), param_key)
    learned = Counter(m.PLURAL for m in gumbel_modules(net) if not m.frozen)
    if learned:
        kinds = ', '.join(f'{count} {kind}' for kind, count in learned.items())
        print(f'{checkpoint} is a training checkpoint: freezing its {kinds} at their argmax (as `ghostsr freeze` does)')
    return freeze(net)
