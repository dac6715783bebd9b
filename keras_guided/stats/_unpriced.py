"""Layers whose FLOPs are unknown: which, why, the share of the
parameters they hold, and the warning a FLOPs budget gives about them."""

import dataclasses
import warnings

from keras_guided import _keras_adapter as adapter
from keras_guided.stats._model import model_costs
from keras_guided.stats._model import total


@dataclasses.dataclass(frozen=True)
class Unpriced:
    """The layers of a model whose FLOPs are unknown (`unpriced`).

    Attributes:
        layers: `(name, class name, reason)` of every unpriced layer.
        params: how many parameters they hold.
        total_params: the model's parameters.
        subclassed: whether the model is a subclassed `keras.Model`.
    """

    layers: tuple
    params: int
    total_params: int
    subclassed: bool = False

    @property
    def share(self):
        """The unpriced layers' share of the model's parameters."""
        return self.params / self.total_params if self.total_params else 0.0

    @property
    def complete(self):
        """Whether every layer is priced (the FLOPs count is the whole
        model's)."""
        return not self.layers and not self.subclassed

    def describe(self, model_name):
        """Which layers, why, and the share they hold, in a sentence or
        two."""
        text = ""
        if self.layers:
            names = [
                f"'{name}' ({cls}: {reason})"
                for name, cls, reason in self.layers[:5]
            ]
            if len(self.layers) > 5:
                names.append(f"and {len(self.layers) - 5} more")
            plural = "s" if len(self.layers) != 1 else ""
            text = (
                f"{len(self.layers)} layer{plural} of model '{model_name}' "
                f"{'have' if plural else 'has'} unknown FLOPs, counted as "
                f"0: {', '.join(names)}; "
                f"{'they hold' if plural else 'it holds'} "
                f"{100 * self.share:.1f} % of its {self.total_params:,} "
                "parameters."
            )
        if self.subclassed:
            text += (" " if text else "") + (
                f"Model '{model_name}' is subclassed: Keras records no "
                "shapes for the layers its `call` uses, so its FLOPs are "
                "unknown. Rebuild it with the Functional API "
                "(`keras.Model(inputs, outputs)`) to count them."
            )
        return text


def unpriced(model, layer_costs=None):
    """The layers of `model` whose FLOPs are unknown, and their share.

    Args:
        model: a built `keras.Model`.
        layer_costs: its `model_costs(model)`, if already computed.
            Defaults to `None`.

    Returns:
        An `Unpriced` (`complete` when every layer is priced).
    """
    rows = model_costs(model) if layer_costs is None else layer_costs
    graph = adapter.sequential_graph(model) or model
    return Unpriced(
        layers=tuple(
            (row.name, type(row.layer).__name__, row.unpriced)
            for row in rows
            if row.unpriced
        ),
        params=total([row for row in rows if row.unpriced], "params"),
        total_params=total(rows, "params"),
        subclassed=not adapter.has_graph(graph),
    )


UNPRICED_BUDGET_SHARE = 0.10
"""Above this share of the parameters in unpriced layers, a FLOPs budget
warns that it counts only part of the model."""


def warn_unpriced_budget(model, layer_costs, stacklevel=2):
    """Warns when a FLOPs budget leaves out more than
    `UNPRICED_BUDGET_SHARE` of `model`'s parameters (unpriced layers);
    returns the `Unpriced`."""
    missing = unpriced(model, layer_costs)
    if missing.layers and missing.share > UNPRICED_BUDGET_SHARE:
        warnings.warn(
            "A FLOPs budget counts only the layers it can price: "
            + missing.describe(model.name)
            + " A FLOPs target can be met while those layers stay whole"
            + ": give them a FLOPs rule (`keras_guided.register_rule(cls, "
            "rule, flops=...)`), or set a 'params' target instead.",
            stacklevel=stacklevel + 1,
        )
    return missing
