"""Architectures: every ``*_arch.py`` here is imported, registering into BasicSR's ARCH_REGISTRY."""
from ghostsr_plugin.scan import import_modules

from .adder_layer import AdderConv2d, adder_layers
from .ghost_layer import GhostConv2d, ghost_layers, named_ghost_layers, named_shift_layers, shift_layers
from .gumbel import freeze, gumbel_modules

_arch_modules = import_modules(__name__, __file__, '_arch.py')

__all__ = ['AdderConv2d', 'GhostConv2d', 'adder_layers', 'freeze', 'ghost_layers', 'gumbel_modules',
           'named_ghost_layers', 'named_shift_layers', 'shift_layers']
