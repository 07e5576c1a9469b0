"""ghostsr-plugin: GhostSR (Nie et al., TMLR 2022) for BasicSR."""
import hashlib
import os

from setuptools import find_packages, setup


def cuda_extensions():
    """The fused CUDA shift kernels, built with the package when GHOSTSR_EXT=1 (as BasicSR's BASICSR_EXT).

    Without it nothing is compiled here (no nvcc needed): the kernels are then compiled on first
    use on a GPU, or the ops run their PyTorch reference. The library is stamped with the hash
    of its source, so that a stale one is noticed and ignored (ghostsr_plugin/ops/extension.py).
    """
    if os.getenv('GHOSTSR_EXT', '0') in ('', '0'):
        return {}
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    source = 'ghostsr_plugin/ops/csrc/ghost_ops.cu'
    with open(source, 'rb') as f:
        stamp = f'-DGHOSTSR_SOURCE_HASH={hashlib.sha256(f.read()).hexdigest()}'
    kernels = CUDAExtension('ghostsr_plugin.ops._C', [source],
                            extra_compile_args={'cxx': ['-O3', stamp], 'nvcc': ['-O3', stamp]})
    return {'ext_modules': [kernels], 'cmdclass': {'build_ext': BuildExtension}}


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
    package_data={'ghostsr_plugin.ops': ['csrc/*.cu', 'csrc/*.cpp']},
    install_requires=[
        'basicsr>=1.4.2',
        'ninja',  # torch.utils.cpp_extension compiles the CUDA and CPU kernels on first use with it
        'torch>=2.5',  # torch.serialization.safe_globals (compat.py)
        'torchvision',
        'scikit-learn',
        'opencv-python',
        'lmdb',
        'matplotlib',
        'pyyaml',
        'scikit-image',
        'tqdm',
    ],
    extras_require={'test': ['pytest', 'pytest-xdist', 'ruff'], 'deploy': ['onnx', 'onnxscript', 'onnxruntime']},
    entry_points={
        'console_scripts': ['basicsr = ghostsr_plugin.cli:basicsr_main', 'ghostsr = ghostsr_plugin.cli:ghostsr_main'],
        'basicsr.plugins': ['ghostsr = ghostsr_plugin'],
    },
    **cuda_extensions(),
)
