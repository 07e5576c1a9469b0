"""GhostSR for BasicSR: importing this package registers its archs, datasets and models.

The torchvision/torch compatibility fixes for basicsr 1.4.2 are applied first, so that
``import basicsr`` works with current torchvision.
"""
from . import compat

compat.apply()

from . import archs, data, models, ops  # noqa: E402  (registration must follow the compat fixes)

__all__ = ['archs', 'data', 'models', 'ops']
__version__ = '0.1.0'
