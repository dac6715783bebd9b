"""Data for the benchmarks: real MNIST t10k (idx files) or scikit-learn digits.

MNIST t10k (the 10,000 official test digits) is split 8,000 train / 1,000
validation / 1,000 test with a fixed seed. Every choice (strength, threshold,
fine-tune epochs) is made on validation; test is reported once.
"""

import gzip
import os
import struct

import numpy as np

IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"
MNIST_SPLIT = (8000, 1000, 1000)


def read_idx(path):
    """Reads an idx file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        content = f.read()
    if len(content) < 4 or content[0] != 0 or content[1] != 0:
        raise ValueError(
            f"'{path}' is not an idx file: expected the magic bytes 00 00, "
            f"received {content[:2]!r}."
        )
    dtypes = {
        0x08: np.uint8,
        0x09: np.int8,
        0x0B: ">i2",
        0x0C: ">i4",
        0x0D: ">f4",
        0x0E: ">f8",
    }
    dtype, rank = content[2], content[3]
    if dtype not in dtypes:
        raise ValueError(f"'{path}': unknown idx type code {dtype:#x}.")
    shape = struct.unpack(">" + "I" * rank, content[4 : 4 + 4 * rank])
    data = np.frombuffer(content, dtype=dtypes[dtype], offset=4 + 4 * rank)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"'{path}': header says shape {shape} "
            f"({int(np.prod(shape))} values), file holds {data.size}."
        )
    return data.reshape(shape)


def load_mnist(mnist_dir):
    """Returns `(x, y, "mnist-t10k")`, x float32 (N, 28, 28, 1) in [0, 1]."""
    paths = [os.path.join(mnist_dir, name) for name in (IMAGES, LABELS)]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(
            f"--mnist-dir '{mnist_dir}' must hold {IMAGES} and {LABELS}. "
            f"Missing: {', '.join(missing)}."
        )
    x = read_idx(paths[0]).astype("float32") / 255.0
    y = read_idx(paths[1]).astype("int64")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels.")
    return x[..., None], y, "mnist-t10k"


def load_digits_data():
    """Returns `(x, y, "sklearn-digits")`, x float32 (N, 8, 8, 1) in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    return x, digits.target.astype("int64"), "sklearn-digits"


def split(x, y, sizes=None, seed=0):
    """Shuffles with a fixed seed and splits into train / val / test.

    Args:
        x, y: the arrays.
        sizes: `(train, val, test)` counts. Defaults to `None`: 8,000 /
            1,000 / 1,000 for 10,000 samples, else 80 / 10 / 10 percent.
        seed: shuffling seed. Defaults to 0.

    Returns:
        A dict with keys `x_train, y_train, x_val, y_val, x_test, y_test`.
    """
    n = len(x)
    if sizes is None:
        if n == sum(MNIST_SPLIT):
            sizes = MNIST_SPLIT
        else:
            val = test = n // 10
            sizes = (n - val - test, val, test)
    if sum(sizes) > n:
        raise ValueError(f"Split sizes {sizes} exceed the {n} samples.")
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum((0,) + tuple(sizes))
    out = {}
    for name, start, stop in zip(
        ("train", "val", "test"), bounds[:-1], bounds[1:]
    ):
        index = order[start:stop]
        out["x_" + name], out["y_" + name] = x[index], y[index]
    return out


def load(mnist_dir=None, seed=0):
    """Loads MNIST t10k (or digits when `mnist_dir` is None) and splits it."""
    if mnist_dir:
        x, y, name = load_mnist(mnist_dir)
    else:
        x, y, name = load_digits_data()
    data = split(x, y, seed=seed)
    data["name"] = name
    return data
