"""One module per `ghostsr` command, each with ``add_arguments(parser)`` and ``run(args)``."""
import argparse


def positive_int(text):
    """An argparse type: an integer of at least 1 (a scale, a size)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive integer, found {text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected a positive integer, found {value}')
    return value
