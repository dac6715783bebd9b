"""Packaging for keras_guided."""

import os
import re

from setuptools import find_packages
from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _version():
    with open(os.path.join(HERE, "keras_guided", "version.py")) as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


def _long_description():
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
        return f.read()


# Bounds: the lower bound is the oldest version we rely on, the upper bound
# the next major/minor release we have not tested, so a fresh install a year
# from now still resolves to a combination that works.
CORE = [
    "keras>=3.13,<4",
    "tensorflow>=2.19,<2.23",
    "numpy>=1.26,<3",
]
EXTRAS = {
    "tflite": ["ai-edge-litert>=1.2,<3"],
    "bench": [
        "ai-edge-litert>=1.2,<3",
        "tensorflow-model-optimization>=0.8.0,<0.9",
        "tf-keras>=2.19,<2.23",
        "matplotlib>=3.8,<4",
        "scikit-learn>=1.4,<2",
        "pillow>=10",  # B4 decodes the CIFAR-10 JPEG files once
    ],
    # B4's and B6's Torch-Pruning arms only (benchmarks/b4_torch.py, its
    # own process); never needed by the library or its tests. torch is
    # pinned to the CPU build B6's cells ran with, so later cells match.
    "bench-torch": [
        "torch==2.13.0",
        "torch-pruning>=1.6.0,<1.7",
        "pillow>=10",
        "numpy>=1.26,<3",
    ],
    "plot": ["matplotlib>=3.8,<4"],
    "jax": ["jax[cpu]>=0.4.30,<1"],
    "dev": [
        "ai-edge-litert>=1.2,<3",
        "scikit-learn>=1.4,<2",
        "pytest>=8,<10",
        "pytest-xdist>=3.5,<4",
        "hypothesis>=6.100,<7",
        "matplotlib>=3.8,<4",
        "jax[cpu]>=0.4.30,<1",
        "mkdocs>=1.6,<2",
        "mkdocs-material>=9.5,<10",
        "mkdocstrings[python]>=1.0,<2",
        # One exact version: `ruff format --check` in CI must format as the
        # pre-commit hook does (.pre-commit-config.yaml pins the same).
        "ruff==0.17.6",
        "keras-hub>=0.20,<1",
    ],
    "docs": [
        "mkdocs>=1.6,<2",
        "mkdocs-material>=9.5,<10",
        "mkdocstrings[python]>=1.0,<2",
    ],
}

setup(
    name="keras-guided",
    version=_version(),
    description=(
        "Guided regularization and structured pruning for Keras 3: train "
        "networks to be cut, then remove the dead units."
    ),
    long_description=_long_description(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_guided", "keras_guided.*"]),
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["keras-guided=keras_guided.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
