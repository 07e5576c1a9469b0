"""Print the README's model table: parameters and FLOPs of the paper's models, plain and Ghost.

For each shipped Ghost option file ``options/train/Ghost<model>/train_Ghost<model>_x<s>.yml`` (the paper's models:
EDSR-L, RDN, CARN, CARN-M), the Ghost network is the file's ``network_g`` and the plain
one the same section with the plain arch and without the Ghost layer's keys (for RDN,
CARN and CARN-M that is exactly ``options/train/<model>/train_<model>_x<s>.yml``'s, as tests check). Params
and FLOPs are counted as ``ghostsr benchmark`` counts them (``ghostsr_plugin.cost``), for
one 1280 x 720 output, without building any weights.

Run: python scripts/model_table.py
"""
import inspect
import os.path as osp
import sys

from ghostsr_plugin.cost import network_cost
from ghostsr_plugin.option_check import load_option_file

OPTIONS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'options')
# title: (the Ghost arch, the file-name stem before x<s> in options/train/<arch>/train_<stem>x<s>.yml)
MODELS = {'EDSR-L': ('GhostEDSR', 'GhostEDSR_L'), 'RDN': ('GhostRDN', 'GhostRDN_'), 'CARN': ('GhostCARN', 'GhostCARN_'),
          'CARN-M': ('GhostCARN_M', 'GhostCARN_M_')}
# The paper's reductions (params / FLOPs) that could be checked: its abstract's x2 EDSR.
PAPER = {('EDSR-L', 2): '46% / 46%'}


def plain_of(ghost_opt):
    """The plain network section a Ghost network section is built from."""
    from basicsr.utils.registry import ARCH_REGISTRY  # after ghostsr_plugin: its compat fixes come first

    plain_type = ghost_opt['type'].removeprefix('Ghost')
    accepted = inspect.signature(ARCH_REGISTRY.get(plain_type)).parameters
    return {'type': plain_type, **{k: v for k, v in ghost_opt.items() if k != 'type' and k in accepted}}


def rows():
    for title, (arch, stem) in MODELS.items():
        for scale in (2, 3, 4):
            ghost_opt = load_option_file(osp.join(OPTIONS, 'train', arch, f'train_{stem}x{scale}.yml'))['network_g']
            plain, ghost = map(network_cost, (plain_of(ghost_opt), ghost_opt))
            (plain_params, plain_flops), (params, flops) = ((c['params'], c['flops']) for c in (plain, ghost))
            yield (f'{title} x{scale}', f'{plain_params:,}', f'{params:,}', f'{1 - params / plain_params:.1%}',
                   f'{plain_flops / 1e9:,.1f}', f'{flops / 1e9:,.1f}', f'{1 - flops / plain_flops:.1%}',
                   PAPER.get((title, scale), 'n/a'))


def main():
    print('| model | params, plain | params, Ghost | reduction | GFLOPs, plain | GFLOPs, Ghost | reduction '
          '| paper (params / FLOPs) |')
    print('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for row in rows():
        print('| ' + ' | '.join(row) + ' |')
        sys.stdout.flush()


if __name__ == '__main__':
    main()
