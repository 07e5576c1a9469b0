"""``--force_yml manual_seed=S`` seeds the whole run with S, the network's initialization included.

BasicSR 1.4.2's ``parse_options`` seeds Python, NumPy and torch with the option file's
``manual_seed`` and only then applies ``--force_yml``: an overridden seed reached the data
loader and the logs, while every network was still initialized from the file's seed. Here
the pipelines seed again from the final options (the same draw when nothing was
overridden). ``basicsr train`` / ``basicsr test`` (this plugin's command) install it.
"""
import basicsr.test
import basicsr.train
from basicsr.utils import set_random_seed


def install():
    """Make ``basicsr.train`` and ``basicsr.test`` seed after ``--force_yml`` is applied."""
    for pipeline in (basicsr.train, basicsr.test):
        parse_options = pipeline.parse_options
        if getattr(parse_options, 'seeds_after_overrides', False):
            continue

        def parse_and_seed(root_path, is_train=True, parse_options=parse_options):
            opt, args = parse_options(root_path, is_train)
            set_random_seed(opt['manual_seed'] + opt['rank'])
            return opt, args

        parse_and_seed.seeds_after_overrides = True
        pipeline.parse_options = parse_and_seed
