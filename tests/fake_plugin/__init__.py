"""A stand-in third-party BasicSR plugin: registers one arch when imported."""
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

if 'ThirdPartyNet' not in ARCH_REGISTRY:

    @ARCH_REGISTRY.register()
    class ThirdPartyNet(nn.Identity):
        pass
