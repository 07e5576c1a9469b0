"""Training augmentation as a function of (seed, rank, epoch, sample), whatever the loader workers' lifetime.

BasicSR seeds each loader worker once, when the worker starts. A persistent worker
(``persistent_workers: true``) carries its random state from epoch to epoch, while a run
resumed with ``--auto_resume`` starts new workers, so its crops and flips would differ from
the uninterrupted run's. Here the training loader hands the dataset ``(epoch, position,
index)``, and each sample is drawn with Python's ``random``, NumPy and torch seeded from
``(manual_seed, rank, epoch, position)``; the process's own random state is put back
afterwards (in the training process; a loader worker's, which nothing else reads, is not: restoring
NumPy's costs more than drawing the sample). ``basicsr train`` (this plugin's command) installs it.
"""
import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info


class EpochPositionSampler(Sampler):
    """``(epoch, position, index)`` for each index of ``sampler``, a BasicSR ``EnlargedSampler``.

    The training loop sets the sampler's epoch before it starts each epoch's iteration, which
    runs in the main process, so the epoch read here is the one the batch belongs to.
    """

    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self):
        epoch = self.sampler.epoch
        return ((epoch, position, index) for position, index in enumerate(self.sampler))

    def __len__(self):
        return len(self.sampler)


class SeededSamples(Dataset):
    """``dataset`` whose item ``(epoch, position, index)`` is drawn from its own seed."""

    def __init__(self, dataset, seed, rank):
        self.dataset, self.seed, self.rank = dataset, seed, rank

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, position, index = key
        if get_worker_info() is not None:  # a loader worker's random state serves nothing else: not kept
            self._seed(epoch, position)
            return self.dataset[index]
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        self._seed(epoch, position)
        try:
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])

    def _seed(self, epoch, position):
        py_seed, np_seed, torch_seed = np.random.SeedSequence(
            [self.seed, self.rank, epoch, position]).generate_state(3)
        random.seed(int(py_seed))
        np.random.seed(np_seed)
        torch.default_generator.manual_seed(int(torch_seed))  # the CPU generator only, never CUDA's


def install():
    """Make ``basicsr.train`` build its training loader with per-sample seeds."""
    import basicsr.train
    from basicsr.data import build_dataloader
    from basicsr.utils.dist_util import get_dist_info

    def build_seeded_dataloader(dataset, dataset_opt, num_gpu=1, dist=False, sampler=None, seed=None):
        if dataset_opt['phase'] == 'train' and sampler is not None and seed is not None:
            dataset, sampler = SeededSamples(dataset, seed, get_dist_info()[0]), EpochPositionSampler(sampler)
        return build_dataloader(dataset, dataset_opt, num_gpu=num_gpu, dist=dist, sampler=sampler, seed=seed)

    basicsr.train.build_dataloader = build_seeded_dataloader
