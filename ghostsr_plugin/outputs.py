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

from ghostsr_plugin.atomic import replace_refusal, write_refusal
from ghostsr_plugin.errors import InputError


def _check_parent(path, option, into=False):
    """The nearest existing folder above ``path`` (or at it, for a folder written ``into``) must be a folder this
    process can create files in."""
    parent = osp.abspath(path) if into else osp.dirname(osp.abspath(path))
    while not osp.lexists(parent):
        parent = osp.dirname(parent)
    if not osp.isdir(parent):
        raise InputError(f'{option} {path}: {parent} is a file, not a folder')
    refusal = write_refusal(parent)
    if refusal:
        raise InputError(f'{option} {path}: cannot write in folder {parent} (creating a file there fails: {refusal})')


def _inside(path, folder):
    """Whether ``path`` lies under ``folder``, by name or through links."""
    pairs = ((osp.abspath(path), osp.abspath(folder)), (osp.realpath(path), osp.realpath(folder)))
    return any(p.startswith(f.rstrip(os.sep) + os.sep) for p, f in pairs)


def _check_not_input(path, inputs, option, input_folders=()):
    target = osp.realpath(path)
    for source in (*inputs, *input_folders):
        if source and osp.realpath(osp.expanduser(source)) == target:
            raise InputError(f'{option} {path} is an input of this command ({source}); choose another path')
    for folder in input_folders:
        if _inside(osp.expanduser(path), osp.expanduser(folder)):
            raise InputError(f'{option} {path} is inside {folder}, an input of this command; choose a path '
                             'outside it')


def _exist_message(existing, option, alternative=''):
    more, them = (f' (and {len(existing) - 1} more)', 'them') if len(existing) > 1 else ('', 'it')
    return f'{option} {existing[0]} exists{more}; pass --overwrite to replace {them}{alternative}'


def _check_file(path, overwrite, inputs, option):
    """:func:`check_output_file` but for its parent folder."""
    if path.endswith((os.sep, '/')):
        raise InputError(f'{option} {path} names a folder; expected a file path')
    refusal = replace_refusal(path, folder=False)
    if refusal:
        raise InputError(f'{option} {refusal}')
    if osp.lexists(path) and not overwrite:
        raise InputError(f'{option} {path} exists; pass --overwrite to replace it')
    _check_not_input(path, inputs, option)


def check_output_file(path, overwrite, inputs=(), option='--out'):
    """Check ``path`` as a file the command will write; returns it."""
    _check_file(path, overwrite, inputs, option)
    _check_parent(path, option)
    return path


def check_output_files(paths, overwrite, inputs=(), option='--out', alternative=''):
    """:func:`check_output_file` for several files at once; existing ones are named together (and
    ``alternative``, another way out, said after ``--overwrite``); each folder is tried once."""
    existing = [p for p in paths if osp.isfile(p)]
    if existing and not overwrite:
        raise InputError(_exist_message(existing, option, alternative))
    for path in paths:
        _check_file(path, True, inputs, option)
    for path in {osp.dirname(osp.abspath(p)): p for p in reversed(paths)}.values():  # (the first path of each)
        _check_parent(path, option)
    return list(paths)


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


def check_files_folder(path, option='--out', input_folders=()):
    """Check ``path`` as a folder the command writes files into: a folder, or nothing yet, outside every one of
    ``input_folders`` (folders the command reads as a tree); returns it."""
    if osp.lexists(path) and not osp.isdir(path):
        raise InputError(f'{option} {path} is a file; expected a folder (or a path where one can be made)')
    _check_not_input(path, (), option, input_folders)
    _check_parent(path, option, into=True)
    return path


def check_output_folders(paths, overwrite, inputs=(), option='--out'):
    """:func:`output_folder` for several folders at once; existing ones are named together."""
    existing = [p for p in paths if osp.lexists(p)]
    for path in existing:
        check_output_folder(path, True, inputs, option)  # each one replaceable at all
    if existing and not overwrite:
        raise InputError(_exist_message(existing, option))
    return [check_output_folder(p, True, inputs, option) for p in paths]
