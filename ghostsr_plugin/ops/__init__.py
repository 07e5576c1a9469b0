"""Ghost-feature ops: the shift and the whole Ghost layer output (one API for every device)."""
from .shift import ghost_features, ghost_features_train, offset_table, shift

__all__ = ['ghost_features', 'ghost_features_train', 'offset_table', 'shift']
