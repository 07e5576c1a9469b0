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
