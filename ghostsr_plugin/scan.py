"""Import every module of a package whose file name ends with a suffix (BasicSR's registry scan)."""
import importlib
from os import path as osp

from basicsr.utils import scandir


def import_modules(package, package_file, suffix):
    """Import ``package.<name>`` for each ``<name><suffix>`` beside ``package_file``."""
    folder = osp.dirname(osp.abspath(package_file))
    names = sorted(osp.splitext(f)[0] for f in scandir(folder) if f.endswith(suffix))
    return [importlib.import_module(f'{package}.{name}') for name in names]
