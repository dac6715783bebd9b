"""`LatencyTable`: a model's measured latency per layer, predicted at kept
channel counts, and the check that a value is one."""

import math

from keras_guided import stats
from keras_guided import units as units_lib
from keras_guided.latency import _interpolation
from keras_guided.latency import _settings
from keras_guided.latency._pricing import fingerprint
from keras_guided.latency._pricing import price_layers
from keras_guided.latency._settings import STATISTICS as STATISTICS

BUILD_HINT = (
    "Build one with table = keras_guided.latency.build_latency_table(model) "
    "and pass latency_table=table."
)


class LatencyTable:
    """Per-layer LiteRT latency of one model, measured on this machine.

    Build it with `keras_guided.latency.build_latency_table`; pass it to
    `keras_guided.prune_model(model, target={"latency": 0.4},
    latency_table=table)`.

    Attributes:
        model_name: the model it was built for.
        settings: the measurement settings and runtime (the cache key).
        layers: `{layer name: LayerLatency}` of every priced layer.
        ms_per_flop: mean ms per FLOP of the measured layers.
        num_measured: samples timed by this build.
        num_cached: samples read from the cache.
        build_seconds: wall time of the build.
        measured_ms: the whole model's measured latency at full width
            (`None` without the whole-model calibration).
        unexplained_ms: the part of `measured_ms` the layers alone did not
            explain, spread over them as `LayerLatency.ms_per_channel`.
    """

    def __init__(
        self,
        model_name,
        settings,
        layers,
        ms_per_flop,
        num_measured=0,
        num_cached=0,
        build_seconds=0.0,
        measured_ms=None,
        unexplained_ms=0.0,
    ):
        self.model_name = model_name
        self.settings = dict(settings)
        self.layers = dict(layers)
        self.ms_per_flop = float(ms_per_flop)
        self.num_measured = int(num_measured)
        self.num_cached = int(num_cached)
        self.build_seconds = float(build_seconds)
        self.measured_ms = None if measured_ms is None else float(measured_ms)
        self.unexplained_ms = float(unexplained_ms)

    def predict(self, layer, input_channels=None, output_channels=None):
        """Predicted ms of layer `layer` (a name) at the kept counts."""
        if layer not in self.layers:
            raise ValueError(
                f"The latency table of model '{self.model_name}' has no "
                f"layer '{layer}'. Known layers: {sorted(self.layers)[:8]}"
            )
        return self.layers[layer].predict(input_channels, output_channels)

    @property
    def total_ms(self):
        """Predicted ms of every priced layer at full width (with the
        whole-model calibration: the whole model's measured latency)."""
        return float(sum(entry.predict() for entry in self.layers.values()))

    def rows(self, widths=(1.0, 0.75, 0.5, 0.25)):
        """One dict per layer: predicted ms with each fraction of its
        input and output channels kept."""
        rows = []
        for entry in self.layers.values():
            row = {
                "layer": entry.name,
                "class": entry.class_name,
                "kind": entry.kind,
            }
            for width in widths:
                cin = max(1, round(entry.input_channels * width))
                cout = max(1, round(entry.output_channels * width))
                row[f"ms@{width:g}"] = entry.predict(cin, cout)
            rows.append(row)
        return rows

    def summary(self):
        """The table as markdown: per-layer ms at a few widths and totals."""
        lines = [
            stats.format_table(self.rows()),
            "",
            f"predicted total: {self.total_ms:.3f} ms "
            f"({_settings.describe(self.settings)})",
            "whole model: "
            + (
                "not calibrated (whole_model=False)"
                if self.measured_ms is None
                else f"measured {self.measured_ms:.3f} ms, of which "
                f"{self.unexplained_ms:.3f} ms not explained by the "
                "layers alone, spread per output channel"
            ),
            f"samples: {self.num_measured} measured, {self.num_cached} "
            f"cached, built in {self.build_seconds:.1f} s",
        ]
        return "\n".join(lines)

    def kernel_curve(self, layer):
        """`dims -> ms` of a measured layer's kernel shape (its kept input
        and output channels are the last two dims), or `None`."""
        entry = self.layers.get(layer)
        if entry is None or entry.kind != "measured":
            return None
        return lambda dims: entry.predict(dims[-2], dims[-1])

    def weight_price(self, layer, layer_object, key, flops_per_element):
        """`dims -> ms` of one weight of layer `layer` (a name) at its kept
        shape `dims`: the one latency price of a weight, used by
        `prune_model`'s latency targets (`scoring.KeptCost`) and the
        callback's live latency (`price`).

        A measured layer's kernel costs the table's prediction at its kept
        input and output channels (the last two dims), its other weights
        nothing; a weight of any other layer costs its kept size times its
        FLOPs per element (`flops_per_element`) times `ms_per_flop`.
        """
        curve = self.kernel_curve(layer)
        if curve is not None:
            kernel = getattr(layer_object, "kernel", None)
            if kernel is not None and key == units_lib.weight_key(
                layer_object, kernel
            ):
                return curve
            return _interpolation.no_cost
        per_element = float(flops_per_element) * self.ms_per_flop
        return lambda dims: math.prod(dims) * per_element

    def price(self, layer_cost, kept=None):
        """Predicted ms of one `stats.LayerCost` with its weights cut to
        `kept` (`{weight key: kept shape}`), the latency entry of the
        callback's cost model (`stats.price(..., prices={"latency":
        table.price})`): the sum of `weight_price` over its weights."""
        return float(
            sum(
                self.weight_price(
                    layer_cost.name, layer_cost.layer, weight.key, weight.flops
                )(shape)
                for weight, shape in layer_cost.kept_shapes(kept)
            )
        )

    def check_model(self, model, shapes=None):
        """Raises a `ValueError` unless the table was built for `model`."""
        expected = {
            name: fingerprint(entry)
            for name, entry in price_layers(model, shapes, 1.0, None).items()
        }
        actual = {
            name: fingerprint(entry) for name, entry in self.layers.items()
        }
        for name in list(expected) + list(actual):
            if expected.get(name) == actual.get(name):
                continue
            what = (
                "has no entry" if name not in actual else f"has {actual[name]}"
            )
            raise ValueError(
                f"`latency_table` does not match model '{model.name}': it "
                f"was built for model '{self.model_name}'. For layer "
                f"'{name}' the model has {expected.get(name, 'no layer')} "
                f"but the table {what}. {BUILD_HINT}"
            )


def check_is_table(table):
    """Raises a `ValueError` unless `table` is a `LatencyTable` (the
    `latency_table=` of `prune_model`, `scoring` and `GuidedPruning`)."""
    if not isinstance(table, LatencyTable):
        raise ValueError(
            "`latency_table` must be a keras_guided.latency.LatencyTable. "
            f"Received: {type(table).__name__}. " + BUILD_HINT
        )
