"""CIFAR-10 for B4: loader, cache, fixed split and seeded augmentation.

Pure numpy (and Pillow to decode the JPEG files once): the Keras arm and
the PyTorch arm (`benchmarks/b4_torch.py`, its own process) import this
module alike, so both see the same batches in the same order for a seed.

The shared files (`cifar10_train.npz`, `cifar10_test.npz`: `jpeg`,
`offsets`, `labels`) are read in place; the decoded uint8 arrays are cached
outside the repository (`~/.cache/keras_guided_bench/cifar10.npz` unless
`cache` says otherwise).
"""

import os
import tempfile

import numpy as np

TRAIN_FILE = "cifar10_train.npz"
TEST_FILE = "cifar10_test.npz"
DEFAULT_CACHE = os.path.join(
    os.path.expanduser("~"), ".cache", "keras_guided_bench", "cifar10.npz"
)
VALIDATION = 5000
SPLIT_SEED = 1234  # the train/validation split never changes with `--seeds`
# Per-channel statistics of the CIFAR-10 training images (0..1 scale).
MEAN = np.array([0.4914, 0.4822, 0.4465], dtype="float32")
STD = np.array([0.2470, 0.2435, 0.2616], dtype="float32")


def set_threads(threads):
    """TensorFlow's intra- and inter-op threads (nothing for `None` or
    another backend). Once TensorFlow has started (a second run in the
    same process) they cannot change, and the call leaves them."""
    import keras  # here: the PyTorch arm imports this module without it

    if not threads or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # Already initialized (called in-process).
        pass


def jit_compile():
    """Whether the Keras arms compile their train step with XLA.

    Keras compiles with XLA only where a GPU is present
    (`jit_compile="auto"` is False on a CPU-only machine). On a CPU the
    faster choice on TensorFlow depends on whether it runs its oneDNN
    kernels, which it does by default only on CPUs with AVX-512 VNNI,
    BF16 or AMX (or where `TF_ENABLE_ONEDNN_OPTS=1`). Measured with
    `benchmarks/b6_throughput.py` (ResNet-20, batch 128): on 2 AVX2 cores
    of an AMD EPYC, without oneDNN, XLA trained 1.2 to 2 times faster than
    the plain graph; on an Intel Xeon with AVX-512 and AMX, one thread
    beside two busy processes, the plain graph with oneDNN trained 159
    images/s against XLA's 102 (`docs/benchmarks_b6_throughput.json`).
    So XLA is asked for exactly where oneDNN is off. Another backend, or
    a TensorFlow without the query, answers True (XLA; on JAX, jit), the
    choice before it was measured."""
    try:
        import keras  # here: the PyTorch arm imports this module without it
    except ImportError:
        return True
    if keras.backend.backend() != "tensorflow":
        return True
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return True
    try:
        return not _pywrap_util_port.IsMklEnabled()
    except AttributeError:  # a private query; keep the choice before it
        return True


def machine(threads=None):
    """What a timing ran on: the CPU's model name, the cores the process
    may use and its thread setting, e.g. 'Intel(R) Xeon(R) Processor, 2
    cores, 1 thread', and ', no XLA' where the Keras arms train without it
    (`jit_compile()`: about 1.5 times faster on such a machine). A cell's
    expected time comes from cells timed on the same machine when there
    are any."""
    from benchmarks import report

    cores = (
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count()
    )
    text = f"{report.cpu_model()}, {cores} cores"
    if threads:
        text += f", {threads} thread" + ("s" if threads > 1 else "")
    if not jit_compile():
        text += ", no XLA"
    return text


def decode(path):
    """`(images uint8 [n, 32, 32, 3], labels uint8 [n])` of one shared file."""
    import io

    from PIL import Image

    with np.load(path) as archive:
        jpeg, offsets, labels = (
            archive["jpeg"],
            archive["offsets"],
            archive["labels"],
        )
    if len(offsets) != len(labels) + 1:
        raise ValueError(
            f"{path}: `offsets` must have one entry more than `labels`. "
            f"Received: {len(offsets)} offsets, {len(labels)} labels."
        )
    images = np.empty((len(labels), 32, 32, 3), dtype=np.uint8)
    for i in range(len(labels)):
        data = jpeg[offsets[i] : offsets[i + 1]].tobytes()
        with Image.open(io.BytesIO(data)) as image:
            images[i] = np.asarray(image.convert("RGB"))
    return images, labels.astype(np.uint8)


def load(cifar_dir, cache=DEFAULT_CACHE):
    """The decoded images: `{"x_train", "y_train", "x_test", "y_test"}`
    (50,000 and 10,000, uint8 NHWC), decoded once and cached at `cache`
    (`None`: no cache)."""
    if cache and os.path.exists(cache):
        with np.load(cache) as archive:
            return {k: archive[k] for k in archive.files}
    if cifar_dir is None:
        raise FileNotFoundError(
            "B4 needs the CIFAR-10 files: pass --cifar-dir, a folder holding "
            f"{TRAIN_FILE} and {TEST_FILE} (the shared cifar10-jpeg copy)."
        )
    paths = [os.path.join(cifar_dir, name) for name in (TRAIN_FILE, TEST_FILE)]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(
            f"--cifar-dir must hold {TRAIN_FILE} and {TEST_FILE}. Missing: "
            f"{missing}. Pass the folder of the shared cifar10-jpeg copy."
        )
    x_train, y_train = decode(paths[0])
    x_test, y_test = decode(paths[1])
    arrays = {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
    }
    if cache:
        directory = os.path.dirname(os.path.abspath(cache))
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as f:
                np.savez(f, **arrays)
            os.replace(temporary, cache)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    return arrays


def split(arrays, validation=VALIDATION, seed=SPLIT_SEED):
    """A fixed train/validation split of the training images (45,000 /
    5,000 for CIFAR-10) plus the untouched test images, all uint8."""
    order = np.random.default_rng(seed).permutation(len(arrays["y_train"]))
    val, train = order[:validation], np.sort(order[validation:])
    val = np.sort(val)
    return {
        "x_train": arrays["x_train"][train],
        "y_train": arrays["y_train"][train],
        "x_val": arrays["x_train"][val],
        "y_val": arrays["y_train"][val],
        "x_test": arrays["x_test"],
        "y_test": arrays["y_test"],
    }


def shrink_evaluation(data, count):
    """Keeps `count` evenly spaced validation and test images (every class:
    the files are ordered by class), in place; `None` keeps all."""
    if not count:
        return data
    for part in ("val", "test"):
        n = len(data[f"y_{part}"])
        index = np.linspace(0, n - 1, min(count, n)).astype(int)
        data[f"x_{part}"] = data[f"x_{part}"][index]
        data[f"y_{part}"] = data[f"y_{part}"][index]
    return data


def normalize(images):
    """uint8 NHWC -> float32 NHWC, per-channel standardized."""
    return ((images.astype("float32") / 255.0) - MEAN) / STD


def augment(images, rng):
    """Pad-4 random crop and random horizontal flip (uint8 NHWC in and out),
    drawn from the numpy `rng`."""
    n, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    dy = rng.integers(0, 9, size=n)
    dx = rng.integers(0, 9, size=n)
    flip = rng.random(n) < 0.5
    rows = dy[:, None] + np.arange(height)[None, :]
    cols = dx[:, None] + np.arange(width)[None, :]
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    return padded[
        np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]
    ]


def epoch_order(num_train, seed, stream, epoch, images_per_epoch):
    """The training indices of one epoch: a fresh seeded sample of
    `images_per_epoch` (all, shuffled, when it is `None` or too large).

    `stream` names the training phase (e.g. 1 for the reference, 2 for
    pruning, 3 for fine-tuning), so phases draw different samples."""
    rng = np.random.default_rng([seed, stream, epoch])
    order = rng.permutation(num_train)
    if images_per_epoch is not None and images_per_epoch < num_train:
        order = order[:images_per_epoch]
    return order


def epoch_batches(data, seed, stream, epoch, images_per_epoch, batch_size=128):
    """Yields `(x float32 NHWC, y int32)` batches of one training epoch:
    the seeded sample of `epoch_order`, augmented by a numpy RNG seeded by
    `(seed, stream, epoch)`, in a fixed order. The same arguments give the
    same batches in any process."""
    order = epoch_order(
        len(data["y_train"]), seed, stream, epoch, images_per_epoch
    )
    rng = np.random.default_rng([seed, stream, epoch, 1])
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        images = augment(data["x_train"][index], rng)
        yield normalize(images), data["y_train"][index].astype("int32")


def steps_per_epoch(data, images_per_epoch, batch_size=128):
    n = len(data["y_train"])
    if images_per_epoch is not None:
        n = min(n, images_per_epoch)
    return -(-n // batch_size)


def stream_batches(
    data, seed, stream, epochs, images_per_epoch, batch_size=128, first_epoch=0
):
    """`epoch_batches` for `epochs` epochs in a row (for `fit` with
    `steps_per_epoch`), then repeats the last epoch forever so a generator
    read ahead by the input pipeline never runs dry."""
    epoch = first_epoch
    while True:
        yield from epoch_batches(
            data, seed, stream, epoch, images_per_epoch, batch_size
        )
        if epoch < first_epoch + epochs - 1:
            epoch += 1
