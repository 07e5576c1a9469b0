"""The option check reads paired data folders as BasicSR's PairedImageDataset lists them, before anything runs."""
import shutil

from ghostsr_plugin.option_check import check_options

from .conftest import write_options
from .test_cli import expect_error


def copy_pairs(tmp_path, tiny_pairs, phase='train'):
    """Writable copies of a phase's GT and LQ folders."""
    gt, lq = tmp_path / 'gt', tmp_path / 'lq'
    shutil.copytree(tiny_pairs[f'{phase}_hr'], gt)
    shutil.copytree(tiny_pairs[f'{phase}_lr'], lq)
    return gt, lq


def test_empty_or_unequal_folders_are_named_before_anything_is_created(capsys, tmp_path, tiny_options, tiny_pairs,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)  # should a check pass by mistake, BasicSR runs here
    gt, lq = copy_pairs(tmp_path, tiny_pairs, 'val')
    tiny_options['datasets']['val'].update(dataroot_gt=str(gt), dataroot_lq=str(lq))
    path = write_options(tmp_path / 'o.yml', tiny_options)

    for image in lq.iterdir():
        image.unlink()
    expect_error(capsys, ['train', '-opt', path], "key 'datasets.val.dataroot_lq'", f"folder '{lq}' holds no images")

    shutil.copy(gt / 'coffee.png', lq / 'coffee.png')
    expect_error(capsys, ['train', '-opt', path], "key 'datasets.val.dataroot_lq'", f"folder '{lq}' holds 1 images",
                 f"dataroot_gt '{gt}' holds 2")

    shutil.copy(gt / 'coffee.png', lq / 'coffee_copy.png')
    expect_error(capsys, ['train', '-opt', path], f"folder '{lq}' has no 'astronaut.png' for the GT image "
                 "'astronaut.png' (filename_tmpl '{}')")
    assert sorted(p.name for p in tmp_path.iterdir()) == ['gt', 'lq', 'o.yml']  # no experiments/ folder


def test_what_basicsr_lists_otherwise_is_left_to_it(tmp_path, tiny_options, tiny_pairs):
    gt, lq = copy_pairs(tmp_path, tiny_pairs)
    (tmp_path / 'empty').mkdir()
    train = tiny_options['datasets']['train']
    train.update(dataroot_gt=str(gt), dataroot_lq=str(lq))
    # Hidden files are not images to BasicSR either; the template maps GT names to LQ names.
    (gt / '.notes').write_text('')
    for image in lq.iterdir():
        image.rename(lq / f'{image.stem}x2{image.suffix}')
    train['filename_tmpl'] = '{}x2'
    check_options(write_options(tmp_path / 'o.yml', tiny_options), is_train=True)

    # LMDB and meta_info_file datasets do not list the folders' files: not checked here.
    for backend, meta in (({'type': 'lmdb'}, None), ({'type': 'disk'}, str(tmp_path / 'meta_info.txt'))):
        train.update(dataroot_lq=str(tmp_path / 'empty'), io_backend=backend, meta_info_file=meta)
        check_options(write_options(tmp_path / 'o.yml', tiny_options), is_train=True)
