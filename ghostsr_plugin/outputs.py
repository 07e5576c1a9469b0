"""Every output path of every command, checked before any work starts.

A command states what it will write, and these checks run first, so that a mistake costs no
work and names the path: a file where a folder is to go or the reverse (with or without
``--overwrite``), an existing output without ``--overwrite``, an output that is one of the
command's inputs, a parent that is a file or a folder that cannot be written.
``--overwrite`` replaces only what the command itself would write: a file by a file, a folder
by a folder that the plugin wrote (:mod:`ghostsr_plugin.atomic` enforces the same when it
writes).
"""
import os
import os.path as osp

from ghostsr_plugin.atomic import replace_refusal
from ghostsr_plugin.errors import InputError


def _check_parent(path, option):
    """The nearest existing folder above ``path`` must be a folder this process can write in."""
    parent = osp.dirname(osp.abspath(path))
    while not osp.lexists(parent):
        parent = osp.dirname(parent)
    if not osp.isdir(parent):
        raise InputError(f'{option} {path}: {parent} is a file, not a folder')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f'{option} {path}: cannot write in folder {parent} (permission denied or read-only)')


def _check_not_input(path, inputs, option):
    target = osp.realpath(path)
    for source in inputs:
        if source and osp.realpath(osp.expanduser(source)) == target:
            raise InputError(f'{option} {path} is an input of this command ({source}); choose another path')


def _exist_message(existing, option, alternative=''):
    more, them = (f' (and {len(existing) - 1} more)', 'them') if len(existing) > 1 else ('', 'it')
    return f'{option} {existing[0]} exists{more}; pass --overwrite to replace {them}{alternative}'


def check_output_file(path, overwrite, inputs=(), option='--out'):
    """Check ``path`` as a file the command will write; returns it."""
    if path.endswith((os.sep, '/')):
        raise InputError(f'{option} {path} names a folder; expected a file path')
    refusal = replace_refusal(path, folder=False)
    if refusal:
        raise InputError(f'{option} {refusal}')
    if osp.lexists(path) and not overwrite:
        raise InputError(f'{option} {path} exists; pass --overwrite to replace it')
    _check_not_input(path, inputs, option)
    _check_parent(path, option)
    return path


def check_output_files(paths, overwrite, inputs=(), option='--out', alternative=''):
    """:func:`check_output_file` for several files at once; existing ones are named together (and
    ``alternative``, another way out, said after ``--overwrite``)."""
    existing = [p for p in paths if osp.isfile(p)]
    if existing and not overwrite:
        raise InputError(_exist_message(existing, option, alternative))
    return [check_output_file(p, True, inputs, option) for p in paths]


def check_output_folder(path, overwrite, inputs=(), option='--out'):
    """Check ``path`` as a folder the command builds whole (an earlier build of the plugin's may be replaced)."""
    if osp.lexists(path):
        refusal = replace_refusal(path, folder=True)
        if refusal:
            raise InputError(f'{option} {refusal}')
        if not overwrite:
            raise InputError(f'{option} {path} exists; pass --overwrite to replace it')
    _check_not_input(path, inputs, option)
    _check_parent(path, option)
    return path


def check_files_folder(path, option='--out'):
    """Check ``path`` as a folder the command writes files into: a folder, or nothing yet; returns it."""
    if osp.lexists(path) and not osp.isdir(path):
        raise InputError(f'{option} {path} is a file; expected a folder (or a path where one can be made)')
    _check_parent(osp.join(path, 'file'), option)
    return path


def check_output_folders(paths, overwrite, inputs=(), option='--out'):
    """:func:`output_folder` for several folders at once; existing ones are named together."""
    existing = [p for p in paths if osp.lexists(p)]
    for path in existing:
        check_output_folder(path, True, inputs, option)  # each one replaceable at all
    if existing and not overwrite:
        raise InputError(_exist_message(existing, option))
    return [check_output_folder(p, True, inputs, option) for p in paths]
