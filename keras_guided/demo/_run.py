"""`run_demo`: the demo's six steps, from the plain network to the
before/after table (see `keras_guided.demo`)."""

import os

from keras_guided.demo import _callbacks
from keras_guided.demo import _data
from keras_guided.demo import _measures
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


def _compile(model, learning_rate):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def run_demo(out_dir="keras_guided_demo", seed=0, quick=False, verbose=True):
    """Runs the whole demo and returns its numbers.

    Args:
        out_dir: directory for the artifacts (created if missing). Defaults
            to `"keras_guided_demo"`.
        seed: random seed for data split, initialization and training
            (with TensorFlow op determinism, see `keras_guided.demo`: the same
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
    progress = _callbacks.Progress(verbose)
    os.makedirs(out_dir, exist_ok=True)
    _data.make_deterministic(seed)

    x_train, y_train, x_test, y_test = _data.load_data(seed)
    x_train, y_train, x_val, y_val = _data.split_validation(
        x_train, y_train, seed
    )
    progress(
        f"digits: {len(x_train)} training, {len(x_val)} validation and "
        f"{len(x_test)} test images (8x8)"
    )

    # 1. The plain network: what the user has.
    before = _data.build_model()
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
        callbacks=[pruning, _callbacks.live_units_logger(progress)],
    )
    budget_report = pruning.budget_report
    progress(
        f"landed at epoch {budget_report['landed_at_epoch'] + 1}: "
        f"{budget_report['value']:,.0f} of {budget_report['start']:,.0f} "
        f"FLOPs live (budget {budget_report['goal']:,.0f})"
    )

    # 3. Cut.
    progress("removing dead units with prune_model ...")
    pruned, prune_diff = _measures.prune(model, x_test[:64])
    accuracy_after_pruning = _measures.accuracy(pruned, x_test, y_test)
    accuracy_trained = _measures.accuracy(model, x_test, y_test)
    units_trained = _measures.prunable_units(model)
    units_pruned = _measures.prunable_units(pruned)
    progress(
        f"pruned: {units_trained} -> {units_pruned} "
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
    keeper = _callbacks.best_epoch_keeper(after, x_val, y_val, progress)
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
            "units": _measures.prunable_units(current),
            "params": stats.count_params(current),
            "flops": stats.count_flops(current),
            "accuracy": _measures.accuracy(current, x_test, y_test),
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
            row[f"tflite_accuracy_{key}"] = _measures.tflite_accuracy(
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
