"""LeNet-300-100 trained to be cut, then cut: guided group regularization.

The classic fully connected MNIST network (784-300-100-10, LeCun et al.
1998) has far more hidden units than it needs. This example

1. attaches a `keras_guided.GuidedRegularizer(norm="group",
   guidance="linear")` to both hidden layers: it declares *which* units
   should go first (linear guidance: unit 0 is protected the most, the last
   unit the least) and adds a mild group-lasso term to the loss;
2. trains it the plain way first (the network you have), then on a budget
   with `keras_guided.GuidedPruning(target={"units":
   66}, guidance="from_regularizers")`: after every optimizer step each
   whole unit group (kernel column, bias, and the next layer's input row)
   is shrunk towards zero with the regularizers' coefficients, so units
   reach *exact* zero even under Adam, and the callback steers the strength
   so that 66 of the 400 hidden units are live after two thirds of the
   epochs (the rest recover);
3. removes the dead units with `keras_guided.prune_model` (a new, smaller
   model of standard Keras layers that computes the same function);
4. prints the hidden units kept, parameters and accuracy before/after.

Data: the MNIST idx files from `--mnist-dir` (`t10k-images-idx3-ubyte.gz`
and `t10k-labels-idx1-ubyte.gz`, gzipped or not; the `train-*` files are
used too when present), else scikit-learn's bundled 8x8 digits (64 inputs
instead of 784, no download).

    python examples/mnist_mlp.py --quick               # digits, seconds
    python examples/mnist_mlp.py --mnist-dir ~/mnist   # real MNIST

Artifacts in `--out` (default `./out_mnist_mlp`): `trained.keras`,
`pruned.keras` (loads with plain `keras.saving.load_model`) and
`results.json`.
"""

import argparse
import gzip
import json
import os
import struct
import time

# Keep TensorFlow's C++ start-up logs out of the example's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

# Settings for a full run and for `--quick` (a smoke test). No strength to
# guess: the budget controller calibrates and steers it (`--strength` only
# sets where it starts).
SETTINGS = {
    "full": {
        "plain_epochs": 10,
        "epochs": 20,
        "strength": None,
        "batch_size": 128,
    },
    "quick": {
        "plain_epochs": 4,
        "epochs": 9,
        "strength": None,
        "batch_size": 128,
    },
}
LEARNING_RATE = 2e-3
# Strength of the GuidedRegularizer's own loss term (per-kernel group lasso).
REGULARIZER_STRENGTH = 1e-5


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def read_idx(path):
    """Reads an idx file (the MNIST format), gzipped or not, as a numpy array.

    The format: two zero bytes, a type code (0x08 = uint8), the number of
    dimensions, then one big-endian int32 per dimension, then the data.
    """
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    zeros, type_code, num_dims = struct.unpack(">HBB", data[:4])
    if zeros != 0 or type_code != 0x08:
        raise ValueError(
            f"{path} is not a uint8 idx file: expected the header bytes "
            f"00 00 08, received {data[:3].hex(' ')}. Pass the MNIST "
            "*-ubyte(.gz) files."
        )
    shape = struct.unpack(f">{num_dims}I", data[4 : 4 + 4 * num_dims])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * num_dims)
    if array.size != int(np.prod(shape)):
        raise ValueError(
            f"{path} is truncated: its header says shape {shape} "
            f"({int(np.prod(shape))} values), the file holds {array.size}."
        )
    return array.reshape(shape)


def _find(directory, stem):
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    return None


def load_mnist(directory, seed):
    """MNIST from idx files as `(x_train, y_train, x_test, y_test, name)`.

    With only the 10,000 `t10k` digits, a fixed 80/20 split of them.
    """
    images = _find(directory, "t10k-images-idx3-ubyte")
    labels = _find(directory, "t10k-labels-idx1-ubyte")
    if images is None or labels is None:
        found = (
            sorted(os.listdir(directory))
            if os.path.isdir(directory)
            else "no such directory"
        )
        raise SystemExit(
            f"--mnist-dir {directory!r}: expected t10k-images-idx3-ubyte.gz "
            "and t10k-labels-idx1-ubyte.gz (gzipped or not) there, found "
            f"{found}."
        )
    x_test = read_idx(images).reshape(-1, 784).astype("float32") / 255.0
    y_test = read_idx(labels).astype("int64")
    train_images = _find(directory, "train-images-idx3-ubyte")
    train_labels = _find(directory, "train-labels-idx1-ubyte")
    if train_images and train_labels:
        x_train = read_idx(train_images).reshape(-1, 784)
        x_train = x_train.astype("float32") / 255.0
        y_train = read_idx(train_labels).astype("int64")
        return x_train, y_train, x_test, y_test, "MNIST (train / t10k)"
    order = np.random.default_rng(seed).permutation(len(x_test))
    split = int(0.8 * len(order))
    train, test = order[:split], order[split:]
    return (
        x_test[train],
        y_test[train],
        x_test[test],
        y_test[test],
        "MNIST t10k (80/20 split)",
    )


def load_digits_data(seed):
    """scikit-learn's 8x8 digits, flattened to 64 inputs in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        x,
        digits.target,
        test_size=0.2,
        random_state=seed,
        stratify=digits.target,
    )
    return x_train, y_train, x_test, y_test, "scikit-learn digits (8x8)"


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


def build_lenet_300_100(num_inputs, regularizer_strength):
    """LeNet-300-100 with a guided group regularizer on each hidden layer."""
    import keras

    import keras_guided

    def guided():
        # "linear" guidance: coefficients rise linearly with the unit index
        # (normalized to mean 1), so the last units are pushed hardest and
        # the survivors end up at the front of the layer.
        return keras_guided.GuidedRegularizer(
            strength=regularizer_strength, norm="group", guidance="linear"
        )

    inputs = keras.Input((num_inputs,), name="pixels")
    x = keras.layers.Dense(
        300, activation="relu", name="hidden1", kernel_regularizer=guided()
    )(inputs)
    x = keras.layers.Dense(
        100, activation="relu", name="hidden2", kernel_regularizer=guided()
    )(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="lenet_300_100")


def accuracy(model, x, y):
    """Test accuracy with direct (eager) calls: no compiled predict step."""
    import keras

    correct = 0
    for start in range(0, len(x), 1024):
        probabilities = keras.ops.convert_to_numpy(
            model(x[start : start + 1024], training=False)
        )
        correct += int(
            np.sum(np.argmax(probabilities, -1) == y[start : start + 1024])
        )
    return correct / len(x)


def hidden_units(model):
    return {
        name: model.get_layer(name).units for name in ("hidden1", "hidden2")
    }


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="LeNet-300-100 with guided group regularization, "
        "proximal GuidedPruning and exact removal of dead units."
    )
    parser.add_argument(
        "--mnist-dir",
        default=None,
        help="directory with the MNIST idx files "
        "(t10k-images-idx3-ubyte.gz, ...); default: "
        "scikit-learn digits",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few epochs only (CI smoke test)"
    )
    parser.add_argument(
        "--out",
        default="out_mnist_mlp",
        help="directory for artifacts (default: ./out_mnist_mlp)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs on the budget (default: 20, --quick: 9)",
    )
    parser.add_argument(
        "--keep-units",
        type=int,
        default=66,
        help="hidden units to keep, of 400 (default: 66)",
    )
    parser.add_argument(
        "--strength",
        type=float,
        default=None,
        help="GuidedPruning starting strength (default: calibrated)",
    )
    parser.add_argument(
        "--regularizer-strength",
        type=float,
        default=REGULARIZER_STRENGTH,
        help="strength of the GuidedRegularizer's loss term "
        f"(default: {REGULARIZER_STRENGTH:g})",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    settings = dict(SETTINGS["quick" if args.quick else "full"])
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    if args.strength is not None:
        settings["strength"] = args.strength
    start = time.perf_counter()

    def progress(message):
        print(f"[{time.perf_counter() - start:6.1f}s] {message}", flush=True)

    import keras

    import keras_guided

    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    if args.mnist_dir:
        x_train, y_train, x_test, y_test, data_name = load_mnist(
            args.mnist_dir, args.seed
        )
    else:
        x_train, y_train, x_test, y_test, data_name = load_digits_data(
            args.seed
        )
    progress(
        f"data: {data_name}, {len(x_train)} training and "
        f"{len(x_test)} test examples of {x_train.shape[1]} inputs"
    )

    # 1. The model, with guided regularizers on the hidden kernels.
    model = build_lenet_300_100(x_train.shape[1], args.regularizer_strength)
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    # 2. Train on a budget: keep `--keep-units` of the 400 hidden units.
    # The callback steers the strength so the live network reaches the
    # budget after two thirds of the epochs (the coefficients of the
    # GuidedRegularizers say which units go first), then releases it: dead
    # units stay dead and the survivors recover what they lost.
    progress(
        f"training {model.name} for {settings['plain_epochs']} epochs "
        "the plain way first (pruning starts from a trained network)"
    )
    model.fit(
        x_train,
        y_train,
        epochs=settings["plain_epochs"],
        batch_size=settings["batch_size"],
        verbose=0,
    )
    epochs = settings["epochs"]
    budget = {"units": args.keep_units}
    pruning = keras_guided.GuidedPruning(
        target=budget,
        guidance="from_regularizers",
        strength=settings["strength"],
    )

    class Progress(keras.callbacks.Callback):
        # Runs after GuidedPruning, so `logs` already has the live counts.
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            progress(
                f"epoch {epoch + 1:2d}/{epochs}: loss {logs['loss']:.3f}, "
                f"accuracy {logs['accuracy']:.3f}, strength "
                f"{logs['guided_strength']:.3g}, live units hidden1 "
                f"{int(logs['live_units/hidden1'])}/300, hidden2 "
                f"{int(logs['live_units/hidden2'])}/100"
            )

    progress(
        f"training {model.name} ({model.count_params():,} params) for "
        f"{epochs} epochs, GuidedPruning(target={budget}, "
        "guidance='from_regularizers')"
    )
    model.fit(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=settings["batch_size"],
        verbose=0,
        callbacks=[pruning, Progress()],
    )
    model.save(os.path.join(args.out, "trained.keras"))

    # 3. Remove the dead units. prune_model returns a new model and checks
    # it against the original on the sample inputs (report.max_abs_diff).
    accuracy_before = accuracy(model, x_test, y_test)
    pruned, report = keras_guided.prune_model(
        model, sample_inputs=x_test[:256], return_report=True
    )
    accuracy_after = accuracy(pruned, x_test, y_test)
    pruned_path = os.path.join(args.out, "pruned.keras")
    pruned.save(pruned_path)

    # 4. What changed.
    units_before, units_after = hidden_units(model), hidden_units(pruned)
    params_before = keras_guided.stats.count_params(model)
    params_after = keras_guided.stats.count_params(pruned)
    print()
    print(report.summary())
    print()
    for name in units_before:
        print(
            f"{name}: kept {units_after[name]} of {units_before[name]} "
            "hidden units"
        )
    print(
        f"params: {params_before:,} -> {params_after:,} "
        f"({params_after / params_before:.1%} kept)"
    )
    print(
        f"accuracy before removal: {accuracy_before:.2%}, after removal: "
        f"{accuracy_after:.2%} (test set, {len(x_test)} examples)"
    )

    results = {
        "data": data_name,
        "settings": settings,
        "seed": args.seed,
        "units_before": units_before,
        "units_after": units_after,
        "params_before": params_before,
        "params_after": params_after,
        "accuracy_before": accuracy_before,
        "accuracy_after": accuracy_after,
        "max_abs_diff": report.max_abs_diff,
    }
    write_json(os.path.join(args.out, "results.json"), results)
    progress(f"done; artifacts in {os.path.abspath(args.out)}")
    return results


def write_json(path, value):
    """Writes JSON atomically: a temporary file, then a rename."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
    os.replace(temporary, path)


if __name__ == "__main__":
    main()
