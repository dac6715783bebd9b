"""Helpers shared by the benchmark sections: availability, timing, export."""

import gzip
import importlib.util
import inspect
import os
import tempfile

import keras
import numpy as np

import keras_guided as kg


def missing(name):
    """Why `keras_guided.<name>` cannot be used yet, or `None` if it can."""
    if not hasattr(kg, name):
        return f"keras_guided.{name} is not available yet (not landed)"
    return None


def accepts(function, parameter):
    try:
        return parameter in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def tfmot_missing():
    """Why the tfmot baseline cannot run, or `None` (checked without import)."""
    for module in ("tensorflow_model_optimization", "tf_keras"):
        if importlib.util.find_spec(module) is None:
            return (
                f"{module} is not installed (pip install "
                "tensorflow-model-optimization tf-keras)"
            )
    return None


def logits(model, x, batch_size=1000):
    chunks = [
        keras.ops.convert_to_numpy(model(x[i : i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(chunks)


def accuracy(model, x, y):
    return float(np.mean(np.argmax(logits(model, x), -1) == y))


def export_sizes(model, sample, num_runs, num_threads=1):
    """Float32 `.tflite` via keras_guided.export_tflite: bytes, gz, latency."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.tflite")
        report = kg.export_tflite(
            model,
            path,
            sample_inputs=sample,
            measure_latency=True,
            num_runs=num_runs,
            num_threads=num_threads,
        )
        with open(path, "rb") as f:
            content = f.read()
    return {
        "tflite_bytes": len(content),
        "tflite_gzip_bytes": len(gzip.compress(content, 9)),
        "latency_ms": report.latency_ms,
        "latency_threads": num_threads,
        "latency_runs": num_runs,
        "export_max_abs_diff": report.max_abs_diff,
    }


def median(values):
    return float(np.median(np.asarray(values, dtype="float64")))
