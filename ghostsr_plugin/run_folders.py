"""A BasicSR run that fails before it saved anything leaves no folder behind.

BasicSR's pipelines make the run's folders first (``experiments/<name>`` and
``tb_logger/<name>``, or ``results/<name>`` for a test; an existing one is renamed
``<name>_archived_<time>``) and only then build the data, the network and the model. When
that or an early iteration fails (an error the option check cannot foresee, Ctrl-C), the
folders this process made hold nothing but the run's log, its TensorBoard events and a copy of
its option file: they are removed, and a folder that was archived for them is put back under
its name, so a rerun finds the user's folders as they were. A run that saved a checkpoint, a
training state or an image keeps everything. ``basicsr train`` / ``basicsr test`` (this
plugin's command) use it.
"""
import contextlib
import os
import os.path as osp
import shutil

_made = []  # (folder, the folder archived for it or None, its parents made with it), as this process made them


def _recording(mkdir_and_rename):
    def mkdir_and_record(path):
        parent, name = osp.split(osp.abspath(path))
        parents, above = [], parent
        while not osp.isdir(above):
            parents.append(above)  # (innermost first)
            above = osp.dirname(above)
        before = set(os.listdir(parent)) if osp.isdir(parent) else set()
        mkdir_and_rename(path)
        archived = [e for e in os.listdir(parent) if e not in before and e.startswith(f'{name}_archived_')]
        _made.append((path, osp.join(parent, archived[0]) if archived else None, parents))

    mkdir_and_record.records = True
    return mkdir_and_record


def _install():
    """Make BasicSR's ``mkdir_and_rename`` (the run's folders) say what it made."""
    import basicsr.train
    import basicsr.utils.misc

    for module in (basicsr.train, basicsr.utils.misc):
        if not getattr(module.mkdir_and_rename, 'records', False):
            module.mkdir_and_rename = _recording(module.mkdir_and_rename)


def _saved_something(folder, option_file):
    start_up = (osp.basename(option_file),)
    for _, _, files in os.walk(folder):
        if any(not (f in start_up or f.endswith('.log') or f.startswith('events.out.tfevents.')) for f in files):
            return True
    return False


@contextlib.contextmanager
def removed_unless_saved(option_file):
    """Run a BasicSR pipeline inside it: on failure, the folders it made are removed if they hold only what a
    start writes (``option_file``'s copy, logs, events), and the folders archived for them put back."""
    _install()
    _made.clear()
    try:
        yield
    except BaseException:
        made = list(_made)
        if not any(osp.isdir(folder) and _saved_something(folder, option_file) for folder, _, _ in made):
            for folder, archived, parents in reversed(made):
                shutil.rmtree(folder, ignore_errors=True)  # (this run's own: made and filled by it)
                if archived and not osp.lexists(folder):
                    os.rename(archived, folder)
                for parent in parents:
                    with contextlib.suppress(OSError):
                        os.rmdir(parent)  # (only when empty)
        raise
