"""The error type for bad user input (files, folders, options, checkpoints), and how a command ends on it.

Commands print its message and exit with status 2 instead of a traceback, so every
message must name the offending file or key and say what was expected and what was found.
Ctrl-C ends a command with ``interrupted`` and status 130, from its first import on.
(A leaf of the standard library only: the package's ``__init__`` uses it before importing torch.)
"""
import contextlib
import difflib
import os.path as osp
import sys

COMMANDS = ('ghostsr', 'basicsr')  # the console commands (setup.py's console_scripts)
INTERRUPTED = 130


class InputError(ValueError):
    """Bad input from the user; the message names the problem, expected versus found."""


class ArgumentError(InputError):
    """An arch argument that cannot be built; ``option`` names the argument at fault (the option check reports
    it as ``network_g.<option>``)."""

    def __init__(self, message, option=None):
        super().__init__(message)
        self.option = option


def did_you_mean(name, choices):
    """`` (did you mean 'x'?)`` for a mistyped ``name`` among ``choices``, or ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ''


@contextlib.contextmanager
def exit_on_input_error(parser):
    """Inside it, an ``InputError`` ends the script argparse's way: its message and status 2."""
    try:
        yield
    except InputError as err:
        parser.exit(2, f'error: {err}\n')


def _started_as_command():
    """Whether this process is one of the plugin's console commands (not a script or a shell importing it)."""
    argv = getattr(sys, 'argv', None) or ['']
    return osp.splitext(osp.basename(argv[0]))[0].removesuffix('-script') in COMMANDS


@contextlib.contextmanager
def interrupt_ends_command(always=True):
    """Ctrl-C inside it prints ``interrupted`` and exits with status 130 (outputs are whole or absent either way,
    see ``ghostsr_plugin.atomic``); with ``always`` False only in a console command, and elsewhere it goes on."""
    try:
        yield
    except KeyboardInterrupt:
        if not (always or _started_as_command()):
            raise
        print('interrupted', file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
