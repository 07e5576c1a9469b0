"""Learned discrete choices relaxed by Gumbel noise: what the temperature schedules drive, whatever the arch.

A Ghost layer's orientation (``GhostConv2d``) and SMSR's spatial and channel masks
(``smsr_arch``) are such choices. Each is a ``GumbelChoice``; the training model finds them
by walking ``model.modules()`` and sets, every iteration, the ``temperature`` of the relaxation
(from ``train.temperature_schedule``) and the ``noise_generator`` the noise is drawn from
(seeded by ``manual_seed`` and the iteration, so a resumed run draws the same noise).
``freeze(net)`` bakes every hard choice into the deploy form.
"""
import torch
from torch import nn
from torch.nn import functional as F


class GumbelChoice(nn.Module):
    """A module that learns a discrete choice through Gumbel noise at a scheduled temperature.

    Attributes:
        temperature: set by the training model every iteration (what it scales is the subclass's:
            the noise added to the logits of a Gumbel-max, or the softmax's temperature).
        noise_generator: the ``torch.Generator`` the noise is drawn from (None: the global one).
        PLURAL: what the choices are, plural, for messages ("Ghost layers").
    """

    PLURAL = 'learned choices'

    def __init__(self):
        super().__init__()
        self.temperature, self.noise_generator = 1.0, None

    @property
    def frozen(self):
        """Whether the choice is baked in (or there is nothing to bake)."""
        return True

    def freeze(self):
        """Bake the current hard choice in for deploy (nothing to bake by default); returns ``self``."""
        return self


def gumbel_noise(like, generator=None):
    """Standard Gumbel samples shaped like ``like``: ``-log(E)``, E exponential(1), from ``generator``."""
    return -torch.empty_like(like).exponential_(generator=generator).log()


def gumbel_softmax(logits, temperature, dim=-1, generator=None):
    """The Gumbel-softmax relaxation: ``softmax((logits + gumbel) / temperature)`` along ``dim``; at temperature
    0 its limit, the one-hot Gumbel-max (no gradient)."""
    scores = logits + gumbel_noise(logits, generator)
    if temperature <= 0:
        return F.one_hot(scores.argmax(dim), logits.shape[dim]).movedim(-1, dim).to(logits.dtype)
    return (scores / temperature).softmax(dim)


def gumbel_modules(net):
    """Every ``GumbelChoice`` of ``net``, in module order."""
    return [m for m in net.modules() if isinstance(m, GumbelChoice)]


def freeze(net):
    """Freeze every learned choice of ``net`` in place (Ghost layers' shifts, SMSR's channel masks); returns ``net``."""
    for module in gumbel_modules(net):
        module.freeze()
    return net
