"""Write a file or a folder whole or not at all, and replace only what the plugin wrote.

Each output is built under a temporary name in the folder it will live in, and renamed into
place only when the work that writes it has finished: a command that fails or is stopped
midway leaves nothing behind (no half-written file, no empty folder it made), so the rerun
that its error message suggests is not refused as an "existing output", and an output it
replaces (``--overwrite``) stays intact until the new one is complete.

Nothing a user has is deleted: a file replaces a file, never a folder; a folder replaces
only a folder that an earlier run wrote, as its manifest (``MANIFEST``, listing every file
written into it) shows, and holding nothing else. The old folder's files are then removed
one by one, as listed; only what this run itself created is ever removed as a tree.
"""
import contextlib
import json
import os
import os.path as osp
import secrets
import shutil
import warnings

from ghostsr_plugin.errors import InputError

MANIFEST = '.ghostsr-output.json'


def _make_parents(folder):
    """Create ``folder`` and its missing parents; returns those created, innermost first."""
    created = []
    folder = osp.abspath(folder)
    while not osp.isdir(folder):
        if osp.lexists(folder):
            raise InputError(f'{folder} is a file, not a folder: cannot write under it')
        created.append(folder)
        folder = osp.dirname(folder)
    for path in reversed(created):
        try:
            os.mkdir(path)
        except OSError as err:
            raise InputError(f'cannot create folder {path}: {err.strerror}') from None
    return created


def _files(folder):
    """Every file under ``folder``, as paths relative to it, sorted (the manifest left out)."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        found += [osp.relpath(osp.join(root, n), folder) for n in sorted(names)]
    return sorted(f for f in found if f != MANIFEST)


def _manifest(folder):
    """The files an earlier run wrote into ``folder`` (its manifest), or None when it has none."""
    try:
        with open(osp.join(folder, MANIFEST), encoding='utf-8') as f:
            files = json.load(f)['files']
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return set(files) if isinstance(files, list) else None


def foreign_entry(folder):
    """What in the existing ``folder`` no earlier run of the plugin wrote: a path, or None (all of it its own)."""
    if not osp.isdir(folder) or osp.islink(folder):
        return folder
    written = _manifest(folder)
    if written is None:
        return osp.join(folder, MANIFEST)  # (absent: the whole folder is the user's)
    return next((osp.join(folder, f) for f in _files(folder) if f not in written), None)


def replace_refusal(path, folder):
    """Why ``path`` cannot be replaced by a new file (``folder`` False) or folder (True); None if it can."""
    if not osp.lexists(path):
        return None
    if not folder:
        return f'{path} is a folder; expected a file there' if osp.isdir(path) else None
    if not osp.isdir(path):
        return f'{path} is a file; expected a folder there'
    foreign = foreign_entry(path)
    if foreign == osp.join(path, MANIFEST):
        return (f'{path} exists and was not written by ghostsr (it has no {MANIFEST}); it is never replaced: '
                'move it away or choose another output')
    if foreign:
        return (f'{path} holds {osp.relpath(foreign, path)}, which ghostsr did not write there; it is never '
                'replaced: move that away or choose another output')
    return None


def _remove_own(folder, path):
    """Remove the files of ``folder`` (the output replaced at ``path``) that its manifest lists, then its
    folders left empty.

    Anything else (a file added while the new output was built) is kept, under a visible
    name beside ``path``, with a warning.
    """
    written = _manifest(folder) or set()
    for name in [*written, MANIFEST]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(osp.join(folder, name))
    for root, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):
            os.rmdir(root)  # only when empty
    if osp.lexists(folder):
        kept = f'{osp.abspath(path)}.kept-{secrets.token_hex(4)}'
        os.rename(folder, kept)
        warnings.warn(f'files added to the replaced output while it was rebuilt were kept in {kept}', stacklevel=2)


def _write_manifest(folder):
    with open(osp.join(folder, MANIFEST), 'w', encoding='utf-8') as f:
        json.dump({'written_by': 'ghostsr', 'files': _files(folder)}, f, indent=1)


def _replace(temporary, path):
    """Move ``temporary`` to ``path``, replacing only an output of the same kind that the plugin wrote."""
    is_folder = osp.isdir(temporary)
    refusal = replace_refusal(path, is_folder)
    if refusal:
        raise InputError(refusal)
    if not is_folder:
        os.replace(temporary, path)
        return
    _write_manifest(temporary)
    old = _temporary_name(path) if osp.lexists(path) else None
    if old:
        os.rename(path, old)
    try:
        os.rename(temporary, path)
    except OSError:
        if old:
            os.rename(old, path)  # put the existing output back
        raise
    if old:
        _remove_own(old, path)


def _temporary_name(path):
    """A free name beside ``path``, hidden, ending in its name (writers pick the format by the extension).

    The ``.`` after the prefix leaves a stem before the last extension even for a name
    without one (``torch.save`` refuses a file name whose stem is empty).
    """
    folder, name = osp.split(osp.abspath(path))
    return osp.join(folder, f'.tmp-{secrets.token_hex(4)}.{name}')


def write_refusal(folder):
    """Why no file can be created in the existing ``folder`` (the OS's reason), or None.

    Tried for real, with a hidden temporary file removed at once: permission bits say
    nothing of a read-only mount for root, nor of a folder such as ``/proc`` that takes no
    new files at all.
    """
    probe = _temporary_name(osp.join(folder, 'probe'))
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as err:
        return err.strerror or type(err).__name__
    os.remove(probe)
    return None


def _discard(temporary):
    """Remove what this run wrote under ``temporary`` (its own, so a whole tree may go)."""
    if osp.isdir(temporary) and not osp.islink(temporary):
        shutil.rmtree(temporary)
    elif osp.lexists(temporary):
        os.remove(temporary)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path`` (not yet existing) for a file or folder to be written.

    On success what was written there replaces ``path`` (see the module's rules); on any
    failure it is removed, and so are the parent folders this call created.
    """
    created = _make_parents(osp.dirname(osp.abspath(path)))
    temporary = _temporary_name(path)
    try:
        yield temporary
        _replace(temporary, path)
    except BaseException:
        _discard(temporary)
        for folder in created:  # innermost first; only those still empty
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


def write_json(path, data):
    """``data`` as JSON (indent 1) at ``path``, written whole or not at all (:func:`atomic_path`)."""
    with atomic_path(path) as temporary, open(temporary, 'w') as f:
        json.dump(data, f, indent=1)
    return path


def write_between(path, text, begin, end):
    """Replace what lies between the marker lines ``begin`` and ``end`` of the text file ``path`` with ``text``
    (a generated table in a hand-written document), whole or not at all."""
    with open(path) as f:
        document = f.read()
    if document.count(begin) != 1 or document.count(end) != 1 or document.index(begin) > document.index(end):
        raise InputError(f'{path}: expected one {begin} line and, after it, one {end} line')
    head, rest = document.split(begin)
    tail = rest.split(end)[1]
    with atomic_path(path) as temporary, open(temporary, 'w') as f:
        f.write(f'{head}{begin}\n{text}{end}{tail}')


@contextlib.contextmanager
def atomic_folder(path):
    """Like ``atomic_path``, with the temporary folder created: fill it, and it becomes ``path`` at the end."""
    with atomic_path(path) as temporary:
        os.mkdir(temporary)
        yield temporary


@contextlib.contextmanager
def atomic_paths(paths, folders=False):
    """``atomic_path`` (or ``atomic_folder``) for several outputs at once: all are kept, or none."""
    enter = atomic_folder if folders else atomic_path
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(enter(path)) for path in paths]
