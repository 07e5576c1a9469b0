"""Issue 22: the paper's comparison at EDSR-baseline size (64 features, 16 blocks, x2) in one GPU run of 9 minutes.

Steps, each timed and recorded; a step that fails is recorded and the steps that do not need it still run:
  kernels      `ghostsr doctor` in the background: builds the CUDA kernels (about 93 s) while the CPU
               prepares the data and the plain model, which needs none of them, trains
  data         training pairs: datasets/DIV2K's HR and x2 LR images when present, else `ghostsr
               prepare-demo` (the demo photos and every HR photo under the shared data's train/); test
               sets: Set5 and Set14 from the shared data (`ghostsr prepare-benchmarks`) and every set
               already prepared under datasets/benchmark (B100, Urban100)
  plain        EDSR-baseline from scratch (FastSRModel: bf16, channels_last, torch.compile, the pairs held
               in memory), --iters iterations; its checkpoint at --teacher_iters is kept
  basicsr_plain, basicsr_ghost  BasicSR's own speed for the same two networks: fp32, NCHW, eager,
               PairedImageDataset read from disk (SRModel; GhostSRModel without its fast options), read
               from the timestamps of their log lines over a short run
  ghost        GhostEDSR-baseline from scratch, the plain run's iterations and options
  cluster      GhostEDSR-baseline clustered from the plain model at --teacher_iters (ghost_init: cluster,
               orientation fit), then fine-tuned for the rest of the plain run's iterations
  evaluate     `ghostsr benchmark` of bicubic and the three on every test set, x2, Y channel: one JSON each
               in --out, with its run's training summary (device, iterations, wall time, it/s)
  leaderboard  `ghostsr leaderboard` of those JSONs, into --out
and last reproduce.json in --out: every step's status and seconds, the figures, issue 22's targets met or not.
Each training run has a time budget (from what is left of --minutes); one that would pass it stops
there and is evaluated there, as its training summary says. The runs print a progress line a minute.

--dry-run runs the same steps on the CPU with a tiny network, a few iterations and no torch.compile (CI
runs it; its figures mean nothing). Run it through scripts/gpu_reproduce.sh, which installs the wheels
carried in .whl/ first. On this workplace's GPU machine: see docs/training.md (the device tool's `run`
command, with its carry list and timeout, and what to copy into the checkout first).
"""
import argparse
import json
import math
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCALE = 2
NAMES = {'plain': 'EDSR-baseline_x2_gpu_scratch', 'ghost': 'GhostEDSR-baseline_x2_gpu_scratch',
         'cluster': 'GhostEDSR-baseline_x2_gpu_cluster', 'basicsr_plain': 'EDSR-baseline_x2_basicsr_speed',
         'basicsr_ghost': 'GhostEDSR-baseline_x2_basicsr_speed'}
EDSR = {'num_in_ch': 3, 'num_out_ch': 3, 'upscale': SCALE, 'res_scale': 1, 'img_range': 255.,
        'rgb_mean': [0.4488, 0.4371, 0.4040]}
TARGETS = {'speedup_over_basicsr': 3.0, 'data_wait_fraction': 0.10, 'ghost_plain_iteration_time': 0.75,
           'cluster_minus_plain_db': -0.10, 'cluster_minus_scratch_db': 0.0, 'total_minutes': 9.0}
REAL = dict(  # the GPU run: EDSR-baseline x2, batch 16, 48 x 48 LR patches
    device='cuda', num_gpu=1, num_feat=64, num_block=16, batch=16, gt_size=96, iters=16000, teacher_iters=10000,
    lr=5e-4, workers=min(8, os.cpu_count() or 1), enlarge=100, print_freq=1000, fused_adam=True,
    fast={'amp': 'bf16', 'channels_last': True, 'compile': True, 'progress_seconds': 60},
    loader={'prefetch_mode': 'cuda', 'pin_memory': True}, caps={'plain': 130, 'ghost': 110, 'cluster': 80},
    probe_seconds=25, probe_iters=100000, probe_print=200, min_run=60, eval_reserve=50, benchmark=[])
DRY = dict(  # the same steps on the CPU: a tiny network, a few iterations, no compiling
    device='cpu', num_gpu=0, num_feat=16, num_block=2, batch=4, gt_size=32, iters=6, teacher_iters=4, lr=5e-4,
    workers=1, enlarge=1, print_freq=1, fused_adam=False, fast={'amp': 'bf16', 'channels_last': True,
                                                               'progress_seconds': 1e-6},
    loader={'prefetch_mode': None}, caps={'plain': 120, 'ghost': 120, 'cluster': 120}, probe_seconds=120,
    probe_iters=6, probe_print=2, min_run=0, eval_reserve=0,
    benchmark=['--warmup', '0', '--repeats', '1', '--latency_size', '16', '16'])
LATER = {'plain': (2, 2), 'ghost': (1, 0), 'cluster': (0, 0)}  # (training runs, speed runs) after each run
RUN_OVERHEAD = 30  # seconds of a run outside its budget: start, data loading, saving
LOG_LINE = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO: \[.*iter:\s*([\d,]+),.*time \(data\): '
                      r'([\d.]+) \(([\d.]+)\)')


def python_command(entry, *args):
    """A `basicsr` or `ghostsr` command through this interpreter (the GPU machine has no console scripts)."""
    code = f'import sys; from ghostsr_plugin.cli import {entry}_main; {entry}_main(sys.argv[1:])'
    return [sys.executable, '-c', code, *args]


class Runner:
    """Runs the steps in the work folder, logging each command's output, recording each step."""

    def __init__(self, args, settings):
        self.args, self.settings, self.start = args, settings, time.monotonic()
        self.steps, self.logs = {}, osp.join(args.work, 'results', 'gpu_reproduce')
        os.makedirs(self.logs, exist_ok=True)
        self.env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])),
                    'PYTHONUNBUFFERED': '1'}
        if args.dry_run:
            self.env['CUDA_VISIBLE_DEVICES'] = ''

    def elapsed(self):
        return time.monotonic() - self.start

    def say(self, message):
        print(f'[{self.elapsed():5.0f} s] {message}', flush=True)

    def step(self, name, action, *needs):
        """Run ``action()`` as step ``name`` unless a step it needs failed; its result, or None."""
        missing = [n for n in needs if self.steps.get(n, {}).get('status') != 'ok']
        if missing:
            self.steps[name] = {'status': 'skipped', 'error': f'needs {", ".join(missing)}', 'seconds': 0}
            self.say(f'{name}: skipped (needs {", ".join(missing)})')
            return None
        begin = time.monotonic()
        try:
            result = action()
            self.steps[name] = {'status': 'ok'}
        except Exception as error:  # noqa: BLE001  (recorded; the next steps still run)
            result, self.steps[name] = None, {'status': 'failed', 'error': str(error)}
        self.steps[name]['seconds'] = round(time.monotonic() - begin, 1)
        error = f": {self.steps[name]['error']}" if 'error' in self.steps[name] else ''
        self.say(f"{name}: {self.steps[name]['status']} in {self.steps[name]['seconds']:.0f} s{error}")
        return result

    def start_command(self, name, command, env=None):
        """Start ``command`` in the work folder, its output into ``<logs>/<name>.log``; progress lines echoed."""
        log = open(osp.join(self.logs, f'{name}.log'), 'w')
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(command, cwd=self.args.work, env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

        def copy():
            for line in proc.stdout:
                log.write(line)
                if 'progress:' in line or 'Time budget' in line:
                    self.say(f'{name}: {line.split("INFO: ", 1)[-1].strip()}')
            log.close()

        proc.copier = threading.Thread(target=copy, daemon=True)
        proc.copier.start()
        proc.log_path = log.name
        return proc

    def finish(self, name, proc, timeout=None, stop_is_fine=False):
        """Wait for ``proc`` (stopping its process group after ``timeout`` s); fails naming its log's last line."""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if not stop_is_fine:
                raise RuntimeError(f'{name} took over {timeout:.0f} s; see {proc.log_path}') from None
        proc.copier.join()
        if proc.returncode and not (stop_is_fine and proc.returncode == -signal.SIGTERM):
            with open(proc.log_path) as f:
                last = [line.strip() for line in f if line.strip()][-1:]
            raise RuntimeError(f'{name} exited with {proc.returncode} ({last[0] if last else "no output"}); '
                               f'see {proc.log_path}')

    def run(self, name, command, timeout=None, stop_is_fine=False):
        self.finish(name, self.start_command(name, command), timeout, stop_is_fine)

    def budget(self, run):
        """The run's time budget: its cap, or what is left of --minutes once the later steps have their share."""
        runs, probes = LATER[run]
        s = self.settings
        left = (self.args.minutes * 60 - self.elapsed() - runs * s['min_run'] - probes * (s['probe_seconds'] + 15)
                - s['eval_reserve'] - RUN_OVERHEAD)
        return max(min(s['caps'][run], left), 10)


def kernels(runner, proc):
    """What `ghostsr doctor` found for the kernels: compiled and self-checked, or why not."""
    runner.finish('kernels', proc, timeout=600)
    with open(proc.log_path) as f:
        return next((line.split(':', 1)[1].strip() for line in f if line.startswith('kernels:')), None)


def write_options(runner, name, opt):
    path = osp.join(runner.logs, f'{name}.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path


def prepare_data(runner):
    """The training pairs (DIV2K when present, else the demo set with the shared photos) and the test sets."""
    data = training_data(runner)
    data['test_root'], data['test_sets'] = test_sets(runner, data)
    return data


def training_data(runner):
    div2k = osp.join(runner.args.work, 'datasets', 'DIV2K')
    hr, lr = osp.join(div2k, 'DIV2K_train_HR'), osp.join(div2k, 'DIV2K_train_LR_bicubic', f'X{SCALE}')
    if osp.isdir(hr) and osp.isdir(lr):
        sub = (osp.join(div2k, 'DIV2K_train_HR_sub'), osp.join(div2k, 'DIV2K_train_LR_bicubic', f'X{SCALE}_sub'))
        return {'name': 'DIV2K', 'memory': (hr, lr), 'disk': sub if all(map(osp.isdir, sub)) else (hr, lr)}
    demo = osp.join(runner.args.work, 'datasets', 'demo')
    extra = osp.join(runner.args.shared, 'train') if runner.args.shared and not runner.args.dry_run else os.devnull
    runner.run('prepare_demo', python_command('ghostsr', 'prepare-demo', '--out', demo, '--scale', str(SCALE),
                                              '--extra', extra))
    pairs = (osp.join(demo, 'train', 'HR_sub'), osp.join(demo, 'train', 'LR_bicubic', f'X{SCALE}_sub'))
    return {'name': 'demo' + (' + shared train photos' if extra != os.devnull else ''), 'memory': pairs,
            'disk': pairs, 'demo': demo}


def test_sets(runner, data):
    """``(root, [sets])`` to evaluate on: Set5/Set14 from the shared data and all under datasets/benchmark."""
    root = osp.join(runner.args.work, 'datasets', 'benchmark')
    shared = [osp.join(runner.args.shared, 'benchmark', s, 'HR') for s in ('Set5', 'Set14')] \
        if runner.args.shared else []
    todo = [f for f in shared if osp.isdir(f) and not osp.isdir(osp.join(root, osp.basename(osp.dirname(f)),
                                                                        f'GTmod{SCALE}'))]
    if todo:
        runner.run('prepare_benchmarks', python_command('ghostsr', 'prepare-benchmarks', *todo, '--out', root,
                                                        '--scales', str(SCALE)))
    sets = sorted(s for s in (os.listdir(root) if osp.isdir(root) else [])
                  if all(osp.isdir(osp.join(root, s, f'{k}{SCALE}')) for k in ('GTmod', 'LRbicx')))
    if sets:
        return root, sets
    if 'demo' in data:  # no benchmark set at all (a clone without ../shared): the demo's held-out photos
        return data['demo'], ['val']
    raise RuntimeError(f'no test set: none under {root} and no shared data (--shared)')


def options(runner, run, data, iters, budget=None, teacher=None, lr=None):
    """A run's BasicSR options (fast runs: the in-memory dataset and the fast options; speed probes: BasicSR's)."""
    s = runner.settings
    probe = run.startswith('basicsr_')
    ghost = 'ghost' in run or run == 'cluster'
    gt, lq = data['disk' if probe else 'memory']
    network = {'type': 'GhostEDSR' if ghost else 'EDSR', **EDSR, 'num_feat': s['num_feat'], 'num_block': s['num_block']}
    train_set = {'name': data['name'], 'type': 'PairedImageDataset' if probe else 'InMemoryPairedImageDataset',
                 'dataroot_gt': gt, 'dataroot_lq': lq, 'io_backend': {'type': 'disk'}, 'gt_size': s['gt_size'],
                 'use_hflip': True, 'use_rot': True, 'use_shuffle': True, 'batch_size_per_gpu': s['batch'],
                 'dataset_enlarge_ratio': s['enlarge']}
    if probe:  # BasicSR's own loader settings (its train_EDSR_Mx2.yml)
        train_set.update(num_worker_per_gpu=6 if not runner.args.dry_run else 1, prefetch_mode=None)
    else:
        train_set.update(num_worker_per_gpu=s['workers'], persistent_workers=True, **s['loader'])
    lr = lr or s['lr']
    optim = {'type': 'Adam', 'lr': lr, 'weight_decay': 0, 'betas': [0.9, 0.99]}
    train = {'ema_decay': 0.999, 'optim_g': {**optim, **({'fused': True} if s['fused_adam'] and not probe else {})},
             'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [iters], 'restart_weights': [1],
                           'eta_min': 1e-6},
             'total_iter': iters, 'warmup_iter': -1,
             'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}}
    if not probe:
        train.update(s['fast'], time_budget=budget)
    if ghost:  # the official schedule's 0.97 per 1000 of 300k iterations, compressed to this run
        train['temperature_schedule'] = {'type': 'exponential', 'base': 0.97, 'unit': 'iter',
                                         'period': max(iters // 300, 1)}
    opt = {'name': NAMES[run], 'model_type': 'SRModel' if run == 'basicsr_plain' else (
        'GhostSRModel' if ghost else 'FastSRModel'), 'scale': SCALE, 'num_gpu': s['num_gpu'], 'manual_seed': 0,
           'datasets': {'train': train_set}, 'network_g': network,
           'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None}, 'train': train,
           'logger': {'print_freq': s['probe_print'] if probe else s['print_freq'],
                      'save_checkpoint_freq': runner.args.teacher_iters if run == 'plain' else iters,
                      'use_tb_logger': False}}
    if teacher:
        opt['ghost_init'] = {'network': {**network, 'type': 'EDSR'}, 'checkpoint': teacher, 'param_key': 'params_ema',
                             'method': 'cluster', 'seed': 0, 'orientation': 'fit'}
    return write_options(runner, run, opt)


def experiment(runner, run):
    return osp.join(runner.args.work, 'experiments', NAMES[run])


def train(runner, run, data, iters, **kwargs):
    """A fast training run with its time budget; its training summary."""
    budget = runner.budget(run)
    path = options(runner, run, data, iters, budget=budget, **kwargs)
    runner.say(f'{run}: {iters:,} iterations, time budget {budget:.0f} s')
    runner.run(run, python_command('basicsr', 'train', '-opt', path), timeout=budget + 300)
    with open(osp.join(experiment(runner, run), 'training.json')) as f:
        return {**json.load(f), 'option_file': path}


def basicsr_speed(runner, run, data):
    """BasicSR's own it/s and data share for ``run``'s network, from its log lines' timestamps over a short run."""
    s = runner.settings
    path = options(runner, run, data, s['probe_iters'])
    runner.run(run, python_command('basicsr', 'train', '-opt', path), timeout=s['probe_seconds'], stop_is_fine=True)
    with open(osp.join(runner.logs, f'{run}.log')) as f:
        points = [m.groups() for m in map(LOG_LINE.match, f) if m]
    if len(points) < 2:
        raise RuntimeError(f'{run}: fewer than two log lines within {s["probe_seconds"]} s; see {runner.logs}')
    (t0, i0, _, _), (t1, i1, iter_time, data_time) = points[len(points) // 2 - 1 if len(points) > 2 else 0], points[-1]
    seconds = (datetime.strptime(t1, '%Y-%m-%d %H:%M:%S,%f') - datetime.strptime(t0, '%Y-%m-%d %H:%M:%S,%f'))
    iterations = int(i1.replace(',', '')) - int(i0.replace(',', ''))
    return {'iterations_per_second': iterations / seconds.total_seconds() if seconds.total_seconds() else None,
            'data_wait_fraction': float(data_time) / float(iter_time) if float(iter_time) else None,
            'measured_over_iterations': [int(i0.replace(',', '')), int(i1.replace(',', ''))], 'option_file': path}


def cosine_lr(lr, eta_min, iteration, period):
    """CosineAnnealingRestartLR's rate at ``iteration`` of ``period``."""
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * iteration / period)) / 2


def evaluate(runner, data, runs):
    """PSNR of each run's latest weights and of bicubic on every test set, through `ghostsr benchmark`."""
    names = ['bicubic', *(NAMES[r] for r in runs)]
    runner.run('evaluate', python_command(
        'ghostsr', 'benchmark', 'bicubic', *(osp.join(runner.logs, f'{r}.yml') for r in runs),
        '--data', data['test_root'], '--sets', *data['test_sets'], '--scales', str(SCALE), '--out', runner.args.out,
        '--baseline', NAMES['plain'], '--device', runner.settings['device'], '--fp32', '--overwrite',  # (PSNR: fp32)
        *runner.settings['benchmark']))
    results = {}
    for name in names:
        with open(osp.join(runner.args.out, f'{name}_x{SCALE}.json')) as f:
            results[name] = {s: r['psnr'] for s, r in json.load(f)['sets'].items()}
    return results


def targets(runner, trained, speeds, psnr):
    """Each of issue 22's targets against what was measured: {target: {'want', 'got', 'met'}}."""
    found = {}

    def check(key, want, got, at_least):
        if got is not None:
            found[key] = {'want': want, 'got': got, 'met': got >= want if at_least else got <= want}

    for run in ('plain', 'ghost'):
        fast, base = trained.get(run) or {}, speeds.get(f'basicsr_{run}') or {}
        if fast.get('steady_iterations_per_second') and base.get('iterations_per_second'):
            check(f'{run} it/s over BasicSR fp32 NCHW eager >= {TARGETS["speedup_over_basicsr"]}x',
                  TARGETS['speedup_over_basicsr'],
                  fast['steady_iterations_per_second'] / base['iterations_per_second'], True)
        check(f'{run} time (data) share <= {TARGETS["data_wait_fraction"]:.0%}', TARGETS['data_wait_fraction'],
              fast.get('data_wait_fraction'), False)
    rates = [(trained.get(r) or {}).get('steady_iterations_per_second') for r in ('plain', 'ghost')]
    if all(rates):
        check(f'Ghost/plain iteration time <= {TARGETS["ghost_plain_iteration_time"]}',
              TARGETS['ghost_plain_iteration_time'], rates[0] / rates[1], False)
    cluster, plain, scratch = (psnr.get(NAMES[r]) or {} for r in ('cluster', 'plain', 'ghost'))
    for test_set in cluster:
        if test_set in plain:
            check(f'cluster-init Ghost - plain on {test_set} >= {TARGETS["cluster_minus_plain_db"]} dB',
                  TARGETS['cluster_minus_plain_db'], cluster[test_set] - plain[test_set], True)
        if test_set in scratch:
            check(f'cluster-init Ghost - scratch Ghost on {test_set} > 0 dB', TARGETS['cluster_minus_scratch_db'],
                  cluster[test_set] - scratch[test_set], True)
    check(f'whole run <= {TARGETS["total_minutes"]:g} minutes', TARGETS['total_minutes'], runner.elapsed() / 60, False)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dry-run', action='store_true', help='the same steps on the CPU, tiny sizes')
    parser.add_argument('--out', help='folder for the result JSONs, the leaderboard and reproduce.json (default: '
                        'benchmarks/results/gpu/reproduce; dry run: out/ in --work)')
    parser.add_argument('--work', help='where the runs live: datasets/, experiments/, results/ (default: the '
                        'repository; dry run: results/gpu_reproduce_dry in it, apart from the demo\'s data)')
    parser.add_argument('--shared', help='the shared data folder with train/ and benchmark/ (default: '
                        '../shared/data beside the repository, else shared/data in it, if either exists)')
    parser.add_argument('--iters', type=int, help='iterations of every run (default: 16,000; dry run 6)')
    parser.add_argument('--teacher_iters', type=int, help='the plain checkpoint the clustering starts from '
                        '(default: 10,000; dry run 4)')
    parser.add_argument('--minutes', type=float, default=TARGETS['total_minutes'],
                        help='the whole run\'s time, which the runs\' budgets are cut to (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true', help='replace the results a previous run left in --out')
    args = parser.parse_args()
    settings = DRY if args.dry_run else REAL
    args.iters = args.iters or settings['iters']
    args.teacher_iters = args.teacher_iters or settings['teacher_iters']
    if not 0 < args.teacher_iters < args.iters:
        parser.exit(2, f'error: --teacher_iters must be between 0 and --iters ({args.iters}), found '
                       f'{args.teacher_iters}\n')
    args.work = osp.abspath(args.work or (osp.join(REPO, 'results', 'gpu_reproduce_dry') if args.dry_run else REPO))
    args.out = osp.abspath(args.out or (osp.join(args.work, 'out') if args.dry_run else
                                        osp.join(REPO, 'benchmarks', 'results', 'gpu', 'reproduce')))
    if args.shared is None:
        args.shared = next((p for p in (osp.join(REPO, '..', 'shared', 'data'), osp.join(REPO, 'shared', 'data'))
                            if osp.isdir(p)), None)
    summary_path = osp.join(args.out, 'reproduce.json')
    if osp.exists(summary_path) and not args.overwrite:
        parser.exit(2, f'error: {summary_path} exists; pass --overwrite to replace the results in {args.out}\n')
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            parser.exit(2, 'error: no CUDA GPU visible (use --dry-run to try the steps on the CPU)\n')
    os.makedirs(args.out, exist_ok=True)

    runner = Runner(args, settings)
    doctor = runner.start_command('kernels', python_command('ghostsr', 'doctor'),
                                  env={} if args.dry_run else {'GHOSTSR_CUDA': '1'})
    data = runner.step('data', lambda: prepare_data(runner))
    trained, speeds = {}, {}
    trained['plain'] = runner.step('plain', lambda: train(runner, 'plain', data, args.iters), 'data')
    speeds['basicsr_plain'] = runner.step('basicsr_plain', lambda: basicsr_speed(runner, 'basicsr_plain', data),
                                          'data')
    kernel_status = runner.step('kernels', lambda: kernels(runner, doctor))
    speeds['basicsr_ghost'] = runner.step('basicsr_ghost', lambda: basicsr_speed(runner, 'basicsr_ghost', data),
                                          'data')
    done = (trained['plain'] or {}).get('last_iter') or args.iters  # a plain run stopped early sets the length
    trained['ghost'] = runner.step('ghost', lambda: train(runner, 'ghost', data, done), 'data')
    teacher = osp.join(experiment(runner, 'plain'), 'models', f'net_g_{args.teacher_iters}.pth')
    fine_tune_lr = cosine_lr(settings['lr'], 1e-6, args.teacher_iters, args.iters)
    trained['cluster'] = runner.step('cluster', lambda: train(
        runner, 'cluster', data, max(done - args.teacher_iters, 1), teacher=teacher, lr=fine_tune_lr), 'plain')
    psnr = runner.step('evaluate', lambda: evaluate(runner, data, [r for r in trained if trained[r]]), 'data') or {}
    runner.step('leaderboard', lambda: runner.run('leaderboard', python_command(
        'ghostsr', 'leaderboard', args.out, '--out', args.out, '--overwrite')), 'evaluate')

    summary = {'format': 'ghostsr-reproduce/1', 'dry_run': args.dry_run, 'date': datetime.now(
        timezone.utc).isoformat(timespec='seconds'), 'device': next((t['device'] for t in trained.values() if t), None),
        'seconds': round(runner.elapsed(), 1), 'data': (data or {}).get('name'),
        'test_sets': (data or {}).get('test_sets'), 'kernels': kernel_status,
        'iterations': {'planned': args.iters, 'teacher': args.teacher_iters, 'run': done},
        'steps': runner.steps, 'training': trained, 'basicsr_speed': speeds, 'psnr': psnr,
        'targets': targets(runner, trained, speeds, psnr)}
    with open(summary_path, 'w') as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({'steps': {k: v['status'] for k, v in runner.steps.items()}, 'kernels': kernel_status,
                      'iterations': summary['iterations'], 'psnr': psnr, 'targets': summary['targets']}, indent=1))
    sys.exit(1 if any(step['status'] != 'ok' for step in runner.steps.values()) else 0)


if __name__ == '__main__':
    main()
