"""The learned-shift ablation (issue 16): option files x seeds through `basicsr train`, then `ghostsr benchmark`.

Developer tool. ``run`` trains each config (a name under options/ablation/ or an option
file) at each seed, one thread per run and at most two runs at once, as
``basicsr train -opt FILE --force_yml manual_seed=S name=ablation_<config>_s<S>``. It then
evaluates on prepared benchmark sets (``ghostsr benchmark --data``, Set5 and Set14 by
default; ghostsr prepare-benchmarks) the model right after initialization (configs with
``ghost_init``: ``ghostsr cluster-init --seed S``, the model the training run starts from), the
checkpoint at each of ``--eval_iters`` that the run saved, and the final one. Each run
writes ``<results>/<config>_s<S>.json`` with the PSNR/SSIM of every stage, the training
time and how many Ghost layers' argmax orientation moved during training (the line
GhostSRModel logs at the end). Existing JSONs are kept unless ``--overwrite``; logs and
benchmark records go to ``results/ablation/<run name>/``.

``table`` renders a Markdown table, mean ± sample std over seeds, of every JSON there.

Examples (from the repository root, after ghostsr prepare-demo and
ghostsr prepare-benchmarks ../shared/data/benchmark/Set5/HR ../shared/data/benchmark/Set14/HR):
  python scripts/ablation.py run --configs scratch_learned_olr1 scratch_copy --seeds 0 1 2
  python scripts/ablation.py table --out benchmarks/results/ablation/table.md
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from ghostsr_plugin.errors import InputError, exit_on_input_error
from ghostsr_plugin.option_check import load_option_file

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
OPTIONS = osp.join(REPO_ROOT, 'options', 'ablation')
RESULTS = osp.join('benchmarks', 'results', 'ablation')
FORMAT = 'ghostsr-ablation/1'
MOVED = re.compile(r'Ghost layers whose argmax orientation moved since this run started: (\d+)/(\d+)')


def option_file(config):
    """The option file of ``config``: a path to a .yml, or a name under options/ablation/."""
    path = config if config.endswith(('.yml', '.yaml')) else osp.join(OPTIONS, f'{config}.yml')
    if not osp.isfile(path):
        known = sorted(osp.splitext(f)[0] for f in os.listdir(OPTIONS) if f.endswith('.yml'))
        raise InputError(f"config '{config}': no option file {path}; known configs: {', '.join(known)}")
    return path


def config_name(config):
    return osp.splitext(osp.basename(config))[0]


def command(name, *args):
    """A console command of this environment (the venv's ``basicsr`` / ``ghostsr``)."""
    return [osp.join(osp.dirname(sys.executable), name), *args]


def call(cmd, log):
    """Run ``cmd`` with one thread, appending its output to ``log``; fails naming the log."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
    with open(log, 'a') as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed; see {log}")


def benchmark(opt_path, checkpoint, name, args, work, log):
    """Set -> {'psnr', 'ssim'} of ``checkpoint`` (latency timed on a token input: not wanted here)."""
    from ghostsr_plugin.results import result_path

    out = osp.join(work, 'benchmark')
    call(command('ghostsr', 'benchmark', opt_path, '--checkpoint', checkpoint, '--name', name, '--data', args.data,
                 '--sets', *args.sets, '--out', out, '--warmup', '0', '--repeats', '1', '--latency_size', '8', '8',
                 '--overwrite'), log)
    opt = load_option_file(opt_path)
    with open(result_path(out, name, opt.get('scale', opt['network_g'].get('upscale')))) as f:
        sets = json.load(f)['sets']
    return {s: {'psnr': r['psnr'], 'ssim': r['ssim']} for s, r in sets.items()}


def moved_argmax(experiment):
    """(layers whose argmax moved, Ghost layers) from the run's last training log; None for a plain model."""
    logs = sorted(glob.glob(osp.join(experiment, 'train_*.log')))
    found = MOVED.findall(open(logs[-1]).read()) if logs else []
    return tuple(int(n) for n in found[-1]) if found else None


def run_one(config, seed, args):
    """Train, evaluate and record one run; returns its JSON path."""
    opt_path, config = option_file(config), config_name(config)
    result = osp.join(args.results, f'{config}_s{seed}.json')
    name = f'ablation_{config}_s{seed}'
    work = osp.join('results', 'ablation', name)
    os.makedirs(work, exist_ok=True)
    log = osp.join(work, 'run.log')
    opt = load_option_file(opt_path)
    force = [f'manual_seed={seed}', f'name={name}', *args.force_yml]
    if args.iters:
        force.append(f'train:total_iter={args.iters}')

    stages = {}
    if 'ghost_init' in opt:
        init = osp.join(work, 'init.pth')
        call(command('ghostsr', 'cluster-init', '-opt', opt_path, '--out', init, '--seed', str(seed), '--overwrite'),
             log)
        stages['init'] = benchmark(opt_path, init, f'{name}_init', args, work, log)
    start = time.time()
    call(command('basicsr', 'train', '-opt', opt_path, '--force_yml', *force), log)
    train_seconds = time.time() - start
    models = osp.join('experiments', name, 'models')
    total_iter = args.iters or int(opt['train']['total_iter'])
    for iteration in args.eval_iters:
        checkpoint = osp.join(models, f'net_g_{iteration}.pth')
        if iteration < total_iter and osp.isfile(checkpoint):
            stages[str(iteration)] = benchmark(opt_path, checkpoint, f'{name}_{iteration}', args, work, log)
    stages[str(total_iter)] = benchmark(opt_path, osp.join(models, 'net_g_latest.pth'), f'{name}_final', args,
                                        work, log)
    moved = moved_argmax(osp.join('experiments', name))
    record = {'format': FORMAT, 'config': config, 'seed': seed, 'option_file': opt_path, 'force_yml': force,
              'total_iter': total_iter, 'final_stage': str(total_iter), 'stages': stages,
              'argmax_moved': moved[0] if moved else None, 'ghost_layers': moved[1] if moved else None,
              'train_seconds': round(train_seconds, 1), 'experiment': osp.join('experiments', name),
              'date': datetime.now(timezone.utc).isoformat(timespec='seconds')}
    os.makedirs(args.results, exist_ok=True)
    with open(f'{result}.tmp', 'w') as f:
        json.dump(record, f, indent=1)
    os.replace(f'{result}.tmp', result)
    return result


def run(args):
    runs = [(option_file(c), s) for c in args.configs for s in args.seeds]
    todo = []
    for opt_path, seed in runs:
        result = osp.join(args.results, f'{config_name(opt_path)}_s{seed}.json')
        if osp.exists(result) and not args.overwrite:
            print(f'{result} exists: skipped (pass --overwrite to redo it)')
        else:
            todo.append((opt_path, seed))
    failures = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_one, opt_path, seed, args): (opt_path, seed) for opt_path, seed in todo}
        for future, (opt_path, seed) in futures.items():
            try:
                print(f'{config_name(opt_path)} seed {seed}: wrote {future.result()}')
            except RuntimeError as err:
                failures.append(f'{config_name(opt_path)} seed {seed}: {err}')
    if failures:
        raise InputError('failed runs:\n  ' + '\n  '.join(failures))


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return '—'
    if len(values) == 1:
        return f'{values[0]:.2f}'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


def table(results):
    """Markdown: per config, PSNR (Y, dB) of every stage and set, and the moved argmax count."""
    records = []
    for path in sorted(glob.glob(osp.join(results, '*.json'))):
        with open(path) as f:
            record = json.load(f)
        if record.get('format') == FORMAT:
            records.append(record)
    if not records:
        raise InputError(f'no ablation results ({FORMAT} JSONs) in {results}')
    configs = list(dict.fromkeys(r['config'] for r in records))
    sets = list(dict.fromkeys(s for r in records for stage in r['stages'].values() for s in stage))

    def stage_order(stage):
        return -1 if stage == 'init' else int(stage)

    stages = sorted({s for r in records for s in r['stages']}, key=stage_order)
    header = ['config', 'seeds'] + [f'{s} @{"init" if st == "init" else st + " it"}' for st in stages for s in sets]
    lines = ['| ' + ' | '.join(header + ['argmax moved']) + ' |', '|' + '---|' * (len(header) + 1)]
    for config in configs:
        rows = [r for r in records if r['config'] == config]
        cells = [config, ', '.join(str(r['seed']) for r in sorted(rows, key=lambda r: r['seed']))]
        for stage in stages:
            for s in sets:
                cells.append(_mean_std([r['stages'][stage][s]['psnr'] for r in rows if stage in r['stages']]))
        layers = {r['ghost_layers'] for r in rows} - {None}
        cells.append(_mean_std([r['argmax_moved'] for r in rows]) + (f' / {max(layers)}' if layers else ''))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='action', required=True)
    train = sub.add_parser('run', help='train and evaluate configs x seeds')
    train.add_argument('--configs', nargs='+', required=True, help='names under options/ablation/ or option files')
    train.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    train.add_argument('--jobs', type=int, choices=(1, 2), default=2, help='runs at once (default: %(default)s)')
    train.add_argument('--eval_iters', nargs='*', type=int, default=[300],
                       help='also evaluate these saved iterations (default: %(default)s)')
    train.add_argument('--iters', type=int, help='train this many iterations instead (a dry run)')
    train.add_argument('--force_yml', nargs='*', default=[], help="more BasicSR overrides, e.g. 'train:ema_decay=0'")
    train.add_argument('--data', default='datasets/benchmark', help='prepared benchmark sets (default: %(default)s)')
    train.add_argument('--sets', nargs='+', default=['Set5', 'Set14'])
    train.add_argument('--results', default=RESULTS, help='folder of the per-run JSONs (default: %(default)s)')
    train.add_argument('--overwrite', action='store_true', help='redo runs whose JSON exists')
    render = sub.add_parser('table', help='mean ± std table of the per-run JSONs')
    render.add_argument('--results', default=RESULTS)
    render.add_argument('--out', help='also write the table here')
    args = parser.parse_args()
    with exit_on_input_error(parser):
        if args.action == 'run':
            run(args)
        else:
            text = table(args.results)
            print(text, end='')
            if args.out:
                with open(args.out, 'w') as f:
                    f.write(text)


if __name__ == '__main__':
    main()
