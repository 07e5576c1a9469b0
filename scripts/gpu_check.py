"""The GPU check of issue 15: kernels, GPU tests, shift benchmark and end-to-end latency, as JSON.

Steps, each timed, each writing JSON (device name and date included) into one folder:
  environment.json  what `ghostsr doctor` finds, and the kernels' status (built and self-checked
                    here, with GHOSTSR_CUDA=1: a kernel that fails is an error, not a fallback)
  tests.json        the GPU tests (not the CPU emulation, which CI runs): exit status, last lines
  shift.json        scripts/benchmark_shift.py: the ops' GB/s against the device's copy bandwidth
                    (fp32/fp16/bf16, NCHW and channels_last), GhostEDSR-L x2 against EDSR-L x2 at
                    640 x 360 input (fp32/fp16, eager and torch.compile)
  summary.json      each step's status and seconds, and issue 15's targets: met or not
A step that fails is recorded and the next one still runs (GPU time comes in short loans: what
was measured is kept); the exit status is 1 if any failed. Sized to finish in 8 minutes on an
H100/H200. ``--dry-run`` runs the same steps on the CPU with tiny sizes (CI runs it; its
figures mean nothing).

Run it through scripts/gpu_check.sh, which first installs the wheels carried in .whl/.
"""
import argparse
import datetime
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FILES = ('environment.json', 'tests.json', 'shift.json', 'summary.json')
# issue 15's targets: the kernels' share of the copy bandwidth, and GhostEDSR-L's latency ratio
BANDWIDTH_TARGETS = {('shift', 'forward'): 0.85, ('ghost eval', 'forward'): 0.85, ('ghost train', 'backward'): 0.80}
LATENCY_RATIO_TARGET = 0.55
GPU_TESTS = '(cuda or gpu) and not emulat'  # (pytest -k: the tests that run on a GPU)

REAL = dict(
    tests_timeout=150,
    benchmark=['--sizes', '1x256x360x640,16x256x48x48', '--dtypes', 'float32,float16,bfloat16',
               '--e2e-dtypes', 'float32,float16', '--runs', '20', '--warmup', '5'],
    benchmark_timeout=300)
DRY = dict(
    tests_timeout=300,
    benchmark=['--device', 'cpu', '--sizes', '1x8x10x12', '--dtypes', 'float32,bfloat16', '--e2e-dtypes', 'float32',
               '--runs', '2', '--warmup', '1', '--copy-mib', '1', '--e2e-size', '10x12', '--num-feat', '8',
               '--num-block', '2', '--compile-backend', 'aot_eager'],
    benchmark_timeout=300)


def write_json(folder, name, data, common):
    with open(osp.join(folder, name), 'w') as f:
        json.dump({**common, **data}, f, indent=1)


def step_environment(dry_run):
    from ghostsr_plugin.commands import doctor

    found = dict(doctor.findings())
    if not dry_run and not found['kernels'].startswith('compiled kernels active'):
        raise RuntimeError(f"the CUDA kernels are not active: {found['kernels']}")
    return {'findings': found}


def step_tests(dry_run, settings):
    command = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-k', GPU_TESTS,
               'tests/test_cuda_kernels.py', 'tests/test_ops_library.py']
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=settings['tests_timeout'])
    lines = (done.stdout + done.stderr).strip().splitlines()
    result = {'command': ' '.join(command[1:]), 'exit_status': done.returncode, 'last_lines': lines[-15:]}
    if done.returncode not in (0, 5):  # (5: every test deselected or skipped, as on a CPU)
        raise RuntimeError(f'GPU tests failed: {lines[-1] if lines else done.returncode}')
    return result


def step_benchmark(folder, settings):
    path = osp.join(folder, 'shift.json')
    command = [sys.executable, osp.join('scripts', 'benchmark_shift.py'), *settings['benchmark'],
               '--layouts', 'nchw,channels_last', '--e2e-modes', 'eager,compiled', '--json', path, '--overwrite']
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=settings['benchmark_timeout'])
    print(done.stdout[-4000:], file=sys.stderr)
    if done.returncode:
        raise RuntimeError(f'benchmark_shift.py failed: {done.stderr.strip().splitlines()[-1:]}')
    with open(path) as f:
        return json.load(f)


def targets(shift):
    """Each of issue 15's targets against the figures: {target: {'want', 'got', 'met'}}."""
    found = {}
    for row in shift['ops']:
        want = BANDWIDTH_TARGETS.get((row['op'], row['direction']))
        if row['impl'] == 'kernel' and want and row['dtype'] in ('float32', 'float16'):
            key = f"{row['op']} {row['direction']} {row['dtype']} {row['layout']} {row['size']} >= {want:.0%} of copy"
            found[key] = {'want': want, 'got': row['copy_fraction'], 'met': row['copy_fraction'] >= want}
    for row in shift['end_to_end']:
        if 'latency_ratio' in row:
            key = f"GhostEDSR/EDSR latency {row['dtype']} {row['mode']} <= {LATENCY_RATIO_TARGET}"
            found[key] = {'want': LATENCY_RATIO_TARGET, 'got': row['latency_ratio'],
                          'met': row['latency_ratio'] <= LATENCY_RATIO_TARGET}
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dry-run', action='store_true', help='the same steps on the CPU, tiny sizes')
    parser.add_argument('--out', default=osp.join('benchmarks', 'results', 'gpu'), help='folder for the JSON files')
    parser.add_argument('--overwrite', action='store_true', help='replace JSON files a previous run left there')
    args = parser.parse_args()
    clashes = [name for name in FILES if osp.exists(osp.join(args.out, name))]
    if clashes and not args.overwrite:
        parser.exit(2, f'error: {args.out} already holds {", ".join(clashes)}; pass --overwrite to replace them\n')
    os.makedirs(args.out, exist_ok=True)
    if not args.dry_run:
        os.environ['GHOSTSR_CUDA'] = '1'  # (a kernel that fails is an error here, not a fallback)
    settings = DRY if args.dry_run else REAL

    import torch

    from ghostsr_plugin import cost

    if not args.dry_run and not torch.cuda.is_available():
        parser.exit(2, 'error: no CUDA GPU visible (use --dry-run to try the steps on the CPU)\n')
    device = torch.device('cpu' if args.dry_run else 'cuda')
    common = {'device': cost.device_name(device), 'date': datetime.datetime.now(datetime.timezone.utc).isoformat(),
              'dry_run': args.dry_run}
    steps, shift = {}, None
    for name, run in (('environment', lambda: step_environment(args.dry_run)),
                      ('tests', lambda: step_tests(args.dry_run, settings)),
                      ('shift', lambda: step_benchmark(args.out, settings))):
        begin = time.perf_counter()
        try:
            data = run()
            steps[name] = {'status': 'ok'}
        except Exception as error:  # noqa: BLE001  (recorded; the next step still runs)
            data, steps[name] = {'error': str(error)}, {'status': 'failed', 'error': str(error)}
        steps[name]['seconds'] = time.perf_counter() - begin
        print(f'{name}: {steps[name]["status"]} in {steps[name]["seconds"]:.0f} s', file=sys.stderr, flush=True)
        if name == 'shift' and 'error' not in data:
            shift = data
        else:
            write_json(args.out, f'{name}.json', data, common)
    summary = {'steps': steps, 'targets': targets(shift) if shift else {}}
    write_json(args.out, 'summary.json', summary, common)
    print(json.dumps(summary, indent=1))
    sys.exit(1 if any(step['status'] != 'ok' for step in steps.values()) else 0)


if __name__ == '__main__':
    main()
