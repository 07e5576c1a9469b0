"""scripts/gpu_reproduce.sh --dry-run: issue 22's GPU run, every step on the CPU with tiny sizes (CI runs it)."""
import json
import os
import os.path as osp
import subprocess
import sys

from .conftest import REPO_ROOT, SHARED_DATA

SCRIPT = osp.join(REPO_ROOT, 'scripts', 'gpu_reproduce.sh')
RUNS = ('EDSR-baseline_x2_gpu_scratch', 'GhostEDSR-baseline_x2_gpu_scratch', 'GhostEDSR-baseline_x2_gpu_cluster')


def reproduce(*args):
    env = {**os.environ, 'PYTHON': sys.executable, 'CUDA_VISIBLE_DEVICES': '', 'OMP_NUM_THREADS': '1'}
    return subprocess.run(['bash', SCRIPT, *args], capture_output=True, text=True, env=env, timeout=900)


def test_dry_run_trains_evaluates_and_ranks_the_three_models(tmp_path):
    work, out = tmp_path / 'work', tmp_path / 'out'
    shared = ['--shared', SHARED_DATA] if osp.isdir(SHARED_DATA) else []
    done = reproduce('--dry-run', '--work', str(work), '--out', str(out), *shared)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / 'reproduce.json').read_text())
    assert {name: step['status'] for name, step in summary['steps'].items()} == dict.fromkeys(
        ['data', 'plain', 'basicsr_plain', 'kernels', 'basicsr_ghost', 'ghost', 'cluster', 'evaluate', 'leaderboard'],
        'ok')
    assert summary['kernels'] == 'PyTorch reference: no CUDA GPU visible'
    assert summary['test_sets'] == (['Set14', 'Set5'] if shared else ['val'])  # (the demo's held-out photos)
    # every run did the plain run's iterations in all: the fine-tune the rest after its teacher checkpoint
    assert [summary['training'][r]['last_iter'] for r in ('plain', 'ghost', 'cluster')] == [6, 6, 2]
    assert all(summary['basicsr_speed'][r]['iterations_per_second'] > 0 for r in ('basicsr_plain', 'basicsr_ghost'))
    for name in RUNS:
        result = json.loads((out / f'{name}_x2.json').read_text())
        training = result['model']['training']
        assert training['name'] == name and training['amp'] == 'bf16' and training['seconds'] > 0
        assert set(result['sets']) == set(summary['test_sets'])
    targets = summary['targets']
    assert any(k.startswith('cluster-init Ghost - plain on') for k in targets)
    assert {'want', 'got', 'met'} <= set(targets['whole run <= 9 minutes'])
    leaderboard = (out / 'leaderboard.md').read_text()
    assert '## Training' in leaderboard and all(name in leaderboard for name in RUNS)
    log = (work / 'results' / 'gpu_reproduce' / 'plain.log').read_text()
    assert 'progress: iter 6/6' in log and 'Loaded' in log and 'InMemoryPairedImageDataset' in log

    again = reproduce('--dry-run', '--work', str(work), '--out', str(out))
    assert again.returncode == 2 and 'reproduce.json exists; pass --overwrite' in again.stderr
