"""Datasets: every ``*_dataset.py`` here is imported, registering into BasicSR's DATASET_REGISTRY."""
from ghostsr_plugin.scan import import_modules

_dataset_modules = import_modules(__name__, __file__, '_dataset.py')
