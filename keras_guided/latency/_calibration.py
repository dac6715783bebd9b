"""What the measured layers of a latency table say about the rest.

`ms_per_flop` is the measured layers' mean ms per FLOP, the price per FLOP
of an estimated layer. The layers alone do not explain a model's time
(element-wise layers, padding, residual adds, moving activations between
kernels): the whole model is converted and timed once (`whole_model_ms`,
cached under its layer signatures), and `calibrate` spreads what the
priced layers leave unexplained over the measured layers, per output
channel in proportion to the positions each writes. The table's total at
full width is then the whole model's measured latency.
"""

import dataclasses
import warnings

from keras_guided.latency import _cache
from keras_guided.latency import _measure
from keras_guided.latency import _signatures
from keras_guided.latency._signatures import OVERHEAD


def whole_model_ms(model, settings, signatures, cache, path):
    """The whole model's measured ms, cached under the model's layer
    signatures; `None` (with a warning) where it does not convert."""
    key = "model:" + _signatures.cache_key(
        {
            "name": model.name,
            "layers": sorted(k for k in signatures if k != OVERHEAD),
        }
    )
    if key not in cache:
        _measure.check_runtime()
        try:
            ms = float(_measure.time_model(model, settings))
        except (ValueError, RuntimeError) as error:
            warnings.warn(
                f"The whole model '{model.name}' could not be timed "
                f"({type(error).__name__}: {str(error)[:200]}); the latency "
                "table prices its layers alone, so a latency target is a "
                "share of their time, not of the model's.",
                stacklevel=3,
            )
            return None
        cache[key] = {"ms": ms}
        if path:
            _cache.write(path, _cache.FORMAT, settings, cache)
    return float(cache[key]["ms"])


def calibrate(entries, measured_ms):
    """Spreads what the priced layers leave unexplained of `measured_ms`
    over the measured layers, per output channel in proportion to the
    positions each writes; returns the entries and the spread ms."""
    priced = sum(entry.predict() for entry in entries.values())
    measured = [e for e in entries.values() if e.kind == "measured"]
    written = sum(e.positions * e.written() for e in measured)
    unexplained = max(measured_ms - priced, 0.0)
    if not written or not unexplained:
        return entries, 0.0
    per_value = unexplained / written
    return {
        name: dataclasses.replace(
            entry, ms_per_channel=per_value * entry.positions
        )
        if entry.kind == "measured"
        else entry
        for name, entry in entries.items()
    }, unexplained


def ms_per_flop(entries):
    measured = [e for e in entries.values() if e.kind == "measured"]
    flops = sum(e.flops for e in measured)
    return sum(e.predict() for e in measured) / flops if flops else 0.0
