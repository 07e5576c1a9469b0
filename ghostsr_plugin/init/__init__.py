"""Clustering initialization: start a Ghost model from a pretrained plain model (GhostSR).

``intrinsic`` chooses one layer's intrinsic filters (k-means or the first filters),
``relations`` traces which Ghost layers feed which, ``transfer`` walks the Ghost model in
forward order and builds its weights from the plain model's,
``from_options`` runs it from an option file's ``ghost_init`` section, and ``command`` is
``ghostsr cluster-init``.
"""
from .from_options import ghost_init_for_training, ghost_init_from_section
from .intrinsic import METHODS, IntrinsicChoice, choose_intrinsic
from .transfer import init_from_plain, summary_lines

__all__ = ['METHODS', 'IntrinsicChoice', 'choose_intrinsic', 'ghost_init_for_training', 'ghost_init_from_section',
           'init_from_plain', 'summary_lines']
