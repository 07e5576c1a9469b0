"""Ghost-feature ops: the shift and the whole Ghost layer output (one API for every device).

The functions here call the ops registered in :mod:`.library` (CPU: the pure-PyTorch
reference in :mod:`.reference`; CUDA: the fused kernels). :func:`reference_kernels` makes CUDA
run the reference too.
"""
from .library import ghost_features, ghost_features_train, reference_kernels, shift
from .reference import offset_table

__all__ = ['ghost_features', 'ghost_features_train', 'offset_table', 'reference_kernels', 'shift']
