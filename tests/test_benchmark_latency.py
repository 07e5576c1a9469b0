"""scripts/benchmark_latency.py on the CPU with tiny sizes: its rows, ratios and costs against the models themselves."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from ghostsr_plugin.archs.ghost_edsr_arch import GhostEDSR

SCRIPT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'scripts', 'benchmark_latency.py')
FEAT, BLOCKS, H, W = 8, 2, 10, 12
TINY = ['--device', 'cpu', '--size', str(H), str(W), '--num-feat', str(FEAT), '--num-block', str(BLOCKS),
        '--layer-size', '8', '16', '16', '--dtypes', 'float32', '--layouts', 'channels_last', '--runs', '2',
        '--warmup', '1', '--compile-backend', 'aot_eager']


def benchmark(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def measured(tmp_path_factory):
    path = tmp_path_factory.mktemp('latency') / 'latency.json'
    done = benchmark(*TINY, '--json', str(path))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(path.read_text()), path


def test_every_part_mode_and_layout_is_timed_side_by_side(measured):
    data, _ = measured
    rows = data['rows']
    assert [(r['part'], r['mode'], r['layout']) for r in rows] == [
        (part, mode, 'channels_last') for part in ('layer', 'model') for mode in ('eager', 'compiled')]
    for row in rows:
        assert 'error' not in row, row
        assert set(row['ms']) == ({'plain', 'ghost', 'ghost eval'} if row['mode'] == 'compiled' else {'plain', 'ghost'})
        assert row['ratio'] == pytest.approx(row['ms']['ghost'] / row['ms']['plain'])
        if row['mode'] == 'compiled':
            assert row['eval_over_frozen'] == pytest.approx(row['ms']['ghost eval'] / row['ms']['ghost'])
            assert row['max_difference'] == 0  # eval mode and frozen: the same shifts, the same outputs
            assert min(row['compile_s'].values()) > 0


def test_model_costs_are_the_models(measured):
    from basicsr.archs.edsr_arch import EDSR

    data, _ = measured
    common = dict(num_in_ch=3, num_out_ch=3, num_feat=FEAT, num_block=BLOCKS, upscale=2, res_scale=0.1)
    costs = data['model']['cost']
    assert costs['plain']['params'] == sum(p.numel() for p in EDSR(**common).parameters())
    assert costs['ghost']['params'] == sum(p.numel() for p in GhostEDSR(**common, deploy=True).parameters())  # frozen
    # each of the 2 * BLOCKS body convs computes FEAT / 2 output channels instead of FEAT
    saved = 2 * BLOCKS * 2 * FEAT * (FEAT // 2) * 9 * H * W
    assert (costs['plain']['gflops'] - costs['ghost']['gflops']) * 1e9 == pytest.approx(saved)


def test_refuses_to_overwrite_and_bad_sizes(measured, tmp_path):
    _, path = measured
    done = benchmark(*TINY, '--json', str(path))
    assert done.returncode == 2 and 'exists; pass --overwrite' in done.stderr
    done = benchmark('--device', 'cpu', '--layer-size', '7', '16', '16', '--json', str(tmp_path / 'x.json'))
    assert done.returncode == 2 and '--layer-size: C must be even' in done.stderr and not (tmp_path / 'x.json').exists()
