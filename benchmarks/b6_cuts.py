"""B6's cache of cuts: the pruned network a cell's regularization phase
ends with, kept so that another cell with the same first phase (a variant
that changes only the fine-tuning, such as `guided:ft_low` beside
`guided`) starts from it instead of training that phase again.

A cut is stored under a key that names everything its phase depends on:
the reference's weights (a digest of them as loaded), the data split, the
seed, the budget, the method and its phase settings, the phase's learning
rate and every other setting of the grid, the TensorFlow threads (the
float sums' order) and a digest of the code that trains and cuts (the
library and the benchmark modules the phase runs). The fine-tuning's data
stream is seeded by the cell's seed alone (`cifar.epoch_order`), not by
what the first phase drew, so a cell started from a stored cut computes
what it would have computed from a cut it trained itself. A loaded cut
is checked before use: its validation accuracy must equal the one
recorded when it was stored, or the phase is trained again.

A cell records `cut_from_cache` and `cut_seconds` (the phase's training
time when it was trained, whichever cell trained it); its `seconds` is
that plus its own fine-tuning, the time the cell costs without a cache.
"""

import contextlib
import glob
import hashlib
import json
import os

import numpy as np

DEFAULT_DIR = os.path.join(
    os.path.expanduser("~"), ".cache", "keras_guided", "b6_cuts"
)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The benchmark modules a regularization phase and a cut run.
_PHASE_MODULES = (
    "b4_cifar.py",
    "b4_torch.py",
    "b4_torch_client.py",
    "b6_cifar.py",
    "cifar.py",
    "resnet_cifar.py",
)


def code_digest():
    """sha256 (16 hex digits) over the library's Python files and the
    benchmark modules a phase runs: a change to either keys new cuts."""
    if not hasattr(code_digest, "value"):
        files = sorted(
            glob.glob(
                os.path.join(_ROOT, "keras_guided", "**", "*.py"),
                recursive=True,
            )
        ) + [os.path.join(_ROOT, "benchmarks", m) for m in _PHASE_MODULES]
        digest = hashlib.sha256()
        for path in files:
            if os.path.exists(path):
                digest.update(os.path.relpath(path, _ROOT).encode())
                with open(path, "rb") as handle:
                    digest.update(handle.read())
        code_digest.value = digest.hexdigest()[:16]
    return code_digest.value


def weights_digest(model):
    """sha256 (16 hex digits) over a model's weight arrays, in order: the
    reference a first phase starts from, as it is in memory."""
    import keras

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.path.encode())
        value = keras.ops.convert_to_numpy(weight)
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:16]


def data_digest(data):
    """sha256 (16 hex digits) over the arrays of a data dict (the split a
    phase trains and is checked on), kept per dict."""
    cached = getattr(data_digest, "last", None)
    if cached is not None and cached[0] is data:
        return cached[1]
    digest = hashlib.sha256()
    for name in sorted(data):
        value = data[name]
        if isinstance(value, np.ndarray):
            digest.update(name.encode())
            digest.update(str(value.shape).encode())
            digest.update(np.ascontiguousarray(value).tobytes())
    data_digest.last = (data, digest.hexdigest()[:16])
    return data_digest.last[1]


def key(parts):
    """The cache key of a first phase described by the JSON-able `parts`
    (a dict naming the reference by its `weights_digest`)."""
    text = json.dumps(
        {**parts, "code": code_digest()}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _paths(cache_dir, name):
    stem = os.path.join(cache_dir, name)
    return stem + ".keras", stem + ".json"


def save(cache_dir, name, model, info, seconds):
    """Stores the cut `model` with its `info` and the phase's `seconds`;
    the info file, written last and renamed into place, marks it whole."""
    os.makedirs(cache_dir, exist_ok=True)
    model_path, info_path = _paths(cache_dir, name)
    tmp = f"{model_path}.{os.getpid()}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, model_path)
    tmp = f"{info_path}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        json.dump({"info": info, "seconds": seconds}, handle)
    os.replace(tmp, info_path)


def load(cache_dir, name, val_accuracy):
    """`(model, info, seconds)` of a stored cut, or None when there is
    none, when it does not load, or when the loaded model's validation
    accuracy (`val_accuracy(model)`) differs from the one stored with it
    (then the files are removed and the phase trains again)."""
    import keras

    model_path, info_path = _paths(cache_dir, name)
    if not (os.path.exists(model_path) and os.path.exists(info_path)):
        return None
    with open(info_path) as handle:
        stored = json.load(handle)
    try:
        model = keras.saving.load_model(model_path, compile=False)
        same = val_accuracy(model) == stored["info"]["after_cut_val"]
    except Exception:  # a file cut short or from another Keras: train again
        same = False
    if not same:
        for path in (model_path, info_path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        return None
    return model, stored["info"], stored["seconds"]
