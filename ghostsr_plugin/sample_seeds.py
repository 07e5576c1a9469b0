"""Training augmentation as a function of (seed, rank, epoch, sample), whatever the loader workers' lifetime.

BasicSR seeds each loader worker once, when the worker starts. A persistent worker
(``persistent_workers: true``) carries its random state from epoch to epoch, while a run
resumed with ``--auto_resume`` starts new workers, so its crops and flips would differ from
the uninterrupted run's. Here the training loader hands the dataset ``(epoch, position,
index)``, and each sample is drawn with Python's ``random``, NumPy and torch seeded from
``(manual_seed, rank, epoch, position)``; the process's own random state is put back
afterwards (in the training process; a loader worker's, which nothing else reads, is not: restoring
NumPy's costs more than drawing the sample). A run resumed in the middle of an epoch skips the
samples of that epoch the interrupted run trained on (BasicSR would draw them again), so it
goes on with the batch the interrupted run would have drawn next. ``basicsr train`` (this
plugin's command) installs it.
"""
import itertools
import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info


class EpochPositionSampler(Sampler):
    """``(epoch, position, index)`` for each index of ``sampler``, a BasicSR ``EnlargedSampler``.

    The training loop sets the sampler's epoch before it starts each epoch's iteration, which
    runs in the main process, so the epoch read here is the one the batch belongs to.
    ``skip``: ``(epoch, samples)``, the first samples of that epoch left out (a resumed run's).
    """

    def __init__(self, sampler, skip=None):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        epoch = self.sampler.epoch
        positions = enumerate(self.sampler)
        if self.skip is not None and epoch == self.skip[0]:
            positions = itertools.islice(positions, self.skip[1], None)
        return ((epoch, position, index) for position, index in positions)

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


def resumed_samples(resume_state, samples_per_epoch, batch_size):
    """``(epoch, samples)``: how far into its epoch the run of ``resume_state`` had trained (full epochs of
    ``samples_per_epoch // batch_size`` batches before it, as BasicSR's loader drops a last partial batch)."""
    epoch, iteration = resume_state['epoch'], resume_state['iter']
    return epoch, max(iteration - epoch * (samples_per_epoch // batch_size), 0) * batch_size


def install():
    """Make ``basicsr.train`` build its training loader with per-sample seeds, resuming within an epoch."""
    import basicsr.train
    from basicsr.data import build_dataloader
    from basicsr.utils.dist_util import get_dist_info

    load_resume_state, resumed = basicsr.train.load_resume_state, []

    def load_and_remember(opt):
        state = load_resume_state(opt)
        resumed[:] = [state] if state is not None else []
        return state

    def build_seeded_dataloader(dataset, dataset_opt, num_gpu=1, dist=False, sampler=None, seed=None):
        if dataset_opt['phase'] == 'train' and sampler is not None and seed is not None:
            # (BasicSR's batch: one GPU's in a distributed run, every GPU's (DataParallel) otherwise)
            batch_size = dataset_opt['batch_size_per_gpu'] * (1 if dist or num_gpu == 0 else num_gpu)
            skip = resumed_samples(resumed[0], len(sampler), batch_size) if resumed else None
            dataset, sampler = SeededSamples(dataset, seed, get_dist_info()[0]), EpochPositionSampler(sampler, skip)
        return build_dataloader(dataset, dataset_opt, num_gpu=num_gpu, dist=dist, sampler=sampler, seed=seed)

    basicsr.train.load_resume_state = load_and_remember
    basicsr.train.build_dataloader = build_seeded_dataloader
