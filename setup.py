"""ghostsr-plugin: GhostSR (Nie et al., TMLR 2022) for BasicSR."""
from setuptools import find_packages, setup

setup(
    name='ghostsr-plugin',
    version='0.1.0',
    description='GhostSR: learnable-shift ghost features for efficient super-resolution, as a BasicSR plugin',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['ghostsr_plugin', 'ghostsr_plugin.*']),
    include_package_data=True,
    install_requires=[
        'basicsr>=1.4.2',
        'torch>=2.4',
        'torchvision',
        'scikit-learn',
        'opencv-python',
        'lmdb',
        'matplotlib',
        'pyyaml',
        'scikit-image',
        'tqdm',
    ],
    extras_require={'test': ['pytest', 'ruff']},
    entry_points={
        'console_scripts': ['basicsr = ghostsr_plugin.cli:basicsr_main', 'ghostsr = ghostsr_plugin.cli:ghostsr_main'],
        'basicsr.plugins': ['ghostsr = ghostsr_plugin'],
    },
)
