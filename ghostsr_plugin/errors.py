"""The error type for bad user input (files, folders, options, checkpoints).

Commands print its message and exit with status 2 instead of a traceback, so every
message must name the offending file or key and say what was expected and what was found.
"""
import contextlib


class InputError(ValueError):
    """Bad input from the user; the message names the problem, expected versus found."""


class ArgumentError(InputError):
    """An arch argument that cannot be built; ``option`` names the argument at fault (the option check reports
    it as ``network_g.<option>``)."""

    def __init__(self, message, option=None):
        super().__init__(message)
        self.option = option


@contextlib.contextmanager
def exit_on_input_error(parser):
    """Inside it, an ``InputError`` ends the script argparse's way: its message and status 2."""
    try:
        yield
    except InputError as err:
        parser.exit(2, f'error: {err}\n')
