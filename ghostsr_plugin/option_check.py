"""Check a BasicSR option file before BasicSR runs it, so mistakes fail with a clear message.

BasicSR itself fails late and vaguely (a ``KeyError`` deep in a registry, an argument
error inside a constructor). Every message here names the file and the offending key.
Settings that run but defeat a feature get a warning instead: a GhostSRModel training
file without ``manual_seed`` cannot be resumed exactly.
"""
import difflib
import inspect
import os
import os.path as osp
import warnings

import yaml
from basicsr.utils.options import ordered_yaml
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

from ghostsr_plugin.archs.conversion import WRAPPERS
from ghostsr_plugin.archs.conversion import check_section as check_wrapper_section
from ghostsr_plugin.checkpoint import load_checkpoint
from ghostsr_plugin.data.in_memory_dataset import InMemoryPairedImageDataset
from ghostsr_plugin.errors import ArgumentError, InputError, did_you_mean
from ghostsr_plugin.init.from_options import check_section as check_ghost_init_section
from ghostsr_plugin.models.fast_sr_model import FAST_KEYS, FastSRModel, fast_options
from ghostsr_plugin.models.ghostsr_model import (
    GhostSRModel,
    orientation_ever_held,
    orientation_gradient,
    orientation_lr,
    orientation_relaxation,
    orientation_search,
)
from ghostsr_plugin.models.smsr_model import SMSRModel, sparsity_schedule
from ghostsr_plugin.schedules import build_schedule


class OptionError(InputError):
    """An option file that BasicSR cannot run; the message names the file and the key."""


def load_option_file(path):
    """Parse a YAML option file the way BasicSR does, with readable errors."""
    if not osp.isfile(path):
        raise OptionError(f'option file not found: {path}')
    try:
        with open(path, encoding='utf-8') as f:
            opt = yaml.load(f, Loader=ordered_yaml()[0])
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f' at line {mark.line + 1}, column {mark.column + 1}' if mark else ''
        raise OptionError(f'{path}: not valid YAML{where}: {getattr(err, "problem", err)}') from None
    if not isinstance(opt, dict):
        raise OptionError(f'{path}: expected a mapping of options at the top level, found {type(opt).__name__}')
    return opt


def _expected_type(default):
    """``(types, what)`` that an argument with this default takes, or None: numbers and switches only (a float
    where an int is the default: the build says if it fits; a string default may stand for a list as well)."""
    if isinstance(default, bool):
        return (bool,), 'true or false'
    if isinstance(default, (int, float)):
        return (int, float), 'a number'
    return None


def _is_bool_for_number(value, default):
    """``true`` where a number is expected (bool is an int in Python, never in an option file)."""
    return isinstance(value, bool) and not isinstance(default, bool)


def physical_memory():
    """This machine's memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (AttributeError, ValueError, OSError):
        return None


def _size(num_bytes):
    """``num_bytes`` in binary units, three digits (``1.9 EiB``)."""
    units = ('bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB', 'ZiB', 'YiB')
    power = 0
    while num_bytes >= 1024 ** (power + 1) and power < len(units) - 1:
        power += 1
    return f'{num_bytes / 1024 ** power:.3g} {units[power]}'


class _Checker:

    def __init__(self, path, opt):
        self.path, self.opt = path, opt

    def suggest(self, name, choices):
        """`` (did you mean ...?)`` for a mistyped ``name``, or ''."""
        return did_you_mean(name, choices)

    def fail(self, key, message):
        raise OptionError(f"{self.path}: key '{key}': {message}")

    def get(self, key, kind=None, required=True):
        """The value at dotted ``key``; fails if missing (when required) or of the wrong kind."""
        value = self.opt
        for part in key.split('.'):
            if not isinstance(value, dict) or part not in value:
                if required:
                    close = difflib.get_close_matches(part, [str(k) for k in value], n=1) \
                        if isinstance(value, dict) else []
                    self.fail(key, f"missing (the closest key there is '{close[0]}')" if close else 'missing')
                return None
            value = value[part]
        if value is None and not required:
            return None
        if kind is not None and not isinstance(value, kind):
            expected = kind.__name__ if isinstance(kind, type) else ' or '.join(k.__name__ for k in kind)
            self.fail(key, f'expected {expected}, found {type(value).__name__} {value!r}')
        return value

    def registered(self, key, registry, what):
        """The class or function registered under the ``type`` at ``key``."""
        name = self.get(key, str)
        if name not in registry:
            self.fail(key, f"unknown {what} '{name}'{did_you_mean(name, registry.keys())}")
        return registry.get(name)

    def arguments(self, key, target, section):
        """Fail if ``section`` (minus ``type``) does not fit ``target``'s signature."""
        kwargs = {k: v for k, v in section.items() if k != 'type'}
        params = inspect.signature(target).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            for name in kwargs:
                if name not in params:
                    self.fail(f'{key}.{name}', f'not an argument of {target.__name__}{did_you_mean(name, params)}; '
                              f'expected one of: {", ".join(params)}')
        for name, p in params.items():
            if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name not in kwargs:
                self.fail(f'{key}.{name}', f'missing (required by {target.__name__})')

    def argument_types(self, key, target, section):
        """Fail on an argument whose type differs from its default's (``num_feat: abc`` where 64 is the default)."""
        params = inspect.signature(target).parameters
        for name, value in section.items():
            default = params[name].default if name in params else None
            expected = _expected_type(default)
            if expected is None or value is None:
                continue
            if not isinstance(value, expected[0]) or _is_bool_for_number(value, default):
                self.fail(f'{key}.{name}', f'expected {expected[1]} (the default is {default!r}), found '
                          f'{type(value).__name__} {value!r}')

    def buildable(self, key, target, section):
        """Build the network without memory (meta device): arguments it cannot take fail here, named.

        Only an argument error (TypeError, ValueError) counts: what the meta device itself
        cannot run (``.item()``) is left to the real build.
        """
        import torch

        kwargs = {k: v for k, v in section.items() if k != 'type'}
        try:
            with torch.device('meta'), warnings.catch_warnings():
                warnings.simplefilter('ignore')
                net = target(**kwargs)
        except ArgumentError as err:  # (an argument the arch names)
            self.fail(f'{key}.{err.option}' if err.option else key, str(err))
        except (TypeError, ValueError) as err:
            params = inspect.signature(target).parameters
            unchecked = [f'{k}={v!r}' for k, v in kwargs.items()
                         if k in params and params[k].default in (None, inspect.Parameter.empty)]
            hint = f" (arguments without a default to compare with: {', '.join(unchecked)})" if unchecked else ''
            self.fail(key, f'{target.__name__} cannot be built from these arguments: {err}{hint}')
        except Exception:  # noqa: BLE001  (a limit of the meta device, not of the arguments)
            return
        if isinstance(net, torch.nn.Module):
            self.fits_in_memory(key, target, net)

    def fits_in_memory(self, key, target, net):
        """Fail if the weights of ``net`` (built on the meta device) alone exceed this machine's memory."""
        tensors = {id(t): t for t in (*net.parameters(), *net.buffers())}.values()
        needed, memory = sum(t.numel() * t.element_size() for t in tensors), physical_memory()
        if memory and needed > memory:
            self.fail(key, f'{target.__name__} with these arguments has {sum(t.numel() for t in tensors):,d} '
                      f'weights ({_size(needed)}), more than the memory of this machine ({_size(memory)}); '
                      'expected a network that fits')

    def network(self, key):
        """The arch class of the network section at ``key``, its arguments checked by name, type and a build
        (a wrapper's, such as ``Ghost``'s, base too)."""
        section = self.get(key, dict)
        arch = self.registered(f'{key}.type', ARCH_REGISTRY, 'arch')
        self.arguments(key, arch, section)
        self.argument_types(key, arch, section)
        if arch in WRAPPERS:
            check_wrapper_section(self, key)  # (its base checked as a network; the conversion built)
        else:
            self.buildable(key, arch, section)
        return arch

    def folder(self, key):
        path = self.get(key, str, required=False)
        if path is not None and not osp.exists(osp.expanduser(path)):
            self.fail(key, f"folder '{path}' does not exist")

    def file(self, key):
        """A checkpoint at ``key`` (when set) that the plugin's loader loads: tensors only."""
        path = self.get(key, str, required=False)
        if path is not None and not osp.isfile(osp.expanduser(path)):
            found = 'a folder' if osp.isdir(osp.expanduser(path)) else 'nothing'
            self.fail(key, f"expected a checkpoint file at '{path}', found {found}")
        if path is not None:
            try:
                load_checkpoint(path)
            except InputError as err:
                self.fail(key, str(err))


def check_network_options(path, opt, key='network_g'):
    """The ``key`` section of ``opt`` (read from ``path``), checked: a registered arch and arguments that fit it."""
    _Checker(path, opt).network(key)
    return opt[key]


def _check_paired_folders(check, key):
    """A paired dataset (BasicSR's or the in-memory one) read from disk folders: files in both, as many LQ
    as GT, each GT's LQ present; or only GT files, where the in-memory dataset makes the LQ.

    BasicSR lists every non-hidden file of each folder (``paired_paths_from_folder``) and
    asserts deep in its loader; LMDB and ``meta_info_file`` datasets list their files otherwise
    and are not checked here.
    """
    from basicsr.data.paired_image_dataset import PairedImageDataset
    from basicsr.utils import scandir

    section = check.opt['datasets'][key.split('.', 1)[1]]
    backend = section.get('io_backend')
    dataset = DATASET_REGISTRY.get(section['type'])
    roots = ('dataroot_gt',) if issubclass(dataset, InMemoryPairedImageDataset) and section.get(
        'dataroot_lq') is None else ('dataroot_gt', 'dataroot_lq')
    if (not issubclass(dataset, (PairedImageDataset, InMemoryPairedImageDataset))
            or not isinstance(backend, dict) or backend.get('type') != 'disk'
            or section.get('meta_info_file') is not None
            or not all(isinstance(section.get(k), str) for k in roots)):
        return
    found = {k: sorted(scandir(osp.expanduser(section[k]))) if osp.isdir(osp.expanduser(section[k])) else None
             for k in roots}
    if None in found.values():
        return
    for root, files in found.items():
        if not files:
            check.fail(f'{key}.{root}', f"folder '{section[root]}' holds no images")
    if len(found) == 1:
        return
    gt_files, lq_files = found['dataroot_gt'], found['dataroot_lq']
    if len(gt_files) != len(lq_files):
        check.fail(f'{key}.dataroot_lq', f"folder '{section['dataroot_lq']}' holds {len(lq_files)} images, "
                   f"dataroot_gt '{section['dataroot_gt']}' holds {len(gt_files)}; expected one LQ image per GT image")
    template, lq_names = check.get(f'{key}.filename_tmpl', str, required=False) or '{}', set(lq_files)
    for name in gt_files:
        stem, ext = osp.splitext(name)
        if f'{template.format(stem)}{ext}' not in lq_names:
            check.fail(f'{key}.dataroot_lq', f"folder '{section['dataroot_lq']}' has no "
                       f"'{template.format(stem)}{ext}' for the GT image '{name}' (filename_tmpl '{template}')")


def _check_fast_options(check, train):
    """``train.amp``, ``channels_last``, ``compile``, ``time_budget``, ``progress_seconds``: valid, and a model that
    reads them (BasicSR's SRModel would ignore them silently)."""
    used = [k for k in FAST_KEYS if train.get(k) not in (None, False)]
    if used and not issubclass(MODEL_REGISTRY.get(check.opt['model_type']), FastSRModel):
        check.fail('model_type', f"'{check.opt['model_type']}' ignores train.{used[0]}; use FastSRModel (plain "
                   'networks) or GhostSRModel')
    try:
        fast_options(train)
    except InputError as err:
        raise OptionError(f'{check.path}: {err}') from None


def _check_sparsity_options(check, train):
    """SMSR's masks train with SMSRModel; its ``train.sparsity_opt`` and ``train.sparsity_schedule`` are valid."""
    model = MODEL_REGISTRY.get(check.opt['model_type'])
    masked = callable(getattr(ARCH_REGISTRY.get(check.opt['network_g']['type']), 'density', None))
    if masked and not issubclass(model, SMSRModel):
        check.fail('model_type', f"'{check.opt['model_type']}' does not train the masks of "
                   f"{check.opt['network_g']['type']} (their temperature, the sparsity regularization); use SMSRModel")
    if issubclass(model, SMSRModel) and not masked:
        check.fail('model_type', f"SMSRModel trains the masks of a network like SMSR; "
                   f"{check.opt['network_g']['type']} has none (use GhostSRModel or FastSRModel)")
    weight = check.get('train.sparsity_opt.loss_weight', required=False)
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0):
        check.fail('train.sparsity_opt.loss_weight',
                   f'expected a number >= 0, found {type(weight).__name__} {weight!r}')
    if issubclass(model, SMSRModel):
        try:
            sparsity_schedule(train)
        except InputError as err:
            raise OptionError(f'{check.path}: {err}') from None


def check_ghost_init_file(path):
    """Load ``path`` and check its ``network_g`` and ``ghost_init`` (for ``ghostsr cluster-init``)."""
    opt = load_option_file(path)
    check = _Checker(path, opt)
    check.get('ghost_init', dict)
    check.network('network_g')
    check_ghost_init_section(check)
    return opt


def apply_force_yml(path, opt, entries):
    """Apply BasicSR's ``--force_yml`` entries (``train:ema_decay=0.999``) to ``opt`` in place, as BasicSR does.

    Values are parsed by BasicSR's own ``_postprocess_yml_value``; as in BasicSR, every key
    but the last must exist.
    """
    from basicsr.utils.options import _postprocess_yml_value

    for entry in entries or ():
        if entry.count('=') != 1:
            raise OptionError(f"{path}: --force_yml '{entry}': expected KEY:SUBKEY=VALUE with one '=', "
                              'e.g. train:ema_decay=0.999')
        keys, value = (part.strip() for part in entry.split('='))
        *parents, last = keys.split(':')
        section = opt
        for depth, key in enumerate(parents):
            if not isinstance(section, dict) or key not in section:
                where = ':'.join(parents[:depth + 1])
                close = did_you_mean(key, section) if isinstance(section, dict) else ''
                raise OptionError(f"{path}: --force_yml '{entry}': no section '{where}' in the options{close}")
            section = section[key]
        if not isinstance(section, dict):
            raise OptionError(f"{path}: --force_yml '{entry}': '{':'.join(parents)}' is a "
                              f'{type(section).__name__}, not a section')
        section[last] = _postprocess_yml_value(value)
    return opt


def check_options(path, is_train, force_yml=None):
    """Load ``path``, apply ``force_yml`` (BasicSR's ``--force_yml`` entries) and check what BasicSR's train
    (or test) pipeline will look up."""
    opt = apply_force_yml(path, load_option_file(path), force_yml)
    check = _Checker(path, opt)
    check.get('name', str)
    check.get('num_gpu', (int, str))
    check.registered('model_type', MODEL_REGISTRY, 'model')
    check_network_options(path, opt, 'network_g')
    for key in [k for k in opt if k.startswith('network_') and k != 'network_g']:
        check_network_options(path, opt, key)
    if 'ghost_init' in opt:
        if not issubclass(MODEL_REGISTRY.get(opt['model_type']), GhostSRModel):
            check.fail('model_type', f"'{opt['model_type']}' ignores the ghost_init section; use GhostSRModel")
        check_ghost_init_section(check)

    datasets = check.get('datasets', dict)
    for phase in datasets:
        key = f'datasets.{phase}'
        check.get(key, dict)
        if phase != 'train' and phase.split('_')[0] not in (('val',) if is_train else ('val', 'test')):
            expected = "'train' or 'val*' (basicsr train rejects others)" if is_train else "'train', 'val*' or 'test*'"
            check.fail(key, f"dataset phase must be {expected}, found '{phase}'")
        check.registered(f'{key}.type', DATASET_REGISTRY, 'dataset')
        for root in ('dataroot_gt', 'dataroot_lq'):
            check.folder(f'{key}.{root}')
        _check_paired_folders(check, key)
    check.get('path', dict)
    check.file('path.pretrain_network_g')

    if is_train:
        if 'train' not in datasets:
            check.fail('datasets.train', 'missing (basicsr train needs a training set)')
        train = check.get('train', dict)
        check.get('train.total_iter', (int, float))
        check.get('logger.print_freq', (int, float))
        check.get('logger.save_checkpoint_freq', (int, float))
        for loss_key in [k for k in train if k.endswith('_opt') and isinstance(train[k], dict)]:
            check.registered(f'train.{loss_key}.type', LOSS_REGISTRY, 'loss')
        if opt.get('manual_seed') is None and issubclass(MODEL_REGISTRY.get(opt['model_type']), GhostSRModel):
            warnings.warn(f"{path}: no 'manual_seed': BasicSR draws a new seed for every run, so a run resumed "
                          'with --auto_resume draws other Gumbel noise than an uninterrupted one would; set '
                          'manual_seed for an exact resume', stacklevel=2)
        ghost = issubclass(MODEL_REGISTRY.get(opt['model_type']), GhostSRModel)
        try:
            if train.get('temperature_schedule') is not None:
                build_schedule(check.get('train.temperature_schedule', dict))
            if ghost:
                orientation_lr(train)
                orientation_search(train)
                orientation_gradient(train)
                orientation_relaxation(train)  # (after the schedule and the search it relies on)
        except InputError as err:
            raise OptionError(f'{path}: {err}') from None
        if ghost and orientation_ever_held(train) and opt.get('find_unused_parameters') is False:
            check.fail('find_unused_parameters', 'false, but a hold of the orientation (the warmup or hold_from '
                       'of train.temperature_schedule, or train.orientation_search) leaves the logits without '
                       'gradient, which distributed training refuses; set it true or remove it')
        _check_fast_options(check, train)
        _check_sparsity_options(check, train)
    else:
        check.get('val', dict)
    for name in (check.get('val.metrics', dict, required=False) or {}):
        check.registered(f'val.metrics.{name}.type', METRIC_REGISTRY, 'metric')
    return opt
