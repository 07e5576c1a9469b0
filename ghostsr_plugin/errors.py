"""The error type for bad user input (files, folders, options, checkpoints).

Commands print its message and exit with status 2 instead of a traceback, so every
message must name the offending file or key and say what was expected and what was found.
"""


class InputError(ValueError):
    """Bad input from the user; the message names the problem, expected versus found."""
