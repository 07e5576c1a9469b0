"""The result format of ``ghostsr benchmark``, which the leaderboard reads: a leaf, no torch.

One JSON per model, scale, engine and precision (``result_path``), marked ``'format': RESULT_FORMAT``;
test sets in BasicSR's layout (``set_folders``) and listed in the literature's order.
"""
import hashlib
import os.path as osp
import re

BICUBIC = 'bicubic'
RESULT_FORMAT = 'ghostsr-benchmark/1'
STANDARD_SETS = ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109')


def set_order(names):
    """Test-set names sorted: the standard sets in the literature's order, then the others by name."""
    return sorted(names, key=lambda s: (STANDARD_SETS.index(s) if s in STANDARD_SETS else len(STANDARD_SETS), s))


def set_folders(data, set_name, scale):
    """The (HR, LR) folders of a prepared test set at ``scale``."""
    return osp.join(data, set_name, f'GTmod{scale}'), osp.join(data, set_name, f'LRbicx{scale}')


def sha256(paths):
    """SHA-256 of the concatenated contents of ``paths``."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                digest.update(chunk)
    return digest.hexdigest()


def portable_path(path):
    """``path`` as a result records it: relative to the working directory (a repository's root when
    run there), never absolute, so that a published result names no folder of the machine it ran on."""
    return None if path is None else osp.relpath(osp.abspath(osp.expanduser(path)))


def result_path(out, name, scale, engine='eager', precision='fp32'):
    """Where a result goes: one file per model, scale and (beyond eager float32 PyTorch) engine and precision."""
    suffix = ('' if engine == 'eager' else f'_{engine}') + ('' if precision == 'fp32' else f'_{precision}')
    return osp.join(out, f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}_x{scale}{suffix}.json")
