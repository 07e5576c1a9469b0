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
from .conversion import BODY, conversion_wrapper, convert_network
from .ghost_layer import GhostConv2d


@conversion_wrapper(GhostConv2d, ranges=(
    ('ratio', lambda v: 0 < v <= 1, 'a number in (0, 1]'),
    ('max_shift', lambda v: isinstance(v, int) and v >= 0, 'an integer >= 0'),
    ('orientation_groups', lambda v: isinstance(v, int) and v >= 1, 'an integer >= 1')))
def Ghost(base, ratio=0.5, max_shift=1, orientation_groups=1, abs_argmax=False, deploy=False, convert=BODY,
          cheap_op='shift'):
    """The ``base`` network (a BasicSR network section) with the convs ``convert`` names as Ghost layers.

    ``ratio``, ``max_shift``, ``orientation_groups``, ``abs_argmax``, ``deploy`` and ``cheap_op`` are the
    Ghost layer's (see ``GhostConv2d``); ``convert`` is ``'body'`` or a list of module-name patterns
    (see ``ghostsr_plugin.archs.conversion``). Raises ``ConversionError`` naming the module that
    cannot be converted.
    """
    return convert_network(GhostConv2d, base, convert, ratio=ratio, max_shift=max_shift,
                           orientation_groups=orientation_groups, abs_argmax=abs_argmax, deploy=deploy,
                           cheap_op=cheap_op)
