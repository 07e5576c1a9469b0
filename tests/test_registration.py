"""Importing the plugin registers it into BasicSR and makes basicsr importable."""
import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points

from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY

from ghostsr_plugin import cli


def test_plugin_registers_archs_and_models():
    assert 'GhostEDSR' in ARCH_REGISTRY
    assert 'GhostSRModel' in MODEL_REGISTRY


def test_basicsr_imports_cleanly_with_current_torchvision():
    code = ('import ghostsr_plugin, basicsr, basicsr.data.degradations, basicsr.train, basicsr.test; '
            'import torchvision; print(torchvision.__version__)')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    major, minor = (int(v) for v in proc.stdout.split('.')[:2])
    assert (major, minor) >= (0, 17)  # the torchvision that removed functional_tensor


def test_plugin_declares_itself_under_the_entry_point_group():
    declared = {ep.name: ep.value for ep in entry_points(group=cli.PLUGIN_GROUP)}
    assert declared.get('ghostsr') == 'ghostsr_plugin'


def test_third_party_plugins_are_loaded(monkeypatch):
    fake = EntryPoint('thirdparty', 'fake_plugin', cli.PLUGIN_GROUP)
    monkeypatch.syspath_prepend(__file__.rsplit('/', 1)[0])
    monkeypatch.setattr(cli, 'entry_points', lambda group: [fake] if group == cli.PLUGIN_GROUP else [])
    cli.load_plugins()
    assert 'ThirdPartyNet' in ARCH_REGISTRY


def test_a_name_another_plugin_holds_is_a_warning_and_ours_stays_reachable():
    """Another plugin registered 'RDN' first: no AssertionError, one warning, ours as 'ghostsr.RDN'."""
    code = '''
import sys, warnings
import torchvision.transforms.functional as functional
sys.modules['torchvision.transforms.functional_tensor'] = functional  # what any plugin needs for basicsr 1.4.2
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

@ARCH_REGISTRY.register()
class RDN(nn.Module):
    pass

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    import ghostsr_plugin
mine = ARCH_REGISTRY.get('ghostsr.RDN')
assert ARCH_REGISTRY.get('RDN') is RDN and mine.__module__ == 'ghostsr_plugin.archs.rdn_arch'
assert ARCH_REGISTRY.get('GhostRDN') is ARCH_REGISTRY.get('ghostsr.GhostRDN')
print([str(w.message) for w in caught if 'already registered' in str(w.message)])
'''
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(["arch registry: 'RDN' is already registered by __main__.RDN; "
                                       "ghostsr-plugin's RDN is 'ghostsr.RDN' (use that type in option files)"])


def test_every_class_is_also_registered_under_the_plugin_prefix():
    for name in ('GhostEDSR', 'GhostRDN', 'GhostCARN', 'GhostCARN_M', 'RDN', 'CARN', 'CARN_M'):
        assert ARCH_REGISTRY.get(f'ghostsr.{name}') is ARCH_REGISTRY.get(name)
    assert MODEL_REGISTRY.get('ghostsr.GhostSRModel') is MODEL_REGISTRY.get('GhostSRModel')
