"""The samples of a latency table: channel counts, timed into the cache.

Each measured signature is timed on a small grid of kept input and output
channel counts (`sample_counts`: quarters of the full width rounded to
multiples of 8, and the full width; a depthwise layer has one channel
dimension). `measure_missing` times what the cache lacks, one layer
rebuilt alone per sample (`_measure.time_layer`), and writes the cache
after each signature, so an interrupted build resumes.
"""

import keras

from keras_guided import rules
from keras_guided.latency import _cache
from keras_guided.latency import _measure
from keras_guided.latency._signatures import OVERHEAD
from keras_guided.latency._signatures import OVERHEAD_SIGNATURE


def sample_counts(full, num_samples):
    """`num_samples` counts up to `full`: quarters (for 4) rounded to a
    multiple of 8 (of 4 below 64 channels), and `full` itself."""
    if full < 8:
        return [int(full)]
    step = 8 if full >= 64 else 4
    counts = {int(full)}
    for i in range(1, num_samples):
        count = round(full * i / num_samples / step) * step
        counts.add(int(min(max(count, step), full)))
    return sorted(counts)


def sample_grid(signature, num_samples):
    ins = sample_counts(signature["inputs"], num_samples)
    outs = (
        [signature["outputs"]]
        if signature["kind"] == "depthwise"
        else sample_counts(signature["outputs"], num_samples)
    )
    return ins, outs


def measure_missing(signatures, cache, path, settings, num_samples, verbose):
    """Times into `cache` every signature of `signatures` (`{key:
    signature}`) it lacks, and the interpreter overhead (added to both);
    `(num_measured, num_cached)`: samples timed now, samples read from the
    cache. With `path`, the cache is written after each signature.
    """
    missing = [k for k in signatures if k not in cache]
    if OVERHEAD not in cache:
        missing.append(OVERHEAD)
        signatures[OVERHEAD] = OVERHEAD_SIGNATURE
    per_signature = {
        k: sample_grid(signatures[k], num_samples)
        if k != OVERHEAD
        else ([1], [1])
        for k in missing
    }
    total = sum(len(i) * len(o) for i, o in per_signature.values())
    if total:
        _measure.check_runtime()  # a cached table needs neither
    progress = (
        keras.utils.Progbar(total, unit_name="sample")
        if (verbose and total)
        else None
    )
    for key in missing:
        ins, outs = per_signature[key]
        ms = [
            [
                _time(signatures[key], cin, cout, settings, progress)
                for cout in outs
            ]
            for cin in ins
        ]
        cache[key] = {
            "signature": signatures[key],
            "inputs": ins,
            "outputs": outs,
            "ms": ms,
        }
        if path:
            _cache.write(path, _cache.FORMAT, settings, cache)
    num_cached = sum(
        len(cache[k]["inputs"]) * len(cache[k]["outputs"])
        for k in signatures
        if k not in per_signature and k != OVERHEAD
    )
    total -= int(OVERHEAD in per_signature)
    return total, num_cached


def _time(signature, cin, cout, settings, progress):
    kwargs = dict(signature["config"])
    layer_class = rules.timed_class(signature["class"])
    if signature["kind"] == "conv":
        kwargs["filters"] = int(cout)
    elif signature["kind"] == "dense":
        kwargs["units"] = int(cout)
    shape = tuple(signature["spatial"]) + (int(cin),)
    ms = float(_measure.time_layer(layer_class, kwargs, shape, settings))
    if progress is not None:
        progress.add(1)
    return ms
