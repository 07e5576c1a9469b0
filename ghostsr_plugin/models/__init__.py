"""Models: every ``*_model.py`` here is imported, registering into BasicSR's MODEL_REGISTRY."""
from ghostsr_plugin.scan import import_modules

_model_modules = import_modules(__name__, __file__, '_model.py')
