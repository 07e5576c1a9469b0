"""Outputs written whole or not at all: a failure midway leaves nothing, a replaced output survives a failure."""
import json

import pytest

from ghostsr_plugin.atomic import MANIFEST, atomic_folder, atomic_path, atomic_paths
from ghostsr_plugin.cli import ghostsr_main


class Stop(Exception):
    pass


def test_a_file_appears_only_when_complete(tmp_path):
    target = tmp_path / 'new' / 'deeper' / 'result.json'
    with pytest.raises(Stop), atomic_path(target) as temporary:
        with open(temporary, 'w') as f:
            f.write('{"half": ')
        assert not target.exists()
        raise Stop
    assert list(tmp_path.iterdir()) == []  # neither the file nor the folders made for it

    with atomic_path(target) as temporary:
        assert temporary.endswith('result.json') and not target.exists()  # the extension is kept
        with open(temporary, 'w') as f:
            f.write('{}')
    assert json.loads(target.read_text()) == {} and sorted(p.name for p in target.parent.iterdir()) == ['result.json']


def test_a_replaced_folder_survives_a_failed_rebuild(tmp_path):
    target = tmp_path / 'set'
    with atomic_folder(target) as temporary:  # an earlier build
        open(f'{temporary}/old.png', 'w').close()
    with pytest.raises(Stop), atomic_folder(target) as temporary:
        open(f'{temporary}/new.png', 'w').close()
        raise Stop
    assert sorted(p.name for p in tmp_path.iterdir()) == ['set']
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, 'old.png']

    with atomic_folder(target) as temporary:
        open(f'{temporary}/new.png', 'w').close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['set']
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, 'new.png']


def test_several_outputs_all_or_none(tmp_path):
    paths = [tmp_path / 'out' / name for name in ('a.md', 'b.csv')]
    with pytest.raises(Stop), atomic_paths(paths) as temporaries:
        open(temporaries[0], 'w').close()
        raise Stop
    assert not (tmp_path / 'out').exists()
    with atomic_paths(paths) as temporaries:
        for temporary in temporaries:
            open(temporary, 'w').close()
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['a.md', 'b.csv']


def test_leaderboard_that_fails_midway_writes_nothing(tmp_path, monkeypatch):
    from ghostsr_plugin.commands import leaderboard

    result = {'format': 'ghostsr-benchmark/1', 'name': 'bicubic', 'baseline': None, 'scale': 2, 'params': None,
              'flops': None, 'latency': None, 'sets': {'Set5': {'psnr': 33.66, 'ssim': 0.9299}}}
    (tmp_path / 'r.json').write_text(json.dumps(result))

    def broken_plot(*args):
        raise Stop

    monkeypatch.setattr(leaderboard, 'plot', broken_plot)  # after the table and CSV are written
    with pytest.raises(Stop):
        ghostsr_main(['leaderboard', str(tmp_path / 'r.json'), '--out', str(tmp_path / 'board')])
    assert not (tmp_path / 'board').exists()
