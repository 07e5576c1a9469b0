"""Write a file or a folder whole or not at all.

Each output is built under a temporary name in the folder it will live in, and renamed into
place only when the work that writes it has finished: a command that fails or is stopped
midway leaves nothing behind (no half-written file, no empty folder it made), so the rerun
that its error message suggests is not refused as an "existing output", and an output it
replaces (``--overwrite``) stays intact until the new one is complete.
"""
import contextlib
import os
import os.path as osp
import secrets
import shutil


def _make_parents(folder):
    """Create ``folder`` and its missing parents; returns those created, innermost first."""
    created = []
    folder = osp.abspath(folder)
    while not osp.isdir(folder):
        created.append(folder)
        folder = osp.dirname(folder)
    for path in reversed(created):
        os.mkdir(path)
    return created


def _remove(path):
    if osp.isdir(path) and not osp.islink(path):
        shutil.rmtree(path)
    elif osp.lexists(path):
        os.remove(path)


def _replace(temporary, path):
    """Move ``temporary`` to ``path``; an existing ``path`` is removed only once the move is done."""
    if osp.isdir(path) or osp.isdir(temporary):
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
            _remove(old)
    else:
        os.replace(temporary, path)


def _temporary_name(path):
    """A free name beside ``path``, hidden, keeping its extension (writers pick the format by it)."""
    folder, name = osp.split(osp.abspath(path))
    return osp.join(folder, f'.tmp-{secrets.token_hex(4)}-{name}')


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path`` (not yet existing) for a file or folder to be written.

    On success what was written there replaces ``path``; on any failure it is removed, and so
    are the parent folders this call created.
    """
    created = _make_parents(osp.dirname(osp.abspath(path)))
    temporary = _temporary_name(path)
    try:
        yield temporary
        _replace(temporary, path)
    except BaseException:
        _remove(temporary)
        for folder in created:  # innermost first; only those still empty
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


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
