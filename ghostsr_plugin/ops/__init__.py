"""The plugin's ops (one API for every device): the Ghost layer's shift and whole output, and AdderNet's adder.

The functions here call the ops registered in :mod:`.library` (the shift; CPU: the pure-PyTorch
reference in :mod:`.reference`; CUDA: the fused kernels) and :mod:`.adder` (CPU: compiled
kernels; elsewhere the reference in :mod:`.adder_reference`); the reference modules are the
references themselves, on any device.
"""
from .adder import adaptive_gradient, adder2d
from .library import ghost_features, ghost_features_train, shift
from .reference import offset_table

__all__ = ['adaptive_gradient', 'adder2d', 'ghost_features', 'ghost_features_train', 'offset_table', 'shift']
