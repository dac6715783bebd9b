"""The `keras-guided demo`: train to be cut, cut, fine-tune, export.

On scikit-learn's bundled digits (1,797 8x8 images, no download):

1. train a small CNN with BatchNormalization the plain way: this is
   "before", the model a user has;
2. train it on with the budget recipe,
   `keras_guided.GuidedPruning(target={"flops": 0.1})`: the callback steers
   the guided group penalty so the live network reaches 10 % of the FLOPs
   on schedule (whole units reach exact zero), then releases it and lets
   the rest recover;
3. remove the dead units with `keras_guided.prune_model` (exact: the pruned
   model computes what the trained one computes);
4. fine-tune the smaller model by distillation from "before"
   (`keras_guided.Distiller`), keeping the epoch with the best accuracy on
   a validation split held out of training (the model right after removal
   is a candidate too, so the fine-tune never ends below it there);
5. export both models to `.tflite` (float32 and int8) with
   `keras_guided.export_tflite`, verified against Keras;
6. print a before/after table: units, params, FLOPs, accuracy, `.tflite`
   bytes and latency.

A seed gives the same numbers on one machine: `keras.utils.set_random_seed`
seeds Python, NumPy and the backend, the data split and `fit`'s shuffles
follow from it, and on the TensorFlow backend
`tf.config.experimental.enable_op_determinism()` makes the kernels
deterministic (for the rest of the process). Other machines (CPU, thread
count, library versions) may give other numbers.

Artifacts go to `out_dir`: `before.keras`, `pruned.keras`, the `.tflite`
files, `results.md` (the table) and `results.json` (the numbers); the
table, the paragraph under it and those two files come from `_report`.
"""

import os
import time

import numpy as np

from keras_guided.demo import _report

# Full run / quick run (smoke tests).
_SETTINGS = {
    False: {
        "epochs": 20,
        "prune_epochs": 15,
        "finetune_epochs": 10,
        "num_runs": 100,
    },
    True: {
        "epochs": 3,
        "prune_epochs": 3,
        "finetune_epochs": 1,
        "num_runs": 10,
    },
}
_BUDGET = {"flops": 0.1}
_LEARNING_RATE = 3e-3
_BATCH_SIZE = 64
_VALIDATION_SHARE = 0.15


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


def split_validation(x_train, y_train, seed=0):
    """`(x_fit, y_fit, x_val, y_val)`: a stratified share
    (`_VALIDATION_SHARE`, 15 %) of the training images held out to pick
    the fine-tune's best epoch; the demo trains on the rest.

    Examples:
        >>> import keras_guided.demo
        >>> x, y, _, _ = keras_guided.demo.load_data()
        >>> x_fit, y_fit, x_val, y_val = keras_guided.demo.split_validation(
        ...     x, y)
        >>> x_fit.shape[0], x_val.shape[0]
        (1221, 216)
    """
    from sklearn.model_selection import train_test_split

    x_fit, x_val, y_fit, y_val = train_test_split(
        x_train,
        y_train,
        test_size=_VALIDATION_SHARE,
        random_state=seed,
        stratify=y_train,
    )
    return x_fit, y_fit, x_val, y_val


def make_deterministic(seed):
    """Seeds Python, NumPy and the backend (`keras.utils.set_random_seed`)
    and, on the TensorFlow backend, turns on op determinism for the rest
    of the process (`tf.config.experimental.enable_op_determinism`)."""
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


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


def _accuracy(model, x, y):
    from keras_guided.export import _verification

    probabilities = _verification.keras_outputs(model, x)
    return float(np.mean(np.argmax(probabilities, axis=-1) == y))


def _prunable_units(model):
    from keras_guided import graph

    groups = graph.find_unit_groups(model)
    return int(sum(g.num_units for g in groups if g.prunable))


def _tflite_accuracy(path, x, y):
    from ai_edge_litert.interpreter import Interpreter

    from keras_guided.export import _litert_run

    with open(path, "rb") as f:
        interpreter = Interpreter(model_content=f.read())
    interpreter.allocate_tensors()
    probabilities = _litert_run.run_litert(interpreter, x)
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


def _best_epoch_keeper(model, x_val, y_val, progress):
    """A callback keeping `model`'s weights of the epoch with the best
    validation accuracy, the state before the first epoch included (epoch
    0; ties keep the earlier), and restoring them when `fit` ends."""
    import keras

    class BestEpoch(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.history = [_accuracy(model, x_val, y_val)]
            self.best_epoch = 0
            self.best_weights = model.get_weights()

        def on_epoch_end(self, epoch, logs=None):
            accuracy = _accuracy(model, x_val, y_val)
            self.history.append(accuracy)
            progress(
                f"  fine-tune epoch {epoch + 1}: validation accuracy "
                f"{accuracy:.2%}"
            )
            if accuracy > self.history[self.best_epoch]:
                self.best_epoch = epoch + 1
                self.best_weights = model.get_weights()

        def on_train_end(self, logs=None):
            model.set_weights(self.best_weights)

    return BestEpoch()


def run_demo(out_dir="keras_guided_demo", seed=0, quick=False, verbose=True):
    """Runs the whole demo and returns its numbers.

    Args:
        out_dir: directory for the artifacts (created if missing). Defaults
            to `"keras_guided_demo"`.
        seed: random seed for data split, initialization and training
            (with TensorFlow op determinism, see the module doc: the same
            seed gives the same numbers on one machine). Defaults to 0.
        quick: a few epochs only, for smoke tests (seconds instead of about
            a minute). Defaults to `False`.
        verbose: print progress and the table. Defaults to `True`.

    Returns:
        A dict with `"before"` and `"after"` (each: units, params, flops,
        accuracy, tflite bytes, int8 accuracy, latencies),
        `"accuracy_right_after_pruning"`, `"prune_max_abs_diff"`,
        `"finetune"` (validation accuracy right after removal and per
        fine-tune epoch, the epoch kept, its validation accuracy),
        `"table"` (markdown) and `"files"` (artifact paths).

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
    make_deterministic(seed)

    x_train, y_train, x_test, y_test = load_data(seed)
    x_train, y_train, x_val, y_val = split_validation(x_train, y_train, seed)
    progress(
        f"digits: {len(x_train)} training, {len(x_val)} validation and "
        f"{len(x_test)} test images (8x8)"
    )

    # 1. The plain network: what the user has.
    before = build_model()
    _compile(before, _LEARNING_RATE)
    progress(
        f"training {before.name} ({stats.count_params(before):,} params) "
        f'for {settings["epochs"]} epochs, no penalty ("before")'
    )
    before.fit(
        x_train,
        y_train,
        epochs=settings["epochs"],
        batch_size=_BATCH_SIZE,
        verbose=0,
    )
    files = {"before.keras": os.path.join(out_dir, "before.keras")}
    before.save(files["before.keras"])

    # 2. Train to be cut, on a budget.
    model = keras.models.clone_model(before)
    model.set_weights(before.get_weights())
    _compile(model, _LEARNING_RATE)
    pruning = keras_guided.GuidedPruning(target=_BUDGET)
    progress(
        f"training on for {settings['prune_epochs']} epochs with "
        f"GuidedPruning(target={_BUDGET}): the live network follows a path "
        "to the budget, then recovers"
    )
    model.fit(
        x_train,
        y_train,
        epochs=settings["prune_epochs"],
        batch_size=_BATCH_SIZE,
        verbose=0,
        callbacks=[pruning, _live_units_logger(progress)],
    )
    budget_report = pruning.budget_report
    progress(
        f"landed at epoch {budget_report['landed_at_epoch'] + 1}: "
        f"{budget_report['value']:,.0f} of {budget_report['start']:,.0f} "
        f"FLOPs live (budget {budget_report['goal']:,.0f})"
    )

    # 3. Cut.
    progress("removing dead units with prune_model ...")
    pruned, prune_diff = _prune(model, x_test[:64])
    accuracy_after_pruning = _accuracy(pruned, x_test, y_test)
    accuracy_trained = _accuracy(model, x_test, y_test)
    progress(
        f"pruned: {_prunable_units(model)} -> {_prunable_units(pruned)} "
        f"units, max |pruned - trained| = {prune_diff:.2g} on test images"
    )

    # 4. Fine-tune by distillation from the plain network.
    progress(
        f"fine-tuning for {settings['finetune_epochs']} epoch(s) by "
        'distillation from "before", keeping the best epoch on the '
        "validation images ..."
    )
    after = pruned
    distiller = keras_guided.Distiller(after, before, from_logits=False)
    distiller.compile(
        optimizer=keras.optimizers.Adam(_LEARNING_RATE / 3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    keeper = _best_epoch_keeper(after, x_val, y_val, progress)
    distiller.fit(
        x_train,
        y_train,
        epochs=settings["finetune_epochs"],
        batch_size=_BATCH_SIZE,
        verbose=0,
        callbacks=[keeper],
    )
    finetune = {
        "validation_accuracy_right_after_pruning": keeper.history[0],
        "validation_accuracy_per_epoch": keeper.history[1:],
        "kept_epoch": keeper.best_epoch,
        "validation_accuracy": keeper.history[keeper.best_epoch],
    }
    progress(
        f"kept fine-tune epoch {keeper.best_epoch} (0: right after removal):"
        f" validation accuracy {finetune['validation_accuracy']:.2%}"
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

    table = _report.table(results["before"], results["after"])
    summary = {
        "before": results["before"],
        "after": results["after"],
        "accuracy_right_after_pruning": accuracy_after_pruning,
        "accuracy_trained_with_budget": accuracy_trained,
        "budget": report_summary(budget_report),
        "prune_max_abs_diff": prune_diff,
        "finetune": finetune,
        "seed": seed,
        "quick": bool(quick),
        "table": table,
        "files": files,
    }
    _report.write_results(out_dir, summary)
    if verbose:
        print()
        print(table)
        print()
        print(_report.explanation(summary, settings, len(x_val)))
        print(f"Artifacts in {os.path.abspath(out_dir)}")
    progress("done")
    return summary


def report_summary(report):
    """The budget report without the controller trace (for JSON)."""
    return {k: v for k, v in report.items() if k != "trace"}


def _prune(model, sample_inputs):
    """Removes the dead units; returns (pruned model, max |difference|).

    The difference is measured here on real test images (pruned vs trained
    model), on top of `prune_model`'s own check on random inputs.
    """
    from keras_guided.export import _verification
    from keras_guided.surgery import prune_model

    pruned = prune_model(model, sample_inputs=sample_inputs)
    expected = _verification.keras_outputs(model, sample_inputs)
    actual = _verification.keras_outputs(pruned, sample_inputs)
    return pruned, float(np.max(np.abs(expected - actual)))
