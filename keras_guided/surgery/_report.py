"""`PruneReport`: what `prune_model` removed and how close the result is."""

import dataclasses

import numpy as np

from keras_guided import graph as graph_lib
from keras_guided import rules as rules_lib
from keras_guided import stats
from keras_guided import units as units_lib
from keras_guided.stats import iter_layers


@dataclasses.dataclass
class PruneReport:
    """What `prune_model` removed and how close the result is.

    Attributes:
        num_groups: number of unit groups found.
        removed: `{group index: (num_units, kept_units)}` of pruned groups.
        layers: rows (dicts) with `layer`, `units_before`, `units_after`,
            `params_before`, `params_after`, `flops_before`, `flops_after`,
            and a final `"total"` row.
        max_abs_diff: largest |pruned - masked original| on the sample
            inputs (`None` without verification).
        max_abs_diff_original: largest |pruned - original| (differs from
            `max_abs_diff` only when live units were removed).
        output_scale: largest |output| of the masked original.
        notes: where the result is only approximate (folding at 'same'
            padding borders, LayerNormalization over pruned channels).
        unprunable: `(group index, layers, reason)` of groups left intact.
        unsupported: unsupported layers met (`on_unsupported="keep"`).
        latency: with `prune_model(..., measure=...)`, the
            `keras_guided.latency.LatencyCheck` of the closed loop (asked,
            measured, every try); `None` otherwise.
        compiled: whether the pruned model is compiled (like the
            original, see `prune_model`); `False` for an uncompiled
            original, and for a compiled one whose compile state could
            not be carried over (then a note says why).
        loadable: whether the pruned model, saved to `.keras`, loads back
            with `keras.saving.load_model`; checked at prune time by
            rebuilding its architecture from its config where it holds a
            layer that is not Keras' own. When `False`, a note (and a
            warning) names the layer, why, and how to keep it loadable.

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((4,)),
        ...     keras.layers.Dense(6, name="hidden"),
        ...     keras.layers.Dense(1, name="out")])
        >>> small, report = keras_guided.prune_model(
        ...     model, target=0.5, return_report=True)
        >>> report.removed, report.max_abs_diff < 1e-5
        ({0: (6, 3)}, True)
        >>> print(report.summary().splitlines()[0])
        Removed 3 units in 1 of 2 unit groups.
    """

    num_groups: int
    removed: dict
    layers: list
    max_abs_diff: float = None
    max_abs_diff_original: float = None
    output_scale: float = None
    notes: list = dataclasses.field(default_factory=list)
    unprunable: list = dataclasses.field(default_factory=list)
    unsupported: list = dataclasses.field(default_factory=list)
    latency: object = None
    compiled: bool = False
    loadable: bool = True

    @property
    def removed_units(self):
        """Total number of units removed."""
        return int(sum(n - k for n, k in self.removed.values()))

    def summary(self):
        """A markdown table of the layers that changed, plus the totals."""
        rows = [
            row
            for row in self.layers
            if row["layer"] == "total"
            or row["params_before"] != row["params_after"]
            or row["units_before"] != row["units_after"]
        ]
        lines = [
            f"Removed {self.removed_units} units in {len(self.removed)} of "
            f"{self.num_groups} unit groups.",
            stats.format_table(rows),
        ]
        if self.max_abs_diff is not None:
            lines.append(
                f"Max |pruned - masked original| = {self.max_abs_diff:.3g} "
                f"(output scale {self.output_scale:.3g}); max |pruned - "
                f"original| = {self.max_abs_diff_original:.3g}."
            )
        lines.extend(f"Note: {note}" for note in self.notes)
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


# ------------------------------------------------------- report, verify
def _units_of(layer):
    try:
        return units_lib.num_units(layer)
    except ValueError:
        return None


def _params_only(model, pruned):
    after = {path: layer for path, layer, _ in graph_lib.leaf_layers(pruned)}
    rows = []
    for name, layer, _ in graph_lib.leaf_layers(model):
        new = after.get(name)
        rows.append(
            {
                "layer": name,
                "params_before": int(
                    sum(np.prod(w.shape) for w in layer.weights)
                ),
                "params_after": int(sum(np.prod(w.shape) for w in new.weights))
                if new is not None
                else 0,
                "flops_before": None,
                "flops_after": None,
            }
        )
    total = {"layer": "total", "flops_before": None, "flops_after": None}
    for key in ("params_before", "params_after"):
        total[key] = sum(row[key] for row in rows)
    rows.append(total)
    return rows


def _report_shapes(model, pruned, shapes):
    """Concrete shapes of both models at the probe's input shapes (a
    variable-length model), or `(None, None)`."""
    inputs = graph_lib.functional_graph(model).inputs
    if not shapes or any(id(t) not in shapes for t in inputs):
        return None, None
    input_shapes = [shapes[id(t)] for t in inputs]
    return shapes, graph_lib.concrete_shapes(pruned, input_shapes)


def _report(model, pruned, analysis, plan, shapes, notes):
    """The `PruneReport` of `plan`; `notes` are the pipeline's, in order
    (repeats dropped)."""
    notes = list(notes)
    shapes_before, shapes_after = _report_shapes(model, pruned, shapes)
    try:
        rows = stats.compare(model, pruned, shapes_before, shapes_after)
        if shapes_before is not None:
            inputs = graph_lib.functional_graph(model).inputs
            notes.append(
                "FLOPs counted for inputs of shapes "
                f"{[tuple(shapes_before[id(t)]) for t in inputs]} (the "
                "model's input lengths are unknown: the lengths of "
                "`sample_inputs`, else "
                f"{graph_lib.PROBE_SIZE})"
            )
    except ValueError as error:  # unknown spatial sizes: no FLOPs
        rows = _params_only(model, pruned)
        notes.append(f"FLOPs not counted: {error}")
    else:
        missing = stats.unpriced(
            model, stats.model_costs(model, shapes=shapes_before)
        )
        if not missing.complete:
            notes.append(
                "the FLOPs columns leave out what they cannot price: "
                + missing.describe(model.name)
            )
    # Leaf layers by path, inside nested models and traced layers too.
    before = {name: layer for name, layer, _ in iter_layers(model)}
    after = {name: layer for name, layer, _ in iter_layers(pruned)}
    for row in rows:
        name = row["layer"]
        if name == "total":
            row["units_before"] = row["units_after"] = ""
            continue
        old = before.get(name)
        new = after.get(name)
        row["units_before"] = _units_of(old) if old is not None else None
        row["units_after"] = _units_of(new) if new is not None else None
    columns = [
        "layer",
        "units_before",
        "units_after",
        "params_before",
        "params_after",
        "flops_before",
        "flops_after",
    ]
    rows = [{c: row.get(c) for c in columns} for row in rows]
    removed = {
        index: (analysis.groups[index].num_units, len(kept))
        for index, kept in sorted(plan.items())
    }
    notes = list(dict.fromkeys(notes))
    for index in plan:
        group = analysis.groups[index]
        layer_names = set(group.layers)
        for s in group.slices:
            rule = rules_lib.rule_for(s.layer)
            if (
                rule is not None
                and rule.mixes_channels is not None
                and (s.layer.name in layer_names)
            ):
                notes.append(
                    f"{graph_lib.describe(s.layer)} {rule.mixes_channels}"
                    ", some of them removed: the pruned model differs"
                )
    for text in analysis.unsupported_reasons:
        notes.append(
            f"{text}; kept intact (copied unchanged) and the unit groups "
            "that touch it were not pruned"
        )
    return PruneReport(
        num_groups=len(analysis.groups),
        removed=removed,
        layers=rows,
        notes=list(dict.fromkeys(notes)),
        unprunable=[
            (g.index, g.layers, g.reason)
            for g in analysis.groups
            if not g.prunable
        ],
        unsupported=list(analysis.unsupported),
    )
