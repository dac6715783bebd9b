"""The measurement settings of a latency table, checked, and its runtime.

`check_settings` validates what `build_latency_table` and
`measure_latency` are asked for and returns the settings dict a table
holds (`LatencyTable.settings`) and the cache is keyed by: the
quantization, threads, samples, runs and statistic, the `conversion`
(`CONVERSION`, the version of how files are converted for timing) and
`runtime()` (the versions of `ai_edge_litert`, TensorFlow and Keras, and
the CPU), so a table built with other settings, another conversion or on
another machine is never reused.
"""

import platform

import numpy as np

from keras_guided import export
from keras_guided.latency import _cache

STATISTICS = ("min", "median")
# How files are converted for timing; a table timed under another value is
# not reused. 2: a float32 request is converted with no optimization, the
# file `export_tflite` writes (1, earlier, timed float32 requests as
# dynamic-range int8 files).
CONVERSION = 2


def check_settings(quantization, num_threads, num_samples, num_runs, statistic):
    quantization = export.check_quantization(quantization)
    for name, value, low in (
        ("num_threads", num_threads, 1),
        ("num_samples", num_samples, 2),
        ("num_runs", num_runs, 1),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or value < low
        ):
            raise ValueError(
                f"`{name}` must be an int >= {low}. Received: {name}={value!r}"
            )
    if statistic not in STATISTICS:
        raise ValueError(
            f"`statistic` must be one of {list(STATISTICS)}. "
            f"Received: statistic={statistic!r}"
        )
    return {
        "quantization": quantization or "float32",
        "num_threads": int(num_threads),
        "num_samples": int(num_samples),
        "num_runs": int(num_runs),
        "statistic": statistic,
        "conversion": CONVERSION,
        "runtime": runtime(),
    }


def runtime():
    """Versions and hardware that change a timing."""
    import importlib.metadata as metadata

    versions = {}
    for package in ("ai-edge-litert", "tensorflow", "keras"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["machine"] = platform.machine()
    versions["cpu"] = _cache.cpu_name()
    return versions


def describe(settings):
    return (
        f"{settings['quantization']}, {settings['num_threads']} "
        f"thread(s), {settings['statistic']} of {settings['num_runs']} "
        "runs"
    )
