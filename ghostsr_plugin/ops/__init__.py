"""Ghost-feature ops: the shift and the whole Ghost layer output (one API for every device).

The functions here call the ops registered in :mod:`.library` (CPU: the pure-PyTorch
reference in :mod:`.reference`; CUDA: the fused kernels); :mod:`.reference` is the reference
itself, on any device.
"""
from .library import ghost_features, ghost_features_train, shift
from .reference import offset_table

__all__ = ['ghost_features', 'ghost_features_train', 'offset_table', 'shift']
