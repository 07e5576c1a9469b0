"""scripts/benchmark_shift.py on CPU with small sizes: its rows, and params/FLOPs against the models."""
import importlib.util
import json
import os.path as osp

import pytest

from ghostsr_plugin.archs.ghost_edsr_arch import GhostEDSR

SCRIPT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'scripts', 'benchmark_shift.py')
FEAT, BLOCKS, H, W = 8, 2, 10, 12
SMALL = ['--device', 'cpu', '--sizes', '1x8x10x12', '--dtypes', 'float32', '--runs', '2', '--warmup', '1',
         '--copy-mib', '1', '--e2e-size', f'{H}x{W}', '--e2e-modes', 'eager', '--num-feat', str(FEAT),
         '--num-block', str(BLOCKS)]


def run(capsys, *args):
    """Run the script's main() with ``args``; returns (exit status, stdout, stderr)."""
    spec = importlib.util.spec_from_file_location('benchmark_shift', SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr('sys.argv', [SCRIPT, *args])
        try:
            script.main()
            status = 0
        except SystemExit as exit:
            status = exit.code
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.fixture(scope='module')
def json_path(tmp_path_factory):
    return tmp_path_factory.mktemp('bench') / 'shift.json'


@pytest.fixture
def measured(json_path, capsys):
    """The JSON of one small run (made by the first test that asks for it) and its path."""
    if not json_path.exists():
        status, out, err = run(capsys, *SMALL, '--json', str(json_path))
        assert status == 0, err
        assert 'GhostEDSR' in out and f'wrote {json_path}' in out
    with open(json_path) as f:
        return json.load(f), json_path


def test_every_op_impl_and_direction_is_timed(measured):
    data, _ = measured
    rows = {(r['op'], r['impl'], r['direction'], r['layout']) for r in data['ops']}
    impls = {'shift': 4, 'ghost eval': 4, 'ghost train': 3}  # (torch.roll cannot learn the shift)
    assert len(rows) == len(data['ops']) == 2 * 2 * sum(impls.values())  # (both directions, both layouts)
    assert {op: len({i for o, i, *_ in rows if o == op}) for op in impls} == impls
    for row in data['ops']:
        assert row['time_us'] > 0 and row['copy_fraction'] == pytest.approx(row['gb_per_s'] / data['copy_gb_per_s'])
        assert row['impl'] != 'kernel' or row['kernel_speedup'] == 1


def test_end_to_end_params_and_flops(measured):
    from basicsr.archs.edsr_arch import EDSR

    data, _ = measured
    edsr, ghost = data['end_to_end']
    common = dict(num_in_ch=3, num_out_ch=3, num_feat=FEAT, num_block=BLOCKS, upscale=2, res_scale=0.1)
    assert edsr['params'] == sum(p.numel() for p in EDSR(**common).parameters())
    assert ghost['params'] == sum(p.numel() for p in GhostEDSR(**common).parameters())
    # each of the 2 * BLOCKS body convs computes FEAT / 2 output channels instead of FEAT
    saved = 2 * BLOCKS * 2 * FEAT * (FEAT // 2) * 9 * H * W
    assert (edsr['gflops'] - ghost['gflops']) * 1e9 == pytest.approx(saved)
    assert ghost['latency_ratio'] == pytest.approx(ghost['latency_ms'] / edsr['latency_ms'])


def test_refuses_to_overwrite_and_bad_arguments(measured, capsys):
    _, path = measured
    status, _, err = run(capsys, *SMALL, '--json', str(path))
    assert status == 2 and 'exists; pass --overwrite' in err
    status, _, err = run(capsys, '--sizes', '1x8x10', '--json', str(path) + '.new')
    assert status == 2 and "--sizes: expected 4 positive integers joined by x, found '1x8x10'" in err
    status, _, err = run(capsys, '--dtypes', 'float32,float33', '--json', str(path) + '.new')
    assert status == 2 and "--dtypes: expected torch dtype names like float32,float16, found 'float32,float33'" in err
    status, _, err = run(capsys, '--layouts', 'nhwc', '--json', str(path) + '.new')
    assert status == 2 and "--layouts: expected some of nchw,channels_last, found 'nhwc'" in err
