"""One module per `ghostsr` command, each with ``add_arguments(parser)`` and ``run(args)``.

Here: the argparse types the commands share, so that a mistyped value is a one-line usage error.
"""
import argparse


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer, found {text!r}') from None


def positive_int(text):
    """An argparse type: an integer of at least 1 (a scale, a size, a count of timed runs)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected a positive integer, found {value}')
    return value


def non_negative_int(text):
    """An argparse type: an integer of at least 0 (untimed warm-up runs, pixels of overlap)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0, found {value}')
    return value


def torch_device(text):
    """An argparse type: a torch device that exists here ('cpu', 'cuda', 'cuda:1', ...)."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected a torch device such as 'cpu' or 'cuda', found {text!r}") from None
    if device.type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f'{text}: no CUDA device is available on this machine')
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f'{text}: this machine has {count} CUDA device(s), 0 to {count - 1}')
    elif device.type != 'cpu':
        raise argparse.ArgumentTypeError(f"expected 'cpu' or 'cuda[:N]', found {text!r}")
    return device
