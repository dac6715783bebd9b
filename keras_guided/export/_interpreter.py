"""The LiteRT interpreter in this process: loading it, and timing a file.

`import_interpreter` returns `ai_edge_litert`'s `Interpreter` class, or
raises an `ImportError` with the install command (the package is an
optional dependency, needed only to verify or time a file);
`median_latency` times the file's bytes at batch 1, as
`export_tflite(..., measure_latency=True)` reports and the latency tables
(`keras_guided.latency`) measure. Verification runs the file in a child
process instead (`_litert_run`), so a LiteRT abort cannot end this one.
"""

import time

import numpy as np

_INSTALL_HINT = "pip install keras-guided[tflite]"


def import_interpreter():
    """`ai_edge_litert`'s `Interpreter` class, or an `ImportError` that
    gives the install command."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ImportError(
            "Verifying or timing a .tflite file needs the LiteRT interpreter "
            f"(package 'ai-edge-litert'). Install it with: {_INSTALL_HINT}, "
            "or pass verify=False (and measure_latency=False)."
        ) from None
    return Interpreter


def make_interpreter(interpreter_class, content, num_threads=1):
    """An interpreter of the file's bytes `content`, tensors allocated."""
    interpreter = interpreter_class(
        model_content=content, num_threads=num_threads
    )
    interpreter.allocate_tensors()
    return interpreter


def median_latency(
    interpreter_class, content, num_runs, num_threads, statistic="median"
):
    """Batch-1 latency of the file's bytes in ms: the median (or `"min"`)
    over `num_runs` timed interpreter runs after a short warm-up."""
    interpreter = make_interpreter(interpreter_class, content, num_threads)
    details = interpreter.get_input_details()
    dynamic = [d for d in details if int(d["shape_signature"][0]) < 0]
    for detail in dynamic:
        shape = (1,) + tuple(int(d) for d in detail["shape"][1:])
        interpreter.resize_tensor_input(detail["index"], shape)
    if dynamic:
        interpreter.allocate_tensors()
        details = interpreter.get_input_details()
    for detail in details:  # Zeros: valid token ids and masks too.
        sample = np.zeros(tuple(detail["shape"]), dtype=detail["dtype"])
        interpreter.set_tensor(detail["index"], sample)
    for _ in range(min(5, num_runs)):  # Warm-up.
        interpreter.invoke()
    times = []
    for _ in range(num_runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    reduce = np.min if statistic == "min" else np.median
    return float(reduce(times) * 1000.0)
