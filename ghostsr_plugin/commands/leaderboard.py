"""Merge benchmark result JSONs into a leaderboard: Markdown tables per scale, a CSV and a PNG plot.

leaderboard.md has one table per scale: a row per model, PSNR/SSIM per test set, params,
FLOPs, multiplications, additions, energy per image and latency, the best value of each
column in bold (highest PSNR/SSIM, lowest cost). leaderboard.csv holds the same numbers
unrounded. leaderboard.png plots, per scale, PSNR on one test set against FLOPs and against
latency, marker area proportional to the parameter count, bicubic as a dashed line, and an
arrow from each plain baseline to the model that names it (`ghostsr benchmark --baseline`).
Results of runs trained with FastSRModel or GhostSRModel carry how they were trained, which a
last table lists (iterations, wall time, it/s).

Example: ghostsr leaderboard results/benchmark --out results/leaderboard
"""
import csv
import io
import json
import math
import os
import os.path as osp
import sys

from ghostsr_plugin.atomic import atomic_paths
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.outputs import check_files_folder, check_output_files
from ghostsr_plugin.results import BICUBIC, RESULT_FORMAT, set_order

OUTPUTS = ('leaderboard.md', 'leaderboard.csv', 'leaderboard.png')
REQUIRED_KEYS = ('name', 'baseline', 'scale', 'sets', 'params', 'flops', 'latency')


def add_arguments(parser):
    parser.add_argument('results', nargs='+', help='result JSONs of `ghostsr benchmark`, or folders of them')
    parser.add_argument('--out', default='results/leaderboard',
                        help=f'folder for {", ".join(OUTPUTS)} (default: %(default)s)')
    parser.add_argument('--plot_set', help='the test set whose PSNR is plotted (default: the first one)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing leaderboard files')


def _is_result(record):
    """Whether a JSON record is a ``ghostsr benchmark`` result (of any format version): it has its ``format``."""
    return isinstance(record, dict) and str(record.get('format')).startswith(RESULT_FORMAT.split('/')[0] + '/')


def _check_metrics(file, sets):
    """Fail on a set's PSNR or SSIM that is no number, such as the NaN older versions wrote for tiny images."""
    for set_name, result in sets.items():
        for metric in ('psnr', 'ssim'):
            value = result.get(metric) if isinstance(result, dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise InputError(f"{file}: set '{set_name}': expected a number for '{metric}', found {value!r}; "
                                 'rerun ghostsr benchmark for it')


def load_results(paths):
    """Result records from JSON files and folders of them, each with its ``file``.

    In a folder, JSON files that are no benchmark result (other tools' output, such as
    scripts/benchmark_shift.py's) are skipped with a notice; a file named explicitly must be one.
    """
    files = []
    for path in paths:
        if osp.isdir(path):
            files += [(osp.join(path, f), True) for f in sorted(os.listdir(path))
                      if f.endswith('.json') and not f.startswith('.')]  # hidden: a result still being written
        elif osp.isfile(path):
            files.append((path, False))
        else:
            raise InputError(f'result file or folder {path} does not exist')
    results, seen, skipped = [], {}, []
    for file, in_folder in files:
        try:
            with open(file, encoding='utf-8') as f:
                record = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f'{file}: not a JSON file ({err})') from None
        if in_folder and not _is_result(record):
            skipped.append(file)
            continue
        if not isinstance(record, dict) or record.get('format') != RESULT_FORMAT:
            found = record.get('format') if isinstance(record, dict) else type(record).__name__
            raise InputError(f"{file}: expected a '{RESULT_FORMAT}' result of ghostsr benchmark, found {found!r}")
        missing = [k for k in REQUIRED_KEYS if k not in record]
        if missing:
            raise InputError(f"{file}: key '{missing[0]}' missing")
        if not isinstance(record['sets'], dict) or not (record['sets'] or record['latency']):
            raise InputError(f"{file}: key 'sets': expected the results of one or more test sets (or a latency, "
                             f"with --latency_only), found {record['sets']!r}")
        _check_metrics(file, record['sets'])
        key = (record['name'], record['scale'], engine(record))
        if key in seen:
            on = f' on {key[2]}' if key[2] else ''
            raise InputError(f"{file} and {seen[key]} both hold '{key[0]}' at x{key[1]}{on}")
        seen[key] = file
        results.append({**record, 'file': file})
    if skipped:
        print(f'note: skipped {len(skipped)} JSON file(s) that are not ghostsr benchmark results (no '
              f"'format': '{RESULT_FORMAT}'): {', '.join(skipped)}", file=sys.stderr)
    if not results:
        raise InputError(f'no result JSONs in {", ".join(paths)}')
    return results


def engine(record):
    """The engine a record's latency was measured on (results from before engines: eager), or None."""
    return (record['latency'] or {}).get('engine', 'eager') if record['latency'] else None


def _label(record):
    """A row's name: the model's, with the engine when it is not eager PyTorch."""
    return record['name'] + (f' ({engine(record)})' if engine(record) not in (None, 'eager') else '')


def _set_order(results):
    return set_order({s for r in results for s in r['sets']})


def _row_order(results):
    return sorted(results, key=lambda r: (r['name'] != BICUBIC, r['params'] or 0, r['name']))


def _energy_mj(result):
    return None if result.get('energy_pj') is None else result['energy_pj'] / 1e9


def _latency_ms(result):
    return None if result['latency'] is None else 1000 * result['latency']['seconds']


def _si(value):
    """Three significant digits or more, with a K/M/G unit: 85.1 K, 1.37 M, 170 G."""
    factor, unit = next(((f, u) for f, u in ((1e9, ' G'), (1e6, ' M'), (1e3, ' K')) if value >= f), (1, ''))
    value /= factor
    return f'{value:.{2 if value < 10 else 1 if value < 100 else 0}f}{unit}'


def _column(values, fmt, best):
    """Formatted cells; where two or more compete, those that display the best (``max`` or ``min``) in bold."""
    cells = ['–' if v is None else fmt(v) for v in values]
    present = [v for v in values if v is not None]
    if best is None or len(present) < 2:
        return cells
    top = fmt(best(present))
    return [f'**{c}**' if c == top else c for c in cells]


def scale_table(results, sets):
    """The Markdown table and notes of the results at one scale."""
    rows = _row_order(results)
    devices = sorted({r['latency']['device'] for r in rows if r['latency']})
    columns, header = [], ['model']
    for s in sets:
        for metric, fmt in (('psnr', '{:.2f}'.format), ('ssim', '{:.4f}'.format)):
            values = [r['sets'][s][metric] if s in r['sets'] else None for r in rows]
            columns.append(_column(values, fmt, max))
            header.append(f'{s} {metric.upper()}')
    columns.append(_column([r['params'] for r in rows], _si, min))
    columns.append(_column([r['flops'] for r in rows], _si, min))
    for key in ('mults', 'adds'):  # (results of older versions have none)
        columns.append(_column([r.get(key) for r in rows], _si, min))
    columns.append(_column([_energy_mj(r) for r in rows], '{:.1f}'.format, min))
    columns.append(_column([_latency_ms(r) for r in rows], '{:.1f}'.format, min if len(devices) <= 1 else None))
    header += ['params', 'FLOPs', 'mults', 'adds', 'energy (mJ)', 'latency (ms)']
    lines = ['| ' + ' | '.join(header) + ' |', '| --- |' + ' ---: |' * (len(header) - 1)]
    lines += ['| ' + ' | '.join([_label(r), *(c[i] for c in columns)]) + ' |' for i, r in enumerate(rows)]
    notes = []
    timed = [r for r in rows if r['latency']]
    if timed:
        lat = timed[0]['latency']
        if len(devices) == 1:
            notes.append(f"Latency: median of {lat['repeats']} forward passes after {lat['warmup']} warm-up passes "
                         f"({lat['method']}) on {devices[0]}, {engine(timed[0])}.")
        else:
            notes.append('Latency measured on different devices (not bold): '
                         + '; '.join(f"{r['name']}: {r['latency']['device']}" for r in timed) + '.')
    links = [f"{r['name']} (baseline: {r['baseline']})" for r in rows if r['baseline']]
    if links:
        notes.append('Compared with a plain baseline: ' + ', '.join(links) + '.')
    return '\n'.join(lines) + ('\n\n' + '\n'.join(notes) if notes else '') + '\n'


def latency_table(results):
    """Latency (ms) of every timed network per engine, and its ratio to its plain baseline on the same engine."""
    timed = [r for r in results if r['latency'] and r['name'] != BICUBIC]
    engines = [e for e in ('eager', 'compile', 'onnxruntime') if any(engine(r) == e for r in timed)]
    engines += sorted({engine(r) for r in timed} - set(engines))
    by_key = {(r['name'], r['scale'], engine(r)): r for r in timed}
    header = ['model', 'scale', *(f'{e} (ms)' for e in engines), *(f'{e} ratio' for e in engines)]
    lines = ['| ' + ' | '.join(header) + ' |', '| --- | ---: |' + ' ---: |' * (2 * len(engines))]
    for name, scale in sorted({(r['name'], r['scale']) for r in timed}, key=lambda k: (k[1], k[0])):
        cells = []
        for e in engines:
            r = by_key.get((name, scale, e))
            cells.append('–' if r is None else f"{r['latency']['seconds'] * 1e3:.1f}")
        for e in engines:
            r = by_key.get((name, scale, e))
            base = by_key.get((r['baseline'], scale, e)) if r and r['baseline'] else None
            cells.append('–' if base is None else f"{r['latency']['seconds'] / base['latency']['seconds']:.3f}")
        lines.append(f'| {name} | x{scale} | ' + ' | '.join(cells) + ' |')
    setups = sorted({f"{engine(r)}: {r['latency']['device']}, {r['latency'].get('threads') or 'default'} "
                     f"thread(s), median of {r['latency']['repeats']}" for r in timed})
    return ('\n'.join(lines) + '\n\nRatio: latency over the baseline\'s (`--baseline`) on the same engine; the '
            'networks of one benchmark run are timed in turn, round after round. ' + '; '.join(setups) + '.\n')


def _training(record):
    return ((record.get('model') or {}).get('training')) or None


def training_table(results):
    """How each trained model was trained: device, iterations, wall time, speed, options."""
    header = ['model', 'scale', 'device', 'iterations', 'wall time (s)', 'it/s', 'steady it/s', 'data wait',
              'amp', 'channels_last', 'compile', 'stopped at budget']
    lines = ['| ' + ' | '.join(header) + ' |', '| --- | ---: | --- |' + ' ---: |' * 5 + ' --- |' * 4]
    for r in sorted((r for r in results if _training(r)), key=lambda r: (r['scale'], r['name'])):
        t = _training(r)
        speeds = ['–' if t.get(k) is None else f'{t[k]:.1f}'
                  for k in ('iterations_per_second', 'steady_iterations_per_second')]
        lines.append(f"| {r['name']} | x{r['scale']} | {t['device']} | {t['last_iter'] or 0:,} | {t['seconds']:.0f} | "
                     + ' | '.join(speeds) + f" | {t['data_wait_fraction']:.1%} | {t['amp'] or 'off'} | "
                     f"{'on' if t['channels_last'] else 'off'} | {'off' if t['compile'] is None else 'on'} | "
                     f"{'yes' if t['stopped_at_budget'] else 'no'} |")
    return ('\n'.join(lines) + '\n\nWall time: from the first iteration to the last (compiling included); steady: '
            'over the run\'s second half; data wait: time between training steps.\n')


def markdown(results):
    """leaderboard.md: one table per scale, then latency by engine."""
    timed_only = [r for r in results if not r['sets']]
    results = [r for r in results if r['sets']]
    sets = _set_order(results)
    parts = ['# Leaderboard\n',
             'PSNR (dB) and SSIM on the Y channel with `scale` pixels cropped at each border (BasicSR\'s metrics). '
             'Params: every parameter. FLOPs: `torch.utils.flop_counter` over one forward pass producing '
             '1280 x 720 (2 FLOPs per multiply-add; a shift counts zero). Mults, adds: the multiplications and '
             'additions of that forward pass, energy: theirs per image at 45 nm in float32 (3.7 pJ a multiplication, '
             '0.9 pJ an addition; docs/peers.md). Best of each column in bold.\n']
    for scale in sorted({r['scale'] for r in results}):
        at_scale = [r for r in results if r['scale'] == scale]
        parts.append(f'## x{scale}\n\n' + scale_table(at_scale, [s for s in sets if any(s in r['sets']
                                                                                          for r in at_scale)]))
    if len({engine(r) for r in results + timed_only if r['latency']}) > 1 or timed_only:
        parts.append('## Latency by engine\n\n' + latency_table(results + timed_only))
    if any(_training(r) for r in results):
        parts.append('## Training\n\n' + training_table(results))
    return '\n'.join(parts)


def csv_text(results):
    """leaderboard.csv: one row per model and scale, unrounded."""
    sets = _set_order(results)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(['scale', 'model', 'baseline', *(f'{s}_{m}' for s in sets for m in ('psnr', 'ssim')),
                     'params', 'flops', 'mults', 'adds', 'energy_pj', 'latency_s', 'latency_device', 'engine',
                     'threads', 'file'])
    for scale in sorted({r['scale'] for r in results}):
        for r in _row_order([r for r in results if r['scale'] == scale]):
            metrics = [r['sets'][s][m] if s in r['sets'] else '' for s in sets for m in ('psnr', 'ssim')]
            latency = r['latency'] or {}
            counts = [r.get(key) or '' for key in ('params', 'flops', 'mults', 'adds', 'energy_pj')]
            writer.writerow([scale, r['name'], r['baseline'] or '', *metrics, *counts, latency.get('seconds', ''),
                             latency.get('device', ''), engine(r) or '', latency.get('threads') or '', r['file']])
    return out.getvalue()


def plot(results, path, plot_set):
    """leaderboard.png: PSNR on ``plot_set`` against FLOPs and latency, a row of panels per scale with networks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scales = sorted({r['scale'] for r in results if r['flops']}) or sorted({r['scale'] for r in results})
    fig = Figure(figsize=(11, 4.2 * len(scales)), layout='constrained')
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(scales), 2, squeeze=False)
    max_params = max([r['params'] for r in results if r['params']] or [1])
    for row, scale in zip(axes, scales):
        at_scale = [r for r in results if r['scale'] == scale and plot_set in r['sets']]
        for ax, (x_of, x_label) in zip(row, ((lambda r: r['flops'] / 1e9, 'GFLOPs (1280 x 720 output)'),
                                             (_latency_ms, 'latency (ms)'))):
            points = {r['name']: (x_of(r), r['sets'][plot_set]['psnr']) for r in at_scale
                      if r['flops'] and r['latency']}
            for r in at_scale:
                if r['name'] == BICUBIC:
                    ax.axhline(r['sets'][plot_set]['psnr'], color='gray', linestyle='--', label=BICUBIC)
                elif r['name'] in points:
                    x, y = points[r['name']]
                    ax.scatter([x], [y], s=30 + 600 * r['params'] / max_params, alpha=0.6)
                    ax.annotate(r['name'], (x, y), textcoords='offset points', xytext=(6, 6), fontsize=8)
                    if r['baseline'] in points:
                        ax.annotate('', xy=(x, y), xytext=points[r['baseline']],
                                    arrowprops={'arrowstyle': '->', 'color': 'black', 'lw': 1})
            xs = [x for x, _ in points.values()]
            if xs and max(xs) >= 10 * min(xs):
                ax.set_xscale('log')
            ax.margins(x=0.2, y=0.1)
            ax.set_xlabel(x_label)
            ax.set_ylabel(f'PSNR on {plot_set} (dB)')
            ax.set_title(f'x{scale} (marker area: parameters)')
            ax.grid(True, alpha=0.3)
            if any(r['name'] == BICUBIC for r in at_scale):
                ax.legend(loc='lower right', fontsize=8)
    fig.savefig(path, dpi=120)


def run(args):
    results = load_results(args.results)
    sets = _set_order(results)
    plot_set = args.plot_set or (sets[0] if sets else None)
    if args.plot_set and plot_set not in sets:
        raise InputError(f"--plot_set {plot_set}: no result has it; found {', '.join(sets) or 'none'}")
    paths = [osp.join(args.out, name) for name in OUTPUTS[:3 if sets else 2]]  # no plot without PSNR
    check_files_folder(args.out)
    check_output_files(paths, args.overwrite, inputs=args.results)
    with atomic_paths(paths) as outputs:  # all of them, or none
        with open(outputs[0], 'w', encoding='utf-8') as f:
            f.write(markdown(results))
        with open(outputs[1], 'w', encoding='utf-8') as f:
            f.write(csv_text(results))
        if sets:
            plot([r for r in results if r['sets']], outputs[2], plot_set)
    print(f'{len(results)} results -> ' + ', '.join(paths))
