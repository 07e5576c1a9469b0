"""scripts/gpu_check.sh --dry-run: the GPU check's steps on the CPU, with tiny sizes (CI runs it)."""
import json
import os
import os.path as osp
import subprocess
import sys

SCRIPT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'scripts', 'gpu_check.sh')


def gpu_check(*args):
    env = {**os.environ, 'PYTHON': sys.executable, 'CUDA_VISIBLE_DEVICES': ''}
    return subprocess.run(['bash', SCRIPT, *args], capture_output=True, text=True, env=env, timeout=600)


def test_dry_run_writes_every_step_as_json_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / 'gpu'
    done = gpu_check('--dry-run', '--out', str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    files = {name: json.loads((out / name).read_text()) for name in sorted(os.listdir(out))}
    assert set(files) == {'environment.json', 'tests.json', 'shift.json', 'summary.json'}
    for data in files.values():
        assert data['device'] and data['date']
    summary = files['summary.json']
    assert {name: step['status'] for name, step in summary['steps'].items()} == dict.fromkeys(
        ['environment', 'tests', 'shift'], 'ok')
    assert files['environment.json']['findings']['kernels'] == 'PyTorch reference: no CUDA GPU visible'
    shift = files['shift.json']
    assert {row['layout'] for row in shift['ops']} == {'nchw', 'channels_last'}
    assert {(row['dtype'], row['mode']) for row in shift['end_to_end']} == {('float32', 'eager'),
                                                                              ('float32', 'compiled')}
    # every target is reported, with the figure it was judged on
    assert any(key.startswith('ghost train backward float32 nchw') for key in summary['targets'])
    assert sum(key.startswith('GhostEDSR/EDSR latency') for key in summary['targets']) == 2

    again = gpu_check('--dry-run', '--out', str(out))
    assert again.returncode == 2 and 'already holds environment.json' in again.stderr
