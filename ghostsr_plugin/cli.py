"""Console commands.

``basicsr train|test -opt FILE [BasicSR flags]`` loads every installed BasicSR plugin
(entry-point group ``basicsr.plugins``; this package declares itself there), checks the
option file, and hands over to BasicSR's own ``train_pipeline`` / ``test_pipeline`` with
every flag passed through; its training loader draws each sample's augmentation from its
own seed (``ghostsr_plugin.sample_seeds``), so ``--auto_resume`` is exact, and
``--launcher pytorch`` also runs without GPUs (``ghostsr_plugin.cpu_distributed``), and
``--force_yml manual_seed=S`` seeds the networks too (``ghostsr_plugin.forced_seed``). Runs are
rooted at the current directory (``experiments/``, ``results/``, ``tb_logger/``), as with
BasicSR's own scripts.

``ghostsr <command>`` runs the plugin's own tools. Each command is a module listed in
``GHOSTSR_COMMANDS`` with ``add_arguments(parser)`` and ``run(args)``; its docstring's
first line is the command's help.
"""
import argparse
import contextlib
import importlib
import os
import sys
import warnings
from importlib.metadata import entry_points

from ghostsr_plugin.errors import InputError, interrupt_ends_command

PLUGIN_GROUP = 'basicsr.plugins'
GHOSTSR_COMMANDS = {name: f"ghostsr_plugin.commands.{name.replace('-', '_')}" for name in (
    'prepare-demo', 'prepare-div2k', 'prepare-benchmarks', 'cluster-init', 'freeze', 'export', 'upscale', 'benchmark',
    'leaderboard', 'doctor')}


def load_plugins():
    """Import this package and every module declared under ``basicsr.plugins``."""
    import ghostsr_plugin  # noqa: F401  (registers the archs and models; applies the compat fixes)

    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            entry.load()
        except Exception as err:  # a broken third-party plugin must not hide which one it is
            warnings.warn(f"BasicSR plugin '{entry.name}' ({entry.value}) failed to load: {err!r}", stacklevel=2)


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistyped argument said in one line (and where the usage is), not a usage dump."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message} (usage: {self.prog} --help)\n')


def _fail(message):
    print(f'error: {message}', file=sys.stderr)
    raise SystemExit(2)


@contextlib.contextmanager
def _as_command():
    """A user's mistake (``InputError``) is one line and status 2; Ctrl-C is 'interrupted' and status 130.

    (Outputs are whole or absent either way, see ``ghostsr_plugin.atomic``.)
    """
    try:
        with interrupt_ends_command():
            yield
    except InputError as err:
        _fail(err)


def basicsr_main(argv=None):
    """Entry point of the ``basicsr`` command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _Parser(
        prog='basicsr', description='Run BasicSR training or testing with every installed plugin loaded.',
        epilog='All other flags (--launcher, --auto_resume, --debug, --force_yml, ...) go to BasicSR unchanged.')
    parser.add_argument('command', choices=['train', 'test'])
    parser.add_argument('-opt', required=True, help='path to the option YAML file')
    parser.add_argument('--force_yml', nargs='+', help='option overrides, e.g. train:ema_decay=0.999 (BasicSR\'s)')
    args, _ = parser.parse_known_args(argv)
    with _as_command():
        _run_basicsr(args, argv)


def _check_kernel_modes():
    """GHOSTSR_CUDA and GHOSTSR_CPU_KERNELS, checked before any work."""
    from ghostsr_plugin.ops import cpu_kernels, extension

    extension.check_mode()
    cpu_kernels.check_mode()


def _run_basicsr(args, argv):
    load_plugins()
    _check_kernel_modes()
    from ghostsr_plugin.option_check import check_options

    check_options(args.opt, is_train=args.command == 'train', force_yml=args.force_yml)

    from basicsr.test import test_pipeline
    from basicsr.train import train_pipeline

    from ghostsr_plugin import cpu_distributed, forced_seed, run_folders, sample_seeds

    forced_seed.install()
    sample_seeds.install()
    cpu_distributed.install()

    pipeline = train_pipeline if args.command == 'train' else test_pipeline
    passed_on = list(argv)
    passed_on.remove(args.command)
    sys.argv = [f'basicsr {args.command}', *passed_on]
    with run_folders.removed_unless_saved(args.opt):
        pipeline(os.getcwd())  # (an InputError here: a file found only now, the --auto_resume state, say)


def ghostsr_main(argv=None):
    """Entry point of the ``ghostsr`` command."""
    with _as_command():
        load_plugins()
        _check_kernel_modes()
        parser = _Parser(prog='ghostsr', description='GhostSR tools for BasicSR models.')
        commands = parser.add_subparsers(dest='command', required=True, metavar='command', parser_class=_Parser)
        for name, module_name in GHOSTSR_COMMANDS.items():
            module = importlib.import_module(module_name)
            sub = commands.add_parser(name, help=module.__doc__.splitlines()[0], description=module.__doc__,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
        args = parser.parse_args(argv)
        args.run(args)
