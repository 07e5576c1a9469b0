"""``Adder``: AdderSR's form of any registered arch, from the option file alone.

```yaml
network_g:
  type: Adder
  base: {type: EDSR, num_in_ch: 3, num_out_ch: 3, num_feat: 64, num_block: 16, upscale: 2}
  shortcut: true          # AdderSR's self-shortcut where a layer's input and output channels match
  power_activation: true  # AdderSR's learnable power activation
  eta: 0.2                # AdderNet's layer-adaptive learning-rate scale (0: off)
  convert: body           # which convs: the same rule and patterns as the Ghost wrapper (.conversion)
```

The network is the base arch's own class and forward with the chosen convs replaced by
adder layers (``AdderConv2d``) at the same module paths: the first and last convs and the
upsampler stay multiplications, as in AdderSR. See docs/peers.md.
"""
from .adder_layer import AdderConv2d
from .conversion import BODY, conversion_wrapper, convert_network


@conversion_wrapper(AdderConv2d, ranges=(('eta', lambda v: v >= 0, 'a number >= 0'),))
def Adder(base, shortcut=True, power_activation=True, eta=0.2, convert=BODY):
    """The ``base`` network (a BasicSR network section) with the convs ``convert`` names as adder layers.

    ``shortcut``, ``power_activation`` and ``eta`` are the adder layer's (see ``AdderConv2d``);
    ``convert`` is ``'body'`` or a list of module-name patterns. Raises ``ConversionError``
    naming the module that cannot be converted.
    """
    return convert_network(AdderConv2d, base, convert, shortcut=shortcut, power_activation=power_activation,
                           eta=eta)
