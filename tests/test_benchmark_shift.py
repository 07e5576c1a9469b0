"""scripts/benchmark_shift.py on CPU with small sizes: its rows, the bytes each op moves, its refusals."""
import importlib.util
import json
import os.path as osp

import pytest

SCRIPT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'scripts', 'benchmark_shift.py')
N, C, H, W = 1, 8, 10, 12
SMALL = ['--device', 'cpu', '--sizes', f'{N}x{C}x{H}x{W}', '--dtypes', 'float32,bfloat16', '--runs', '2',
         '--warmup', '1']


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
        assert 'peak n/a (none (CPU))' in out and f'wrote {json_path}' in out
    with open(json_path) as f:
        return json.load(f), json_path


def test_every_op_impl_and_direction_is_timed_against_its_copy(measured):
    data, _ = measured
    rows = {(r['op'], r['impl'], r['direction'], r['layout'], r['dtype']) for r in data['ops']}
    assert len(rows) == len(data['ops']) == 3 * 3 * 2 * 2 * 2  # ops, impls, directions, layouts, dtypes
    assert {r['impl'] for r in data['ops']} == {'kernel', 'reference', 'depthwise'}
    assert 'end_to_end' not in data  # (scripts/benchmark_latency.py's)
    for row in data['ops']:
        assert row['time_us'] > 0 and row['copy_fraction'] == pytest.approx(row['gb_per_s'] / row['copy_gb_per_s'])
        assert row['copy_gb_per_s'] == max(row['copy_memcpy_gb_per_s'], row['copy_kernel_gb_per_s'])
        assert row['impl'] != 'kernel' or row['kernel_speedup'] == 1
    assert data['copy_gb_per_s'] == max(r['copy_gb_per_s'] for r in data['ops'])


def test_bytes_are_what_each_op_must_move(measured):
    """Each input read once, each output written once: x (C channels) in and out for the shift;
    x1 (C/2) in, C out for the Ghost op; its training backward also reads x1."""
    data, _ = measured
    plane = N * H * W
    want = {('shift', 'forward'): 2 * C, ('shift', 'backward'): 2 * C,
            ('ghost eval', 'forward'): C // 2 + C, ('ghost eval', 'backward'): C // 2 + C,
            ('ghost train', 'forward'): C // 2 + C, ('ghost train', 'backward'): 2 * (C // 2) + C}
    for row in data['ops']:
        element = 4 if row['dtype'] == 'float32' else 2
        assert row['bytes'] == want[row['op'], row['direction']] * plane * element


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
