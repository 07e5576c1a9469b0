"""scripts/gpu_check.sh --dry-run (the GPU check's steps on the CPU, tiny sizes; CI runs it), its tables, its limits."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest

SCRIPTS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'scripts')


def gpu_check(*args):
    env = {**os.environ, 'PYTHON': sys.executable, 'CUDA_VISIBLE_DEVICES': ''}
    return subprocess.run(['bash', osp.join(SCRIPTS, 'gpu_check.sh'), *args], capture_output=True, text=True,
                          env=env, timeout=900)


def script():
    spec = importlib.util.spec_from_file_location('gpu_check', osp.join(SCRIPTS, 'gpu_check.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('gpu_check') / 'gpu'
    done = gpu_check('--dry-run', '--out', str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_dry_run_writes_every_step_as_json_and_lists_every_target(dry_run):
    files = {name: json.loads((dry_run / name).read_text()) for name in sorted(os.listdir(dry_run))}
    assert set(files) == set(script().FILES)
    summary = files['summary.json']
    assert {name: step['status'] for name, step in summary['steps'].items()} == dict.fromkeys(script().STEPS, 'ok')
    assert summary['device'] and summary['date'] and summary['dry_run']
    assert files['environment.json']['findings']['kernels'] == 'PyTorch reference: no CUDA GPU visible'
    assert files['environment.json']['build_and_load_seconds'] >= 0
    assert files['tests.json']['tests'], 'the GPU tests are collected (and skip on a CPU)'
    assert {row['layout'] for row in files['ops.json']['ops']} == {'nchw', 'channels_last'}
    rows = files['latency_eager.json']['rows'] + files['latency_compiled.json']['rows']
    assert {(r['part'], r['mode'], r['dtype']) for r in rows} == {
        ('layer', 'eager', 'float16'), ('layer', 'compiled', 'float16'), ('model', 'eager', 'float32'),
        ('model', 'eager', 'float16'), ('model', 'compiled', 'float16'), ('model', 'compiled', 'bfloat16')}
    assert all('error' not in r and r['max_difference'] == 0 for r in rows if r['mode'] == 'compiled')
    # every target of issue 21 is reported with the figure it was judged on
    targets = summary['targets']
    ops = {(op, direction) for op, direction in script().COPY_FRACTION}
    for op, direction in ops:
        for dtype in ('float32', 'float16'):
            for layout in ('nchw', 'channels_last'):
                case = f'{op} {direction} {dtype} {layout} 1x8x10x12: kernel'
                assert targets[f'{case} >= {script().COPY_FRACTION[op, direction]:.0%} of copy']['got'] > 0
                assert targets[f'{case} no slower than the reference and cuDNN depthwise']['got'] > 0
    latency = [name for name in targets if name.startswith('GhostEDSR-L / EDSR-L')]
    assert len(latency) == 4 and all(targets[name]['got'] > 0 for name in latency)
    assert targets['Ghost layer / conv latency, eager float16 (faster layout) <= 0.6']['got'] > 0
    assert sum(name.startswith('GhostEDSR-L eval mode / frozen') for name in targets) == 2
    assert targets['ghostsr upscale in float16 within 1 grey level of float32 (demo images)']['met'] is None  # no GPU


def test_dry_run_refuses_to_overwrite(dry_run):
    again = gpu_check('--dry-run', '--out', str(dry_run))
    assert again.returncode == 2 and 'already holds environment.json' in again.stderr


def test_tables_go_into_a_document_between_their_markers(dry_run, tmp_path):
    module = script()
    doc = tmp_path / 'doc.md'
    doc.write_text(f'# GPU\n\n{module.BEGIN}\nold\n{module.END}\nafter\n')
    for _ in range(2):  # replaced, not appended
        done = subprocess.run([sys.executable, osp.join(SCRIPTS, 'gpu_check.py'), '--tables', str(dry_run),
                               '--into', str(doc)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    text = doc.read_text()
    assert text.startswith(f'# GPU\n\n{module.BEGIN}\n') and text.endswith(f'{module.END}\nafter\n')
    assert text.count(module.BEGIN) == 1 and '(dry run: figures mean nothing)' in text and 'old' not in text
    assert '| 1x8x10x12 | float16 | channels_last | ghost train | backward |' in text
    assert '| model | compiled | bfloat16 | nchw |' in text
    assert '| ghostsr upscale in float16 within 1 grey level of float32 (demo images) | skipped: no GPU | not ' \
        'measured |' in text


def test_a_step_past_its_limit_is_stopped_and_reported():
    begin = time.monotonic()
    status, timed_out, output = script().run_limited([sys.executable, '-c', 'import time; time.sleep(60)'], 1)
    assert timed_out and status != 0 and time.monotonic() - begin < 30


def test_a_crashing_test_is_reported_and_the_others_still_run(tmp_path):
    pytest.importorskip('xdist')
    (tmp_path / 'test_crash.py').write_text(
        'import os, signal\n\n'
        'def test_a(): pass\n\n'
        'def test_crash(): os.kill(os.getpid(), signal.SIGSEGV)\n\n'
        'def test_b(): pass\n\n'
        'def test_c(): assert False\n')
    module, junit = script(), tmp_path / 'report.xml'
    command = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-n', '2', f'--junitxml={junit}',
               str(tmp_path / 'test_crash.py')]
    status, _, _ = module.run_limited(command, 120)
    record = module.tests_record(str(junit), status, command)
    assert record['counts'] == {'passed': 2, 'crashed': 1, 'failure': 1}, record
    crashed = [test_id for test_id, outcome in record['tests'].items() if outcome.startswith('crashed')]
    assert len(crashed) == 1 and crashed[0].endswith('test_crash.py::test_crash'), crashed

