"""`basicsr train` under torchrun, each rank also saving its own final weights (for the distributed test).

Run as ``torchrun --nproc_per_node=2 tests/distributed_train.py OUT_DIR train -opt FILE --launcher pytorch``:
the same entry point as the ``basicsr`` console command, with ``GhostSRModel.save`` wrapped so that at
the end of training every rank writes ``OUT_DIR/rank<r>.pth`` (``params``, ``params_ema``, bare keys).
"""
import os.path as osp
import sys

import ghostsr_plugin  # noqa: F401  (before basicsr: the compat fixes)
from ghostsr_plugin.cli import basicsr_main
from ghostsr_plugin.models.ghostsr_model import GhostSRModel


def main():
    import torch
    from basicsr.utils.dist_util import get_dist_info

    out_dir, argv = sys.argv[1], sys.argv[2:]
    save = GhostSRModel.save

    def save_and_dump(self, epoch, current_iter):
        save(self, epoch, current_iter)
        if current_iter == -1:
            nets = {'params': self.net_g, 'params_ema': self.net_g_ema}
            torch.save({k: self.get_bare_model(net).state_dict() for k, net in nets.items()},
                       osp.join(out_dir, f'rank{get_dist_info()[0]}.pth'))

    GhostSRModel.save = save_and_dump
    basicsr_main(argv)


if __name__ == '__main__':
    main()
