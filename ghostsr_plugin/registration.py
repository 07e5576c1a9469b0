"""Registering into BasicSR's registries without clashing with another plugin.

BasicSR's registries assert when a name is registered twice, so two plugins that both
ship, say, an ``RDN`` could not be installed together: whichever imported second would
stop with a bare ``AssertionError``. Here every class is registered under
``ghostsr.<Name>``, which is always this plugin's, and under its plain ``<Name>`` (what
option files use) unless another package holds that name already: then it keeps it, and
one warning says whose it is and how to name this plugin's.
"""
import warnings

PREFIX = 'ghostsr.'


def register(registry):
    """Class decorator: ``registry.register()`` with the clash policy above."""

    def decorate(cls):
        name = cls.__name__
        registry._do_register(PREFIX + name, cls)  # (BasicSR has no public way to choose the name)
        if name not in registry:
            registry._do_register(name, cls)
        else:
            holder = registry.get(name)
            warnings.warn(f"{registry._name} registry: '{name}' is already registered by "
                          f"{holder.__module__}.{holder.__qualname__}; ghostsr-plugin's {name} is "
                          f"'{PREFIX}{name}' (use that type in option files)", RuntimeWarning, stacklevel=2)
        return cls

    return decorate
