"""`ghostsr doctor`: what it finds, with and without a (mocked) GPU."""
import torch

from ghostsr_plugin import cli
from ghostsr_plugin.ops import extension


def doctor(capsys):
    cli.ghostsr_main(['doctor'])
    return dict(line.split(':', 1) for line in capsys.readouterr().out.splitlines())


def test_without_a_gpu(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setenv('GHOSTSR_CUDA', '0')
    found = doctor(capsys)
    assert found['torch'].strip().startswith(torch.__version__)
    assert {'nvcc', 'ninja', 'prebuilt kernels', 'GPU'} <= set(found)
    assert found['GHOSTSR_CUDA'].strip() == '0'
    assert found['kernels'].strip() == 'PyTorch reference: no CUDA GPU visible'
    assert found['CPU adder kernels'].strip().startswith('compiled CPU kernels active')


def test_with_a_gpu_names_it_and_says_which_kernels_run(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda i: 'NVIDIA H200')
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda i: (9, 0))
    monkeypatch.setattr(torch.cuda, 'get_arch_list', lambda: ['sm_80', 'sm_90'])
    monkeypatch.delenv('TORCH_CUDA_ARCH_LIST', raising=False)
    why = 'PyTorch reference: self-check failed: shift on shape (2, 4, 5, 7) differs from the reference'
    monkeypatch.setattr(extension, 'status', lambda: (False, why))
    found = doctor(capsys)
    assert found['GPU'].strip() == 'NVIDIA H200 (sm 9.0)'
    assert found['arch list'].strip() == '9.0+PTX'
    assert found['kernels'].strip() == why
