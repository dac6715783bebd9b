"""tfmot `prune_low_magnitude` baseline, run in its own process.

    TF_USE_LEGACY_KERAS=1 python -m benchmarks.tfmot_baseline request.json

tfmot needs the legacy `tf_keras` and breaks Keras 3 in the process that
imports it, so B1 calls this module through `subprocess` with a JSON
request (model name, input shape, target sparsity, epochs, path of an .npz
with the data split and the unregularized reference weights) and reads a
JSON answer. Nothing else in the benchmarks imports tfmot.

The equivalent tf_keras model starts from the reference weights, is pruned
to the target sparsity (unstructured, smallest magnitudes) with a
polynomial schedule over `epochs` fine-tune epochs, stripped and exported
to float32 `.tflite`: zeros cost as much as any weight there (only gzip
sees them), and no unit is removed.
"""

import gzip
import json
import os
import sys
import tempfile
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def _latency(content, num_runs, num_threads=1):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=num_threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(
        detail["index"], np.zeros(detail["shape"], detail["dtype"])
    )
    for _ in range(5):
        interpreter.invoke()
    times = []
    for _ in range(num_runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def main(request_path):
    with open(request_path) as f:
        request = json.load(f)
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from benchmarks import models as models_lib

    arrays = np.load(request["arrays"])
    data = {k: arrays[k] for k in arrays.files if k.startswith(("x_", "y_"))}
    weights = [
        arrays[f"weight_{i}"]
        for i in range(sum(k.startswith("weight_") for k in arrays.files))
    ]
    tf_keras.utils.set_random_seed(0)
    model = models_lib.build(
        request["model"], request["input_shape"], keras_module=tf_keras
    )
    model.set_weights(weights)
    # Reach the target sparsity in 10 pruning steps over the first 70 % of
    # training (tfmot's default frequency of 100 steps would never prune a
    # short fine-tune), then train with the final mask fixed.
    steps = int(np.ceil(len(data["x_train"]) / request["batch_size"]))
    total = steps * max(1, request["epochs"])
    frequency = max(1, int(0.7 * total) // 10)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=request["sparsity"],
        begin_step=0,
        end_step=10 * frequency,
        frequency=frequency,
    )
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=schedule
    )
    pruned.compile(
        optimizer=tf_keras.optimizers.Adam(3e-4),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    pruned.fit(
        data["x_train"],
        data["y_train"],
        epochs=max(1, request["epochs"]),
        batch_size=request["batch_size"],
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)

    def accuracy(x, y):
        out = stripped.predict(x, batch_size=1000, verbose=0)
        return float(np.mean(np.argmax(out, -1) == y))

    kernels = [w for layer in stripped.layers for w in layer.get_weights()]
    total = int(sum(w.size for w in kernels))
    zeros = int(sum(np.sum(w == 0) for w in kernels))
    converter = tf.lite.TFLiteConverter.from_keras_model(stripped)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    content = converter.convert()
    test = accuracy(data["x_test"], data["y_test"])
    out = {
        "matched_method": request["matched_method"],
        "target_sparsity": request["sparsity"],
        "params": total,
        "params_nonzero": total - zeros,
        "achieved_sparsity": zeros / total,
        "units_kept": None,
        "val": accuracy(data["x_val"], data["y_val"]),
        "test_mean": test,
        "test_per_seed": [test],
        "finetune_epochs": request["epochs"],
        "tflite_bytes": len(content),
        "tflite_gzip_bytes": len(gzip.compress(content, 9)),
        "latency_ms": _latency(content, request["latency_runs"]),
        "latency_threads": 1,
        "tensorflow": tf.__version__,
        "tfmot": tfmot.__version__ if hasattr(tfmot, "__version__") else None,
    }
    directory = os.path.dirname(request["output"])
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".json")
    with os.fdopen(handle, "w") as f:
        json.dump(out, f)
    os.replace(temporary, request["output"])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m benchmarks.tfmot_baseline request.json")
    main(sys.argv[1])
