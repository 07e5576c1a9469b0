"""``Ghost``: the Ghost form of any registered arch, from the option file alone.

```yaml
network_g:
  type: Ghost
  base: {type: MSRResNet, num_in_ch: 3, num_out_ch: 3, num_feat: 64, num_block: 16, upscale: 4}
  ratio: 0.5            # the Ghost layer's arguments (GhostConv2d)
  max_shift: 1
  convert: body         # which convs: body (the paper's rule) or module-name patterns, see .conversion
```

The network built is the base arch's own class and forward with the chosen convs replaced
by Ghost layers at the same module paths, so a checkpoint of the plain arch and one of its
Ghost form differ only in the Ghost layers' keys (``P.weight`` -> ``P.primary.weight``,
plus ``P.logits``), and everything that finds Ghost layers by walking the modules
(schedules, freezing, export, clustering) works unchanged. See docs/any_arch.md.
"""
import copy

import torch
from basicsr.utils.registry import ARCH_REGISTRY

from ghostsr_plugin.registration import register

from .conversion import BODY, ConversionError, convert_convs, select_convs


@register(ARCH_REGISTRY)
def Ghost(base, ratio=0.5, max_shift=1, orientation_groups=1, abs_argmax=False, deploy=False, convert=BODY,
          cheap_op='shift'):
    """The ``base`` network (a BasicSR network section) with the convs ``convert`` names as Ghost layers.

    ``ratio``, ``max_shift``, ``orientation_groups``, ``abs_argmax``, ``deploy`` and ``cheap_op`` are the
    Ghost layer's (see ``GhostConv2d``); ``convert`` is ``'body'`` or a list of module-name patterns
    (see ``ghostsr_plugin.archs.conversion``). Raises ``ConversionError`` naming the module that
    cannot be converted.
    """
    base = dict(base)
    arch = ARCH_REGISTRY.get(base.pop('type'))
    if arch is Ghost:
        raise ConversionError('base is itself a Ghost wrapper; give the plain arch', option='base')
    net = arch(**base)
    return convert_convs(net, select_convs(net, convert), ratio=ratio, max_shift=max_shift,
                         orientation_groups=orientation_groups, abs_argmax=abs_argmax, deploy=deploy,
                         cheap_op=cheap_op)


def base_section(network_opt):
    """The plain arch's section of a ``Ghost`` network section (its ``base``), or None for any other arch."""
    arch = network_opt.get('type')
    return network_opt['base'] if arch in ARCH_REGISTRY and ARCH_REGISTRY.get(arch) is Ghost else None


def upscale_factor(network_opt):
    """The scale of a network section: its (or its base's) ``upscale`` or ``scale`` argument, or None."""
    section = base_section(network_opt) or network_opt
    return section.get('upscale', section.get('scale'))


def check_section(check, key):
    """Check a ``Ghost`` network section at ``key``; ``check`` is the option check's checker.

    The base is checked as any network section (its arch registered, its arguments its
    arch's); the conversion is then tried on the meta device (no weights), so a conv that
    cannot be converted fails here, naming the option and the module.
    """
    check.network(f'{key}.base')
    for name, valid, expected in (
            ('ratio', lambda v: 0 < v <= 1, 'a number in (0, 1]'),  # (types: the checker's argument_types)
            ('max_shift', lambda v: isinstance(v, int) and v >= 0, 'an integer >= 0'),
            ('orientation_groups', lambda v: isinstance(v, int) and v >= 1, 'an integer >= 1')):
        value = check.get(f'{key}.{name}', required=False)
        if value is not None and not valid(value):
            check.fail(f'{key}.{name}', f'expected {expected}, found {value!r}')
    section = {k: v for k, v in check.get(key, dict).items() if k != 'type'}
    for device in ('meta', 'cpu'):  # the meta device costs nothing; an arch that needs real tensors to build gets them
        try:
            with torch.device(device):
                Ghost(**copy.deepcopy(section))
            return
        except ConversionError as err:
            check.fail(f'{key}.{err.option}' if err.option else key, str(err))
        except Exception as err:  # the base arch's own constructor refusing its arguments
            if device == 'cpu':
                check.fail(f'{key}.base', f"{section['base']['type']} cannot be built: {type(err).__name__}: {err}")
