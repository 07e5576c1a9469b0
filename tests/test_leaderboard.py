"""`ghostsr leaderboard`: tables, CSV and plot from fixed result files; bad result files."""
import json

import pytest
from PIL import Image

from ghostsr_plugin.cli import ghostsr_main
from ghostsr_plugin.commands.leaderboard import load_results
from ghostsr_plugin.errors import InputError

from .test_cli import expect_error as expect_cli_error

LATENCY = {'method': 'CUDA events', 'warmup': 3, 'repeats': 10, 'device': 'NVIDIA H100'}
PLAIN = {'format': 'ghostsr-benchmark/1', 'name': 'EDSR tiny', 'baseline': None, 'scale': 2,
         'sets': {'Set14': {'psnr': 31.5, 'ssim': 0.89}, 'Set5': {'psnr': 35.123, 'ssim': 0.94321}},
         'params': 1_370_000, 'flops': 316_000_000_000, 'mults': 158_000_000_000, 'adds': 158_100_000_000,
         'energy_pj': 727_000_000_000.0, 'latency': {'seconds': 0.0123, **LATENCY}}
GHOST = {'format': 'ghostsr-benchmark/1', 'name': 'GhostEDSR tiny', 'baseline': 'EDSR tiny', 'scale': 2,
         'sets': {'Set5': {'psnr': 35.101, 'ssim': 0.94329}, 'Set14': {'psnr': 31.52, 'ssim': 0.8899}},
         'params': 740_000, 'flops': 170_000_000_000, 'mults': 85_000_000_000, 'adds': 85_200_000_000,
         'energy_pj': 391_180_000_000.0, 'latency': {'seconds': 0.0101, **LATENCY}}

EXPECTED_MARKDOWN = """# Leaderboard

PSNR (dB) and SSIM on the Y channel with `scale` pixels cropped at each border (BasicSR's metrics). \
Params: every parameter. FLOPs: `torch.utils.flop_counter` over one forward pass producing 1280 x 720 \
(2 FLOPs per multiply-add; a shift counts zero). Mults, adds: the multiplications and additions of that \
forward pass, energy: theirs per image at 45 nm in float32 (3.7 pJ a multiplication, 0.9 pJ an addition; \
docs/peers.md). Best of each column in bold.

## x2

| model | Set5 PSNR | Set5 SSIM | Set14 PSNR | Set14 SSIM | params | FLOPs | mults | adds | energy (mJ) | latency (ms) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| GhostEDSR tiny | 35.10 | **0.9433** | **31.52** | 0.8899 | **740 K** | **170 G** | **85.0 G** | **85.2 G** \
| **391.2** | **10.1** |
| EDSR tiny | **35.12** | 0.9432 | 31.50 | **0.8900** | 1.37 M | 316 G | 158 G | 158 G | 727.0 | 12.3 |

Latency: median of 10 forward passes after 3 warm-up passes (CUDA events) on NVIDIA H100, eager.
Compared with a plain baseline: GhostEDSR tiny (baseline: EDSR tiny).
"""


def write_results(folder, *records):
    folder.mkdir(exist_ok=True)
    paths = []
    for i, record in enumerate(records):
        paths.append(folder / f'result{i}.json')
        paths[-1].write_text(json.dumps(record))
    return [str(p) for p in paths]


def test_leaderboard_from_two_results(tmp_path):
    files = write_results(tmp_path / 'results', PLAIN, GHOST)
    ghostsr_main(['leaderboard', *files, '--out', str(tmp_path / 'board')])
    assert (tmp_path / 'board' / 'leaderboard.md').read_text() == EXPECTED_MARKDOWN
    assert (tmp_path / 'board' / 'leaderboard.csv').read_text() == (
        'scale,model,baseline,Set5_psnr,Set5_ssim,Set14_psnr,Set14_ssim,params,flops,mults,adds,energy_pj,latency_s,'
        'latency_device,engine,threads,file\n'
        f'2,GhostEDSR tiny,EDSR tiny,35.101,0.94329,31.52,0.8899,740000,170000000000,85000000000,85200000000,'
        f'391180000000.0,0.0101,NVIDIA H100,eager,,{files[1]}\n'
        f'2,EDSR tiny,,35.123,0.94321,31.5,0.89,1370000,316000000000,158000000000,158100000000,727000000000.0,0.0123,'
        f'NVIDIA H100,eager,,{files[0]}\n')
    with Image.open(tmp_path / 'board' / 'leaderboard.png') as plot:
        assert plot.format == 'PNG' and plot.size == (1320, 504)


def test_leaderboard_bicubic_rows_and_mixed_devices(tmp_path):
    bicubic = {**PLAIN, 'name': 'bicubic', 'params': None, 'flops': None, 'latency': None,
               'sets': {'Set5': {'psnr': 33.68, 'ssim': 0.9305}}}
    for key in ('mults', 'adds', 'energy_pj'):  # (a result of a version before energy: no such keys)
        bicubic.pop(key)
    on_cpu = {**GHOST, 'latency': {**GHOST['latency'], 'device': 'a CPU'}}
    ghostsr_main(['leaderboard', *write_results(tmp_path / 'r', PLAIN, on_cpu, bicubic), '--out', str(tmp_path)])
    table = (tmp_path / 'leaderboard.md').read_text()
    assert '| bicubic | 33.68 | 0.9305 | – | – | – | – | – | – | – | – |' in table.splitlines()
    assert '| 12.3 |' in table and '**10.1**' not in table  # latencies on different devices are not ranked
    assert 'Latency measured on different devices (not bold): GhostEDSR tiny: a CPU; EDSR tiny: NVIDIA H100.' in table


def test_leaderboard_bad_inputs(tmp_path, capsys):
    with pytest.raises(InputError, match=r"result1\.json and .*result0\.json both hold 'EDSR tiny' at x2"):
        load_results(write_results(tmp_path / 'dup', PLAIN, PLAIN))
    with pytest.raises(InputError, match=r"result0\.json: expected a 'ghostsr-benchmark/1' result"):
        load_results(write_results(tmp_path / 'other', {'psnr': 30}))
    (tmp_path / 'bad.json').write_text('{"name": ')
    with pytest.raises(InputError, match=r'bad\.json: not a JSON file'):
        load_results([str(tmp_path / 'bad.json')])
    with pytest.raises(InputError, match=r"result0\.json: key 'latency' missing"):
        load_results(write_results(tmp_path / 'partial', {k: v for k, v in PLAIN.items() if k != 'latency'}))
    nan = {**PLAIN, 'sets': {**PLAIN['sets'], 'Set5': {'psnr': 30.1, 'ssim': float('nan')}}}  # as older versions wrote
    expect_cli_error(capsys, ['leaderboard', *write_results(tmp_path / 'nan', nan), '--out', str(tmp_path / 'nan_b')],
                     "result0.json: set 'Set5': expected a number for 'ssim', found nan", main=ghostsr_main)
    assert not (tmp_path / 'nan_b').exists()
    (tmp_path / 'empty').mkdir()
    with pytest.raises(InputError, match=r'no result JSONs in .*empty'):
        load_results([str(tmp_path / 'empty')])

    files = write_results(tmp_path / 'ok', PLAIN)
    ghostsr_main(['leaderboard', *files, '--out', str(tmp_path / 'board')])
    expect_cli_error(capsys, ['leaderboard', *files, '--out', str(tmp_path / 'board')],
                     'leaderboard.md exists (and 2 more); pass --overwrite', main=ghostsr_main)


def test_folder_skips_other_json_files(tmp_path, capsys):
    folder = tmp_path / 'results'
    write_results(folder, PLAIN, GHOST)
    shift = {'device': 'NVIDIA H100', 'date': '2026-11-22', 'ops': []}  # scripts/benchmark_shift.py's output
    (folder / 'shift_nvidia-h100_2026-11-22.json').write_text(json.dumps(shift))
    (folder / '.tmp-0a1b2c3d-result2.json').write_text('{"format": ')  # a result still being written
    ghostsr_main(['leaderboard', str(folder), '--out', str(tmp_path / 'board')])
    assert (tmp_path / 'board' / 'leaderboard.md').read_text() == EXPECTED_MARKDOWN
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and 'skipped 1 JSON file' in err and 'shift_nvidia-h100_2026-11-22.json' in err

    # Named explicitly, it is an error; so is a folder holding nothing else, and a result without sets.
    with pytest.raises(InputError, match=r"shift_nvidia-h100_2026-11-22\.json: expected a 'ghostsr-benchmark/1'"):
        load_results([str(folder / 'shift_nvidia-h100_2026-11-22.json')])
    (folder / 'result0.json').unlink()
    (folder / 'result1.json').unlink()
    with pytest.raises(InputError, match='no result JSONs in'):
        load_results([str(folder)])
    with pytest.raises(InputError, match=r"result0\.json: key 'sets': expected the results of one or more test sets"):
        load_results(write_results(tmp_path / 'no_sets', {**PLAIN, 'sets': {}, 'latency': None}))
