"""GhostSR for BasicSR: importing this package registers its archs, datasets and models.

The torchvision/torch compatibility fixes for basicsr 1.4.2 are applied first, so that
``import basicsr`` works with current torchvision.
"""
from .errors import interrupt_ends_command

with interrupt_ends_command(always=False):  # (Ctrl-C while a command starts: the heavy imports are here)
    from . import compat

    compat.apply()

    from . import archs, data, models, ops  # (registration must follow the compat fixes)

__all__ = ['archs', 'data', 'models', 'ops']
__version__ = '0.1.0'
