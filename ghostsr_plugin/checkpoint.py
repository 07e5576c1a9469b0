"""The one loader for checkpoint files: tensors and plain containers only, never code.

A PyTorch checkpoint is a pickle, and a pickle can name any importable function to call.
``torch.load(..., weights_only=True)`` refuses such a file before calling anything, but its
refusal is a long message with terminal escape codes that suggests turning the check off;
here it is one line that names the file. Every load of the plugin and of its ``basicsr``
command (weights, ``pretrain_network_g``, the ``--auto_resume`` state) goes through here.
"""
import os.path as osp
import pickle
import pickletools
import zipfile

import torch

from ghostsr_plugin.errors import InputError


def load_checkpoint(checkpoint, map_location='cpu', allowed_globals=()):
    """The dict the file ``checkpoint`` holds, loaded with ``weights_only=True``.

    ``allowed_globals``: further classes a caller's format holds (BasicSR's training state
    stores a ``collections.Counter``).
    """
    path = osp.expanduser(checkpoint)
    if osp.isdir(path):
        raise InputError(f'checkpoint {checkpoint} is a folder; expected a checkpoint file (.pth)')
    if not osp.isfile(path):
        raise InputError(f'checkpoint {checkpoint} does not exist')
    if not _looks_like_torch_file(path):
        raise InputError(f'{checkpoint}: not a PyTorch checkpoint file (expected the zip archive torch.save '
                         'writes, or a pickle; found other content)')
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(f'{checkpoint}: not a checkpoint of tensors (it holds other Python objects); '
                         'nothing was run from it') from None
    except Exception:  # not a pickle PyTorch can read at all
        raise InputError(f'{checkpoint}: not a PyTorch checkpoint file (truncated, or another format)') from None
    if not isinstance(state, dict):
        raise InputError(f'{checkpoint}: expected a dict of state dicts, found {type(state).__name__}')
    return state


def _looks_like_torch_file(path):
    """Whether ``path`` is in one of ``torch.save``'s formats: a zip archive, or (legacy) pickles.

    Only the pickle's opcodes are read, nothing is run: a text file fails here instead of
    being called a checkpoint that holds objects.
    """
    if zipfile.is_zipfile(path):
        return True
    with open(path, 'rb') as f:
        try:
            for opcode, _, _ in pickletools.genops(f):
                if opcode.name == 'STOP':
                    return True
        except Exception:  # noqa: BLE001  (any malformed byte: not a pickle)
            return False
    return False


def install():
    """Make BasicSR's ``BaseModel.load_network`` (``pretrain_network_g`` and the like) check the file here first.

    BasicSR then reads the file checked to hold tensors only (with ``torch.load``'s own
    ``weights_only`` default on torch >= 2.6).
    """
    from basicsr.models.base_model import BaseModel

    load_network = BaseModel.load_network
    if getattr(load_network, 'checks_checkpoint', False):
        return

    def checked_load_network(self, net, load_path, *args, **kwargs):
        load_checkpoint(load_path)
        return load_network(self, net, load_path, *args, **kwargs)

    checked_load_network.checks_checkpoint = True
    BaseModel.load_network = checked_load_network
