"""The `keras-guided demo`: train to be cut, cut, fine-tune, export.

On scikit-learn's bundled digits (1,797 8x8 images, no download):

1. train a small CNN with BatchNormalization under
   `keras_guided.GuidedPruning` (guided group penalties in proximal mode:
   whole units reach exact zero, linear guidance decides which go first);
2. remove the dead units with `keras_guided.prune_model` (exact: the pruned
   model computes what the trained one computes);
3. fine-tune the smaller model briefly;
4. export both models to `.tflite` (float32 and int8) with
   `keras_guided.export_tflite`, verified against Keras;
5. print a before/after table: units, params, FLOPs, accuracy, `.tflite`
   bytes and latency.

Artifacts go to `out_dir`: `before.keras`, `pruned.keras`, the `.tflite`
files, `results.md` (the table) and `results.json` (the numbers).
"""

import json
import os
import time

import numpy as np

# Full run / quick run (smoke tests).
_SETTINGS = {
    False: {"epochs": 30, "finetune_epochs": 5, "strength": 0.15,
            "warmup_epochs": 3, "settle_epochs": 2, "num_runs": 100},
    True: {"epochs": 5, "finetune_epochs": 1, "strength": 0.6,
           "warmup_epochs": 1, "settle_epochs": 1, "num_runs": 10},
}
_LEARNING_RATE = 3e-3
_BATCH_SIZE = 64


def load_data(seed=0):
    """Digits as `(x_train, y_train, x_test, y_test)`, images in [0, 1].

    A stratified 80/20 split; images have shape `(8, 8, 1)`.

    Examples:
        >>> import keras_guided.demo
        >>> x_train, y_train, x_test, y_test = keras_guided.demo.load_data()
        >>> x_train.shape, x_test.shape
        ((1437, 8, 8, 1), (360, 8, 8, 1))
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target,
        test_size=0.2,
        random_state=seed,
        stratify=digits.target,
    )
    return x_train, y_train, x_test, y_test


def build_model():
    """The demo CNN: two conv + BN + ReLU + pool blocks, a Dense head.

    Examples:
        >>> import keras_guided.demo
        >>> keras_guided.demo.build_model().count_params()
        36298
    """
    import keras

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def _compile(model, learning_rate):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def _schedule(settings):
    """Linear warm-up, constant, then 0 for the last `settle_epochs`.

    The final epochs without penalty (dead units stay dead) let the
    surviving weights and the BatchNormalization statistics settle.
    """
    strength = settings["strength"]
    warmup = settings["warmup_epochs"]
    release = settings["epochs"] - settings["settle_epochs"]

    def schedule(epoch):
        if epoch >= release:
            return 0.0
        return strength * min(1.0, (epoch + 1) / warmup)

    return schedule


def _accuracy(model, x, y):
    from keras_guided import export as export_lib

    probabilities = export_lib._keras_outputs(model, x)
    return float(np.mean(np.argmax(probabilities, axis=-1) == y))


def _prunable_units(model):
    from keras_guided import graph

    groups = graph.find_unit_groups(model)
    return int(sum(g.num_units for g in groups if g.prunable))


def _tflite_accuracy(path, x, y):
    from ai_edge_litert.interpreter import Interpreter

    from keras_guided import export as export_lib

    with open(path, "rb") as f:
        interpreter = Interpreter(model_content=f.read())
    interpreter.allocate_tensors()
    probabilities = export_lib._run_litert(interpreter, x)
    return float(np.mean(np.argmax(probabilities, axis=-1) == y))


class _Progress:
    def __init__(self, verbose):
        self.verbose = verbose
        self.start = time.perf_counter()

    def __call__(self, message):
        if self.verbose:
            elapsed = time.perf_counter() - self.start
            print(f"[{elapsed:5.1f}s] {message}", flush=True)


def _live_units_logger(progress):
    import keras

    class LiveUnits(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            progress(
                f"  epoch {epoch + 1}: loss {logs.get('loss', 0):.3f}, "
                f"accuracy {logs.get('accuracy', 0):.3f}, live units "
                f"{int(logs.get('live_units', 0))}"
            )

    return LiveUnits()


def run_demo(out_dir="keras_guided_demo", seed=0, quick=False, verbose=True):
    """Runs the whole demo and returns its numbers.

    Args:
        out_dir: directory for the artifacts (created if missing). Defaults
            to `"keras_guided_demo"`.
        seed: random seed for data split, initialization and training.
            Defaults to 0.
        quick: a few epochs only, for smoke tests (seconds instead of about
            a minute). Defaults to `False`.
        verbose: print progress and the table. Defaults to `True`.

    Returns:
        A dict with `"before"` and `"after"` (each: units, params, flops,
        accuracy, tflite bytes, int8 accuracy, latencies),
        `"accuracy_right_after_pruning"`, `"prune_max_abs_diff"`, `"table"`
        (markdown) and `"files"` (artifact paths).

    Raises:
        ImportError: if scikit-learn or ai-edge-litert is missing.

    Example (about 20 seconds, so not run as a doctest):

    ```python
    import keras_guided.demo
    results = keras_guided.demo.run_demo("/tmp/demo", quick=True)
    print(results["table"])
    ```
    """
    import keras

    import keras_guided
    from keras_guided import export as export_lib
    from keras_guided import stats

    settings = _SETTINGS[bool(quick)]
    progress = _Progress(verbose)
    os.makedirs(out_dir, exist_ok=True)
    keras.utils.set_random_seed(seed)

    x_train, y_train, x_test, y_test = load_data(seed)
    progress(
        f"digits: {len(x_train)} training and {len(x_test)} test images "
        "(8x8)"
    )

    # 1. Train to be cut.
    model = build_model()
    _compile(model, _LEARNING_RATE)
    pruning = keras_guided.GuidedPruning(
        strength=settings["strength"],
        guidance="linear",
        mode="proximal",
        schedule=_schedule(settings),
    )
    progress(
        f"training {model.name} ({stats.count_params(model):,} params) for "
        f"{settings['epochs']} epochs with GuidedPruning(strength="
        f"{settings['strength']}, guidance='linear', mode='proximal'), "
        f"the last {settings['settle_epochs']} without penalty"
    )
    model.fit(
        x_train,
        y_train,
        epochs=settings["epochs"],
        batch_size=_BATCH_SIZE,
        verbose=0,
        callbacks=[pruning, _live_units_logger(progress)],
    )
    before = model
    files = {"before.keras": os.path.join(out_dir, "before.keras")}
    before.save(files["before.keras"])

    # 2. Cut.
    progress("removing dead units with prune_model ...")
    pruned, prune_diff = _prune(before, x_test[:64])
    accuracy_after_pruning = _accuracy(pruned, x_test, y_test)
    progress(
        f"pruned: {_prunable_units(before)} -> {_prunable_units(pruned)} "
        f"units, max |pruned - trained| = {prune_diff:.2g} on test images"
    )

    # 3. Fine-tune.
    progress(f"fine-tuning for {settings['finetune_epochs']} epoch(s) ...")
    after = pruned
    _compile(after, _LEARNING_RATE / 3)
    after.fit(
        x_train,
        y_train,
        epochs=settings["finetune_epochs"],
        batch_size=_BATCH_SIZE,
        verbose=0,
    )
    files["pruned.keras"] = os.path.join(out_dir, "pruned.keras")
    after.save(files["pruned.keras"])

    # 4. Export and measure.
    results = {}
    calibration = x_train[:256]
    for name, current in (("before", before), ("after", after)):
        row = {
            "units": _prunable_units(current),
            "params": stats.count_params(current),
            "flops": stats.count_flops(current),
            "accuracy": _accuracy(current, x_test, y_test),
        }
        stem = "before" if name == "before" else "pruned"
        for quantization in (None, "int8"):
            suffix = "" if quantization is None else "_int8"
            path = os.path.join(out_dir, f"{stem}{suffix}.tflite")
            progress(
                f"exporting {os.path.basename(path)} "
                f"({quantization or 'float32'}) ..."
            )
            report = export_lib.export_tflite(
                current,
                path,
                quantization=quantization,
                representative_data=calibration,
                sample_inputs=x_test[:64],
                measure_latency=True,
                num_runs=settings["num_runs"],
            )
            files[os.path.basename(path)] = path
            key = "float32" if quantization is None else "int8"
            row[f"tflite_bytes_{key}"] = report.bytes
            row[f"latency_ms_{key}"] = report.latency_ms
            row[f"tflite_max_abs_diff_{key}"] = report.max_abs_diff
            row[f"tflite_accuracy_{key}"] = _tflite_accuracy(
                path, x_test, y_test
            )
        results[name] = row

    table = _table(results["before"], results["after"])
    summary = {
        "before": results["before"],
        "after": results["after"],
        "accuracy_right_after_pruning": accuracy_after_pruning,
        "prune_max_abs_diff": prune_diff,
        "seed": seed,
        "quick": bool(quick),
        "table": table,
        "files": files,
    }
    files["results.md"] = os.path.join(out_dir, "results.md")
    files["results.json"] = os.path.join(out_dir, "results.json")
    _write_text(files["results.md"], table + "\n")
    _write_text(
        files["results.json"], json.dumps(summary, indent=2, default=float)
    )
    if verbose:
        print()
        print(table)
        print()
        print(
            f"Accuracy right after pruning, before fine-tuning: "
            f"{accuracy_after_pruning:.2%} (trained model: "
            f"{results['before']['accuracy']:.2%}). Latency is the median "
            "of batch-1 LiteRT runs on this machine, 1 thread."
        )
        print(f"Artifacts in {os.path.abspath(out_dir)}")
    progress("done")
    return summary


def _prune(model, sample_inputs):
    """Removes the dead units; returns (pruned model, max |difference|).

    The difference is measured here on real test images (pruned vs trained
    model), on top of `prune_model`'s own check on random inputs.
    """
    from keras_guided import export as export_lib
    from keras_guided.surgery import prune_model

    pruned = prune_model(model, sample_inputs=sample_inputs)
    expected = export_lib._keras_outputs(model, sample_inputs)
    actual = export_lib._keras_outputs(pruned, sample_inputs)
    return pruned, float(np.max(np.abs(expected - actual)))


def _table(before, after):
    from keras_guided import stats

    def ratio(key):
        if not before[key]:
            return ""
        return f"{after[key] / before[key]:.2f}x"

    def percent(value):
        return f"{value:.2%}"

    def size(value):
        return f"{value:,}"

    def milliseconds(value):
        return f"{value:.4f}"

    spec = [
        ("units (prunable layers)", "units", size, True),
        ("params", "params", size, True),
        ("FLOPs per image", "flops", size, True),
        ("test accuracy (Keras)", "accuracy", percent, False),
        (".tflite bytes, float32", "tflite_bytes_float32", size, True),
        (".tflite bytes, int8", "tflite_bytes_int8", size, True),
        ("test accuracy, int8 .tflite", "tflite_accuracy_int8", percent,
         False),
        ("latency ms, float32", "latency_ms_float32", milliseconds, True),
        ("latency ms, int8", "latency_ms_int8", milliseconds, True),
    ]
    rows = []
    for label, key, form, with_ratio in spec:
        rows.append(
            {
                "": label,
                "before": form(before[key]),
                "after (pruned + fine-tuned)": form(after[key]),
                "after / before": ratio(key) if with_ratio else "",
            }
        )
    return stats.format_table(rows)


def _write_text(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.tmp"
    )
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)
