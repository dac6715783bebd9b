"""prune_model: rebuild a model without its pruned unit groups.

The steps, each a private helper:

1. `graph.analyze` finds the unit groups;
2. a *plan* (kept units per group) comes from the dead units (default), a
   threshold, a target, or the user (`scoring.py`);
3. constants: a removed unit whose incoming weights are zero (or masked to
   zero) still emits a constant (its bias through the activation, BN's
   shift, ...). We propagate those constants through the graph by calling
   each layer on constant-filled probes, then fold them into the biases of
   the consumers (Dense: `bias += const @ removed_rows`; Conv: the same,
   summed over the kernel window);
4. the graph is rebuilt layer by layer: a layer with removed units is
   re-created from its sliced config and weights by a rule of `rules.py`;
   a layer no removed unit passes through is copied with all its state
   (adapted statistics, vocabularies; `_copies.py`); shared layers stay
   shared, nested models are rebuilt as nested models, and no new layer
   shares a variable with the original;
5. verification: the pruned model against the original with the removed
   units masked (their incoming weights set to zero) on sample inputs.
"""

import dataclasses
import warnings

import keras
import numpy as np
from keras import ops

from keras_guided import _axes
from keras_guided import _copies
from keras_guided import _hub_rebuild
from keras_guided import _inline
from keras_guided import _keras_adapter as adapter
from keras_guided import _uniform
from keras_guided import _walk
from keras_guided import graph as graph_lib
from keras_guided import rules as rules_lib
from keras_guided import scoring
from keras_guided import stats
from keras_guided import trace as trace_lib
from keras_guided import units as units_lib
from keras_guided.latency import _loop as _latency_loop

_PRODUCER_FAMILIES = ("dense", "conv", "conv_transpose", "separable")
# Unknown lengths without sample inputs: long enough for most kernels and
# pooling windows, small enough to probe quickly.
_PROBE_SIZE = 32
# A layer copied with all its state (`_copies.copy_state`), not given
# sliced weights.
_COPY = object()


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

    @property
    def removed_units(self):
        """Total number of units removed."""
        return int(sum(n - k for n, k in self.removed.values()))

    def summary(self):
        """A markdown table of the layers that changed, plus the totals."""
        rows = [
            row for row in self.layers
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


def prune_model(
    model,
    threshold=None,
    plan=None,
    target=None,
    min_units=1,
    round_to=None,
    protected=(),
    on_unsupported="raise",
    verify=True,
    sample_inputs=None,
    tolerance=1e-8,
    return_report=False,
    latency_table=None,
    measure=None,
    latency_tolerance=0.1,
    max_tries=5,
    uniform_blocks=False,
):
    """Returns a new model without the pruned units; `model` is untouched.

    With no `threshold`, `plan` or `target`, removes exactly the dead units:
    those whose incoming weights are all zero (within `tolerance`). A
    removed unit's constant output (its bias through the activation, a
    BatchNormalization shift, ...) is folded into its consumers' biases,
    so the pruned model computes the same function as the original with
    those units masked: exactly for Dense, 'valid' and 1x1 convolutions and
    global pooling; at 'same'-padding borders approximately (see
    `PruneReport.notes` and `max_abs_diff`).

    Args:
        model: a built Sequential or Functional `keras.Model`.
        threshold: remove the units whose score (`scoring.unit_scores`,
            RMS of their weights) is below it. Defaults to `None`.
        plan: `{group index: kept}` where `kept` is a list of unit indices
            to keep or an int (keep that many, the most important). Groups
            not listed keep all their units. Defaults to `None`.
        target: what the pruned model keeps, least important units removed
            first: a float (fraction of the units of prunable groups) or
            the grammar shared with `GuidedPruning(target=...)`, a dict
            `{"units" | "params" | "flops" | "latency": amount}` with a
            float fraction of the starting value or an int count, e.g.
            `{"flops": 0.5}` or `{"units": 66}`. A latency target needs
            `latency_table`. Defaults to `None`.
        min_units: fewest units kept in a group: an int count, or a float
            in (0, 1] for a share of each group (`0.25` never cuts a
            layer below a quarter of its units). Defaults to 1.
        round_to: round kept counts up to a multiple of this. Defaults to
            `None`.
        protected: names of layers whose groups are never pruned. Defaults
            to `()`.
        on_unsupported: `"raise"` (default) or `"keep"`, see
            `keras_guided.find_unit_groups`.
        verify: compare the pruned and masked models on sample inputs and
            report the difference. Defaults to `True`.
        sample_inputs: inputs for the verification (array, list or dict);
            defaults to random normal data of the model's input shapes.
        tolerance: largest |w| counted as zero for dead units. Defaults to
            `1e-8`.
        return_report: also return a `PruneReport`. Defaults to `False`.
        latency_table: a `keras_guided.latency.LatencyTable` of `model`
            (`keras_guided.latency.build_latency_table(model)`), required
            by a `{"latency": ...}` target: its predicted latency of the
            priced layers is what the target keeps. Defaults to `None`.
        measure: hold a latency target as measured, not only in the
            table: after planning, the candidate is timed against `model`
            interleaved in this process (rounds of base, candidate,
            candidate, base; the median ratio), and the plan is re-aimed
            until the measured share is within `latency_tolerance` of the
            asked one, or `max_tries` candidates were timed (then a
            warning gives asked, measured and tries, and the closest
            candidate is returned). `"litert"` times in LiteRT with the
            table's quantization and threads; a
            `keras_guided.latency.InterleavedTimer` sets rounds, runs and
            the spread warning; a callable `measure(model) -> run`
            (`run()` returns the ms of one timing) times anything else.
            The numbers are in `PruneReport.latency`. Defaults to `None`:
            the table alone decides (open loop).
        latency_tolerance: with `measure`, the relative distance allowed
            between the measured and the asked share (`0.1`: 0.4 asked
            accepts 0.36 to 0.44). Defaults to 0.1.
        max_tries: with `measure`, candidates timed at most. Defaults
            to 5.
        uniform_blocks: keep the same number of units of each kind (FFN
            units, attention heads) in every block of a stack of repeated
            composite blocks (one class, one config). With a `target`, a
            step removes the least important unit of every block at once;
            for dead units, every block keeps the width of the widest
            (the extra units kept are dead, so the result stays exact).
            A keras-hub backbone or task whose config can say the new
            widths is then rebuilt as its own class (see Returns).
            Defaults to `False`.

    Returns:
        The pruned `keras.Model` (a `keras.Sequential` for a Sequential
        input), or `(model, PruneReport)` with `return_report=True`. It uses
        only standard Keras layers, so it loads without keras_guided. A
        keras-hub backbone or task comes back as its own class (its
        config's `intermediate_dim` changed, the pruned weights copied,
        checked against the pruned graph) when every block keeps the same
        widths and the config can say them, so `generate()` and
        `save_to_preset` work; otherwise as a Functional model, and
        `PruneReport.notes` says why.

    Raises:
        ValueError: for conflicting or invalid arguments, an impossible
            plan or target, a subclassed model, an unsupported layer.

    Examples:
        >>> import keras, numpy as np, keras_guided
        >>> model = keras.Sequential([keras.Input((4,)),
        ...     keras.layers.Dense(3, name="hidden"),
        ...     keras.layers.Dense(1, name="out")])
        >>> kernel, bias = model.get_layer("hidden").get_weights()
        >>> kernel[:, 1] = 0.0  # unit 1 is dead
        >>> model.get_layer("hidden").set_weights([kernel, bias])
        >>> small, report = keras_guided.prune_model(model, return_report=True)
        >>> small.get_layer("hidden").units, report.removed
        (2, {0: (3, 2)})
        >>> x = np.random.rand(5, 4).astype("float32")
        >>> bool(np.allclose(small(x), model(x), atol=1e-5))
        True
    """
    chosen = [name for name, value in
              (("threshold", threshold), ("plan", plan), ("target", target))
              if value is not None]
    if len(chosen) > 1:
        raise ValueError(
            "Pass at most one of `threshold`, `plan` and `target`. "
            f"Received: {', '.join(chosen)}"
        )
    if uniform_blocks and isinstance(target, dict) and "latency" in target:
        raise ValueError(
            "`uniform_blocks=True` works with a units, params or FLOPs "
            "target. Received: a latency target. Use target={'flops': ...}"
            ", or uniform_blocks=False.")
    scoring.check_limits(min_units, round_to)
    if latency_table is not None and target is None:
        raise ValueError(
            "`latency_table` prices a latency target only. Received: "
            "latency_table=<LatencyTable> without a target. Pass "
            "target={'latency': 0.5}, or drop latency_table."
        )
    _latency_loop.check_arguments(measure, target, latency_table,
                                  latency_tolerance, max_tries)
    if uniform_blocks and (threshold is not None or plan is not None):
        raise ValueError(
            "`uniform_blocks=True` plans the widths itself: it works with a "
            "`target` or on dead units. Received: uniform_blocks=True with "
            f"{'threshold' if threshold is not None else 'plan'}. Drop one "
            "of them.")
    analysis = graph_lib.analyze(model, on_unsupported=on_unsupported)
    groups = analysis.groups
    _protect(model, groups, protected)
    families = (_uniform.find_families(model, groups) if uniform_blocks
                else [])
    rewriter = _Rewriter(analysis, _probe_shapes(model, sample_inputs))
    latency_check = None
    if plan is not None:
        plan = _validate_plan(plan, groups, min_units)
    elif threshold is not None:
        plan = scoring.plan_from_threshold(
            groups, threshold, min_units=min_units, round_to=round_to
        )
    elif target is not None:
        def plan_at(aim):
            return scoring.plan_from_target(
                groups, model, target if aim is None else {"latency": aim},
                min_units=min_units, round_to=round_to,
                shapes=rewriter.shapes, latency_table=latency_table,
            )

        if families:
            merged = _uniform.MergedGroups(groups, families,
                                           scoring.default_scores(groups))
            plan = merged.spread(scoring.plan_from_target(
                merged.groups, model, target, scores=merged.scores,
                min_units=min_units, round_to=round_to,
                shapes=rewriter.shapes))
        elif measure is None:
            plan = plan_at(None)
        else:
            plan, latency_check = _latency_loop.run(
                model, groups, target, plan_at,
                lambda candidate: _rebuilt(analysis, rewriter.shapes,
                                           candidate),
                measure, latency_table, latency_tolerance, max_tries,
                min_units, rewriter.shapes)
    else:
        plan = _dead_plan(rewriter, groups, tolerance, min_units, round_to)
        if families:
            plan = _uniform.widen(plan, groups, families,
                                  scoring.default_scores(groups))
    rewriter.set_plan(plan)
    rewriter.propagate_constants()
    rewriter.fold_constants()
    pruned = rewriter.rebuild(rewriter.pruned_weights)
    shared = dict(rewriter.shared)
    report = None
    if return_report or verify:
        report = _report(model, pruned, analysis, plan, rewriter)
        report.latency = latency_check
        if latency_check is not None:
            report.notes.append(latency_check.summary())
    # A layer shared across a nested model (a tied output projection)
    # would not load: that model is inlined, its layers unchanged.
    pruned = _inline.inline_shared(pruned)
    if verify:
        _verify(model, pruned, rewriter, report, sample_inputs)
    if report is not None:
        report.notes.extend(_uniform.describe(families, groups, plan))
    rebuilt, note = _hub_rebuild.rebuild(
        model, pruned, _sample_inputs(model, sample_inputs), _predict)
    if shared and rebuilt is None:
        name, reason = next(iter(shared.items()))
        raise ValueError(
            f"Model '{model.name}' can be pruned inside its blocks only as "
            f"its keras-hub class: {reason.replace('its sublayer', 'sublayer')}"
            f". It could not be rebuilt as that class: "
            f"{note.split(': ', 1)[-1]} Or keep the blocks intact with "
            "protected=[<block names>]."
        )
    if note is not None:
        if report is not None:
            report.notes.append(note)
        if rebuilt is None and uniform_blocks:
            warnings.warn(f"prune_model: {note}", stacklevel=2)
    if rebuilt is not None:
        pruned = rebuilt
    if return_report:
        return pruned, report
    return pruned


def _rebuilt(analysis, shapes, plan):
    """The pruned model of `plan` alone (a closed-loop candidate)."""
    rewriter = _Rewriter(analysis, shapes)
    rewriter.set_plan(plan)
    rewriter.propagate_constants()
    rewriter.fold_constants()
    return rewriter.rebuild(rewriter.pruned_weights)


# ------------------------------------------------------------------ plans
def _protect(model, groups, protected):
    if isinstance(protected, str):
        protected = (protected,)
    names = set(protected)
    known = {sub.name for layer in _walk.all_layers(model)
             for sub in adapter.layer_tree(layer)} | {
        layer.name for _, layer, _ in stats._iter_layers(model)
    }  # the layers inside composite layers (traced or not) too
    missing = sorted(names - known)
    if missing:
        raise ValueError(
            f"`protected` names layers that are not in model '{model.name}':"
            f" {missing}. Use the names of `model.layers` (nested models "
            "included)."
        )
    for group in groups:
        owners = set(group.layers) | {
            s.layer.name for s in group.slices if s.role == "producer"
        }
        hit = sorted(owners & names)
        if hit and group.prunable:
            group.prunable = False
            group.reason = f"protected layer '{hit[0]}'"


def _describe_group(group):
    return f"group {group.index} (layers {group.layers})"


def _validate_plan(plan, groups, min_units):
    if not isinstance(plan, dict):
        raise ValueError(
            "`plan` must be a dict {group index: kept unit indices or "
            f"count}}. Received: {type(plan).__name__}"
        )
    scores = None
    checked = {}
    for index, kept in plan.items():
        if not isinstance(index, (int, np.integer)) or not (
            0 <= index < len(groups)
        ):
            raise ValueError(
                f"`plan` refers to group {index!r}, but the model has "
                f"{len(groups)} unit groups (indices 0 to {len(groups) - 1})."
                " Get them with `keras_guided.find_unit_groups(model)`."
            )
        group = groups[index]
        if isinstance(kept, (int, np.integer)):
            if not 0 <= kept <= group.num_units:
                raise ValueError(
                    f"`plan` keeps {kept} units of {_describe_group(group)},"
                    f" which has {group.num_units}. Keep between "
                    f"{scoring.floor_units(min_units, group.num_units)} and "
                    f"{group.num_units}."
                )
            if scores is None:
                scores = scoring.default_scores(groups)
            order = np.argsort(-scores[index], kind="stable")
            kept = np.sort(order[:kept])
        kept = np.asarray(kept, dtype=np.int64).ravel()
        if len(set(kept.tolist())) != len(kept) or np.any(
            (kept < 0) | (kept >= group.num_units)
        ):
            raise ValueError(
                f"`plan` for {_describe_group(group)} must list distinct "
                f"unit indices in [0, {group.num_units}). Received: "
                f"{kept.tolist()}"
            )
        if len(kept) == group.num_units:
            continue
        if not group.prunable:
            raise ValueError(
                f"`plan` removes units of {_describe_group(group)}, which is "
                f"not prunable: {group.reason}."
            )
        if len(kept) < scoring.floor_units(min_units, group.num_units):
            raise ValueError(
                f"`plan` keeps {len(kept)} units of {_describe_group(group)};"
                f" at least min_units={min_units} must stay (a layer never "
                "has zero width)."
            )
        checked[int(index)] = np.sort(kept)
    return checked


def _dead_plan(rewriter, groups, tolerance, min_units, round_to):
    masks = scoring.dead_units(groups, tolerance=tolerance)
    for group, mask in zip(groups, masks):
        if not rewriter.analysis.removable_when_dead(group):
            mask[:] = False
    # A dead unit whose channel is not constant where a consumer reads it
    # (multiplied by a live broadcast gate) cannot be folded: keep it.
    for _ in range(3):
        plan = scoring.plan_from_mask(groups, masks, None, min_units,
                                      round_to)
        rewriter.set_plan(plan)
        rewriter.propagate_constants()
        unfoldable = rewriter.unfoldable_roots()
        if not unfoldable:
            return plan
        for root in unfoldable:
            index, local = rewriter.analysis.unit_location[root]
            masks[index][local] = False
    return plan


# --------------------------------------------------------------- rewriter
class _Rewriter:
    """Constants, folding and rebuilding for one analysed model."""

    def __init__(self, analysis, shapes=None):
        self.analysis = analysis
        self.shapes = shapes or {}
        self.unit_root = {
            location: root
            for root, location in analysis.unit_location.items()
        }
        self.notes = []
        self.rng = np.random.default_rng(0)

    # plan -> removed channels
    def set_plan(self, plan):
        self.plan = plan
        removed = []
        for index, kept in plan.items():
            group = self.analysis.groups[index]
            dropped = np.setdiff1d(np.arange(group.num_units), kept)
            removed.extend(self.unit_root[(index, int(u))] for u in dropped)
        self.removed = np.array(sorted(removed), dtype=np.int64)

    def removed_mask(self, tensor):
        units = self.analysis.tensor_units.get(id(tensor))
        if units is None:
            return None
        return np.isin(units, self.removed)

    def kept(self, tensor):
        mask = self.removed_mask(tensor)
        if mask is None:
            return None
        return np.flatnonzero(~mask)

    # ---------------------------------------------------------- constants
    def _ordered_nodes(self, functional):
        yield from adapter.graph_nodes(functional)

    def propagate_constants(self):
        self.consts = {}
        self.consumer_inputs = []  # (layer, input tensor, node)
        self._propagate(graph_lib._functional_of(self.analysis.model))

    def _propagate(self, functional):
        for node in self._ordered_nodes(functional):
            op = node.operation
            inner = graph_lib.inner_graph(op, node)
            if inner is not None:
                for outer, inner_in in zip(node.input_tensors, inner.inputs):
                    if id(outer) in self.consts:
                        self.consts[id(inner_in)] = self.consts[id(outer)]
                self._propagate(inner)
                for inner_out, outer in zip(inner.outputs, node.outputs):
                    if id(inner_out) in self.consts:
                        self.consts[id(outer)] = self.consts[id(inner_out)]
                continue
            if self._is_producer(op):
                self.consumer_inputs.append((op, node.input_tensors[0], node))
            self._node_constants(node, op)

    def _node_constants(self, node, op):
        wanted = []
        for tensor in node.outputs:
            mask = self.removed_mask(tensor)
            if mask is None:
                mask = np.zeros(0, dtype=bool)
            wanted.append((tensor, mask))
        if not any(mask.any() for _, mask in wanted):
            return
        try:
            if units_lib.layer_family(op) == "embedding":
                # A masked embedding column is zero for every token.
                values = [[np.zeros(self._shape(node.outputs[0]),
                                    dtype="float32")]]
            elif self._is_producer(op):
                # Masked incoming weights: the output is f(bias) whatever
                # the input, so a zero probe gives it.
                values = [self._call(node, op, zeros=True)]
            else:
                values = [self._call(node, op), self._call(node, op)]
        except Exception as error:  # noqa: BLE001 (any layer may refuse)
            self.notes.append(
                f"could not probe {graph_lib.describe(op)} for constants "
                f"({type(error).__name__}); its removed channels are not "
                "folded"
            )
            return
        for i, (tensor, mask) in enumerate(wanted):
            if not mask.any():
                continue
            first = values[0][i].astype(np.float64)
            same = np.isfinite(first)
            for other in values[1:]:
                same &= np.isclose(first, other[i], rtol=1e-5, atol=1e-6)
            # Entries of removed channels that do not depend on the input.
            keep = same & mask.reshape((1,) * (first.ndim - 1) + (-1,))
            self.consts[id(tensor)] = np.where(keep, first, np.nan)

    def _call(self, node, op, zeros=False):
        """Calls `op` on probes: constants where known, noise elsewhere."""
        probes = {}
        for tensor in node.input_tensors:
            const = self.consts.get(id(tensor))
            shape = const.shape if const is not None else self._shape(tensor)
            dtype = keras.backend.standardize_dtype(tensor.dtype)
            if zeros or "int" in dtype or "bool" in dtype:
                value = np.zeros(shape, dtype=dtype)
            else:
                value = self.rng.normal(size=shape).astype(dtype)
                if const is not None:
                    finite = np.isfinite(const)
                    value[finite] = const[finite]
            probes[id(tensor)] = value
        args, kwargs = adapter.call_arguments(node, probes)
        outputs = op(*args, **kwargs)
        return [ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]

    def _is_producer(self, op):
        """Whether `op` creates units (a depthwise-style grouped Conv, or a
        producer on untracked channels, only passes them on)."""
        return _is_producer(op) and (
            id(op) in self.analysis.producer_ids
            or units_lib.layer_family(op) != "conv"
        )

    def _shape(self, tensor):
        """The probe shape of `tensor`: batch 1, lengths of real inputs."""
        shape = list(self.shapes.get(id(tensor), tensor.shape))
        shape[0] = 1
        return tuple(_PROBE_SIZE if d is None else int(d) for d in shape)

    def _usable(self, tensor, mask):
        """Removed channels of `tensor` that are constant where read."""
        const = self.consts.get(id(tensor))
        if const is None:
            return np.zeros(len(mask), dtype=bool), None
        finite = np.isfinite(const).reshape(-1, const.shape[-1]).all(axis=0)
        return mask & finite, const

    def unfoldable_roots(self):
        """Removed units whose channel is not constant at a consumer."""
        bad = set()
        for _, tensor, _ in self.consumer_inputs:
            mask = self.removed_mask(tensor)
            if mask is None or not mask.any():
                continue
            usable, _ = self._usable(tensor, mask)
            units = self.analysis.tensor_units[id(tensor)]
            bad.update(int(units[c]) for c in np.flatnonzero(mask & ~usable))
        return bad

    # ------------------------------------------------------------ folding
    def fold_constants(self):
        """Bias deltas of consumers from the constants of removed inputs."""
        self.deltas = {}
        folded = {}
        for layer, tensor, _ in self.consumer_inputs:
            mask = self.removed_mask(tensor)
            if mask is None or not mask.any():
                continue
            usable, const = self._usable(tensor, mask)
            if id(layer) in folded:
                x = np.where(usable, np.nan_to_num(const), 0.0)
                first = folded[id(layer)]
                if x.shape != first.shape or not np.allclose(x, first):
                    self.notes.append(
                        f"{graph_lib.describe(layer)} is shared and its "
                        "calls read different constants from removed inputs;"
                        " the constants of its first call are folded"
                    )
                continue
            if (usable != mask).any():
                self.notes.append(
                    f"removed inputs of {graph_lib.describe(layer)} are not "
                    "constant; they are dropped without folding"
                )
            if not usable.any():
                continue
            x = np.where(usable, np.nan_to_num(const), 0.0).astype("float32")
            folded[id(layer)] = x
            response = _linear_response(layer, x)
            if response is None:
                self.notes.append(
                    f"cannot fold constants into {graph_lib.describe(layer)}"
                )
                continue
            delta = _center(response)
            flat = response.reshape(-1, response.shape[-1])
            if not np.allclose(flat, delta, rtol=1e-5, atol=1e-6):
                self.notes.append(
                    f"constants folded into {graph_lib.describe(layer)} are "
                    "exact away from the borders only (padding, strides); "
                    "see max_abs_diff"
                )
            if np.any(delta != 0):
                self.deltas[id(layer)] = delta

    # ------------------------------------------------------------ weights
    def original_weights(self, layer):
        return {
            units_lib.weight_key(layer, v): ops.convert_to_numpy(v.value).copy()
            for v in layer.weights
        }

    def kept_internal(self, layer):
        """Kept units of `layer` that are not channels (heads), or None."""
        units = self.analysis.internal_units.get(id(layer))
        if units is None:
            return None
        if self._keep_all:
            return np.arange(len(units))
        return np.flatnonzero(~np.isin(units, self.removed))

    def pruned_weights(self, layer):
        weights = self.original_weights(layer)
        delta = self.deltas.get(id(layer))
        if delta is not None:
            bias = weights.get("bias")
            if bias is None:
                bias = np.zeros(delta.shape[-1], dtype="float32")
            weights["bias"] = (bias + delta).astype(bias.dtype)
        return weights

    def masked_weights(self, layer):
        """Original weights with the removed units' inputs set to zero."""
        weights = self.original_weights(layer)
        for slice_ in self._masks.get(id(layer), ()):
            weights[slice_[0]] = _axes.zero_units(weights[slice_[0]],
                                                  slice_[1], slice_[2])
        return weights

    def prepare_masks(self):
        """Finds the weights to zero; returns whether any is non-zero."""
        self._masks = {}
        changes = False
        for index, kept in self.plan.items():
            group = self.analysis.groups[index]
            dropped = np.setdiff1d(np.arange(group.num_units), kept)
            for s in group.slices:
                if s.role != "producer":
                    continue
                if not units_lib.is_input_weight(
                    s.weight, units_lib.get_weight(s.layer, s.weight).shape
                ):
                    continue
                self._masks.setdefault(id(s.layer), []).append(
                    (s.weight, s.axis, s.positions[dropped].ravel())
                )
                rows = _axes.gather_units(
                    scoring.weight_value(s.layer, s.weight), s.axis,
                    s.positions[dropped],
                )
                changes = changes or bool(np.any(rows != 0))
        return changes

    # ---------------------------------------------------------- rebuilding
    def rebuild(self, weights_for, keep_all=False):
        """A new model with every layer re-created by its rule."""
        model = self.analysis.model
        self._weights_for = weights_for
        self._keep_all = keep_all
        self._cache = {}
        self._new_weights = {}
        self._copied_from = {}
        self.shared = {}
        functional = graph_lib._functional_of(model)
        inputs = [
            keras.Input(
                batch_shape=t.shape, dtype=t.dtype,
                name=adapter.producer(t).name,
            )
            for t in functional.inputs
        ]
        outputs = self._rebuild(functional, inputs)
        if isinstance(model, keras.Sequential):
            return keras.Sequential(
                [adapter.producer(inputs[0])]
                + [self._cache[id(layer)] for layer in model.layers],
                name=model.name,
            )
        return keras.Model(adapter.pack_inputs(functional, inputs), outputs,
                           name=model.name)

    def _untouched(self, op, node, kept_inputs, kept_outputs):
        """Whether `op` is rebuilt with its own channels and weights."""
        tensors = list(node.input_tensors) + list(node.outputs[:1])
        kept = list(kept_inputs) + [kept_outputs]
        for tensor, channels in zip(tensors, kept):
            full = graph_lib._channels(tensor)
            if channels is not None and len(channels) != full:
                return False
        internal = self.kept_internal(op)
        if internal is not None and len(internal) < len(
            self.analysis.internal_units[id(op)]
        ):
            return False
        if self._keep_all:
            return id(op) not in getattr(self, "_masks", {})
        return id(op) not in getattr(self, "deltas", {})

    def _kept(self, tensor):
        kept = None if self._keep_all else self.kept(tensor)
        if kept is None:
            channels = graph_lib._channels(tensor)
            if channels is not None:
                kept = np.arange(channels)
        return kept

    def _rebuild(self, functional, new_inputs):
        outputs = adapter.replay(functional, new_inputs, self._rebuild_node)
        return adapter.pack_outputs(functional, outputs)

    def _rebuild_node(self, node, args, kwargs, tensors):
        """The new outputs of one node: its operation rebuilt (once) and
        called on the new tensors."""
        op = node.operation
        new_op = self._cache.get(id(op))
        fresh = new_op is None
        traced = graph_lib.is_traced(op, node)
        if fresh:
            new_op = self._new_operation(op, node)
        try:
            if traced:
                # The rebuilt call is a Functional model of the tensors
                # the traced call read (inputs, then masks), in order.
                flat = [tensors[id(t)] for t in node.input_tensors]
                outputs = new_op(flat[0] if len(flat) == 1 else flat)
            else:
                outputs = new_op(*args, **kwargs)
            if fresh and isinstance(op, keras.layers.Layer) and not (
                graph_lib._is_model(op) or traced
            ):
                self._set_state(op, new_op)
        except Exception as error:  # noqa: BLE001 (another copy)
            if not fresh or self._copied_from.get(id(op)) != "config":
                raise
            # Rebuilt from its config, it does not take the original's
            # state (other sublayers) or its inputs: created again.
            new_op = _copies.replayed(op, error)
            self._cache[id(op)] = new_op
            self._copied_from[id(op)] = "constructor"
            try:
                outputs = new_op(*args, **kwargs)
                self._set_state(op, new_op)
            except Exception as second:  # noqa: BLE001
                raise _copies.cannot_copy(op, error, second) from second
        return outputs

    def _new_operation(self, op, node):
        inner = graph_lib.inner_graph(op, node)
        if inner is not None:
            # A nested model, or a traced composite layer (rebuilt as a
            # Functional model of standard layers and ops).
            inputs = []
            for t in inner.inputs:
                kept = self._kept(t)
                shape = list(t.shape)
                if kept is not None:
                    shape[-1] = len(kept)
                inputs.append(keras.Input(
                    batch_shape=tuple(shape), dtype=t.dtype,
                    name=adapter.producer(t).name,
                ))
            outputs = self._rebuild(inner, inputs)
            if isinstance(op, keras.Sequential):
                new = keras.Sequential(
                    [adapter.producer(inputs[0])]
                    + [self._cache[id(layer)] for layer in op.layers],
                    name=op.name,
                )
            else:
                new = keras.Model(
                    adapter.pack_inputs(inner, inputs),
                    outputs, name=op.name,
                )
            self._cache[id(op)] = new
            return new
        if not isinstance(op, keras.layers.Layer):
            self._cache[id(op)] = op  # a stateless keras.ops operation
            return op
        kept_inputs = [self._kept(t) for t in node.input_tensors]
        kept_outputs = self._kept(node.outputs[0])
        if self._untouched(op, node, kept_inputs, kept_outputs):
            # No removed channel passes through: a copy with all its state
            # (`_copies`), from its config where that round-trips.
            try:
                new, how = _copies.new_copy(
                    op, lambda config: self._standard(op, config))
                self._new_weights[id(op)] = _COPY
            except ValueError:
                reason = trace_lib.uncopyable(op)
                if reason is None:
                    raise
                # A keras-hub sublayer that does not copy: the model built
                # here holds the original layer itself (untouched, never
                # trained through it) and is kept only once rebuilt as its
                # keras-hub class (`prune_model`).
                self.shared[op.name] = reason
                new, how = op, "shared"
                self._new_weights[id(op)] = None
            self._copied_from[id(op)] = how
            self._cache[id(op)] = new
            return new
        rule = rules_lib.get_rule(op)
        extra = {}
        kept_heads = self.kept_internal(op)
        if kept_heads is not None:
            extra["kept_heads"] = kept_heads
        config, weights = rule(
            op, self._weights_for(op), kept_inputs, kept_outputs, **extra
        )
        config = self._standard(op, config)
        try:
            new = type(op).from_config(config)
        except Exception as error:  # noqa: BLE001 (re-raised with advice)
            raise _copies.from_config_error(op, error) from error
        self._new_weights[id(op)] = weights
        self._cache[id(op)] = new
        return new

    def _standard(self, op, config):
        dropped = []
        config = _standard_config(config, dropped)
        if dropped and not self._keep_all:
            self.notes.append(
                f"{graph_lib.describe(op)}: dropped {', '.join(dropped)} "
                "(not a Keras object), so the model loads without "
                "keras_guided"
            )
        return config

    def _set_state(self, op, new_op):
        """Gives the new (built) layer its weights and state."""
        weights = self._new_weights[id(op)]
        if weights is _COPY:
            _copies.copy_state(op, new_op)
        elif weights is not None:
            new_op.set_weights(weights)
            _copies.reload_state(new_op)



# ---------------------------------------------------------------- helpers
def _is_producer(op):
    rule = rules_lib.rule_for(op)
    return rule is not None and rule.kind == "producer"


def _probe_shapes(model, sample_inputs):
    """Concrete shapes of every tensor: from `sample_inputs`, or defaults."""
    functional = graph_lib._functional_of(model)
    if all(None not in tuple(t.shape)[1:] for t in functional.inputs):
        return {}  # fixed sizes: the symbolic shapes are the real ones
    if sample_inputs is not None:
        shapes = [tuple(np.shape(x))
                  for x in keras.tree.flatten(sample_inputs)]
    else:
        shapes = [_default_shape(t.shape) for t in functional.inputs]
    if len(shapes) != len(functional.inputs):
        return {}
    shapes = [(1,) + tuple(shape[1:]) for shape in shapes]
    return graph_lib.concrete_shapes(model, shapes)


def _default_shape(shape, batch=1):
    """A batch of `batch`, and `_PROBE_SIZE` for every unknown length."""
    dims = [batch] + list(shape[1:])
    return tuple(_PROBE_SIZE if d is None else int(d) for d in dims)


def _center(value):
    """The channel vector at the center of every non-batch, non-last axis."""
    value = np.asarray(value)
    index = (0,) + tuple(d // 2 for d in value.shape[1:-1])
    return value[index].astype(np.float64)


def _linear_response(layer, x):
    """Pre-activation, bias-free response of a consumer to `x`."""
    family = units_lib.layer_family(layer)
    if family in _PRODUCER_FAMILIES:
        config = layer.get_config()
        config.update(activation="linear", name=layer.name + "_fold_probe")
        if isinstance(layer, keras.layers.EinsumDense):
            config["bias_axes"] = None
        else:
            config["use_bias"] = False
        config = _standard_config(config)
        probe = type(layer).from_config(config)
        probe(x)
        weights = [
            ops.convert_to_numpy(v.value) for v in layer.weights
            if v.name != "bias"
        ]
        probe.set_weights(weights)
        return ops.convert_to_numpy(probe(x)).astype(np.float64)
    if rules_lib.user_rule(layer) is not None:
        response = ops.convert_to_numpy(layer(x))
        base = ops.convert_to_numpy(layer(np.zeros_like(x)))
        return (response - base).astype(np.float64)
    return None


def _is_keras_module(module):
    return module == "keras" or module.startswith("keras.")


def _standard_config(config, dropped=None):
    """Drops regularizers and constraints that are not Keras' own.

    The pruned model must load without keras_guided installed, and a
    GuidedRegularizer's per-unit coefficients no longer match the width.
    The names of dropped entries are appended to `dropped`.
    """
    config = dict(config)
    for key, value in list(config.items()):
        if not (key.endswith("_regularizer") or key.endswith("_constraint")):
            continue
        if isinstance(value, dict):
            module = str(value.get("module") or "")
        else:
            module = type(value).__module__
        if value is not None and not _is_keras_module(module):
            config[key] = None
            if dropped is not None:
                dropped.append(key)
    return config


# ------------------------------------------------------- report, verify
def _units_of(layer):
    try:
        return units_lib.num_units(layer)
    except ValueError:
        return None


def _params_only(model, pruned):
    after = {path: layer for path, layer, _ in _walk.leaf_layers(pruned)}
    rows = []
    for name, layer, _ in _walk.leaf_layers(model):
        new = after.get(name)
        rows.append({
            "layer": name,
            "params_before": int(sum(np.prod(w.shape) for w in layer.weights)),
            "params_after": int(sum(np.prod(w.shape) for w in new.weights))
            if new is not None else 0,
            "flops_before": None,
            "flops_after": None,
        })
    total = {"layer": "total", "flops_before": None, "flops_after": None}
    for key in ("params_before", "params_after"):
        total[key] = sum(row[key] for row in rows)
    rows.append(total)
    return rows


def _report_shapes(model, pruned, shapes):
    """Concrete shapes of both models at the probe's input shapes (a
    variable-length model), or `(None, None)`."""
    inputs = graph_lib._functional_of(model).inputs
    if not shapes or any(id(t) not in shapes for t in inputs):
        return None, None
    input_shapes = [shapes[id(t)] for t in inputs]
    return shapes, graph_lib.concrete_shapes(pruned, input_shapes)


def _report(model, pruned, analysis, plan, rewriter):
    shapes_before, shapes_after = _report_shapes(model, pruned,
                                                 rewriter.shapes)
    try:
        rows = stats.compare(model, pruned, shapes_before, shapes_after)
        if shapes_before is not None:
            inputs = graph_lib._functional_of(model).inputs
            rewriter.notes.append(
                "FLOPs counted for inputs of shapes "
                f"{[tuple(shapes_before[id(t)]) for t in inputs]} (the "
                "model's input lengths are unknown: the lengths of "
                "`sample_inputs`, else "
                f"{_PROBE_SIZE})"
            )
    except ValueError as error:  # unknown spatial sizes: no FLOPs
        rows = _params_only(model, pruned)
        rewriter.notes.append(f"FLOPs not counted: {error}")
    else:
        missing = stats.unpriced(
            model, stats.model_costs(model, shapes=shapes_before))
        if not missing.complete:
            rewriter.notes.append(
                "the FLOPs columns leave out what they cannot price: "
                + missing.describe(model.name))
    # Leaf layers by path, inside nested models and traced layers too.
    before = {name: layer for name, layer, _ in stats._iter_layers(model)}
    after = {name: layer for name, layer, _ in stats._iter_layers(pruned)}
    for row in rows:
        name = row["layer"]
        if name == "total":
            row["units_before"] = row["units_after"] = ""
            continue
        old = before.get(name)
        new = after.get(name)
        row["units_before"] = _units_of(old) if old is not None else None
        row["units_after"] = _units_of(new) if new is not None else None
    columns = ["layer", "units_before", "units_after", "params_before",
               "params_after", "flops_before", "flops_after"]
    rows = [{c: row.get(c) for c in columns} for row in rows]
    removed = {
        index: (analysis.groups[index].num_units, len(kept))
        for index, kept in sorted(plan.items())
    }
    notes = list(dict.fromkeys(rewriter.notes))
    for index in plan:
        group = analysis.groups[index]
        layer_names = set(group.layers)
        for s in group.slices:
            if isinstance(s.layer, keras.layers.LayerNormalization) and (
                s.layer.name in layer_names
            ):
                notes.append(
                    f"{graph_lib.describe(s.layer)} normalizes over channels"
                    " that were removed: the pruned model differs"
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
            for g in analysis.groups if not g.prunable
        ],
        unsupported=list(analysis.unsupported),
    )


def _sample_inputs(model, sample_inputs):
    if sample_inputs is not None:
        return sample_inputs
    rng = np.random.default_rng(0)
    functional = graph_lib._functional_of(model)
    values = []
    for tensor in functional.inputs:
        shape = _default_shape(tensor.shape, batch=4)
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if "int" in dtype:
            values.append(rng.integers(0, 2, size=shape).astype(dtype))
        else:
            values.append(rng.normal(size=shape).astype(dtype))
    return adapter.pack_inputs(functional, values)


def _predict(model, inputs):
    outputs = model(inputs, training=False)
    return [ops.convert_to_numpy(o).astype(np.float64)
            for o in keras.tree.flatten(outputs)]


def _note_random_outputs(model, stable, report):
    """Says which outputs vary between two calls, and what was compared."""
    functional = graph_lib._functional_of(model)
    for tensor, mask in zip(functional.outputs, stable):
        if mask.all():
            continue
        producer = adapter.producer(tensor)
        report.notes.append(
            f"the output of {graph_lib.describe(producer)} changes from "
            f"call to call at inference (a layer that is random at "
            f"inference, such as sampling, feeds it): {int(mask.sum())} of "
            f"{mask.size} values repeat and were compared"
            + ("" if mask.any() else "; nothing could be compared")
        )


def _verify(model, pruned, rewriter, report, sample_inputs):
    inputs = _sample_inputs(model, sample_inputs)
    try:
        original = _predict(model, inputs)
    except Exception as error:  # noqa: BLE001 (re-raised with advice)
        shapes = [tuple(np.shape(x)) for x in keras.tree.flatten(inputs)]
        raise ValueError(
            f"Verification could not run model '{model.name}' on sample "
            f"inputs of shapes {shapes}: {error}. Pass `sample_inputs=` "
            "with data the model accepts, or `verify=False`."
        ) from error
    # A layer random at inference (a VAE's sampling) changes some outputs
    # from call to call: compare only the values that repeat exactly.
    again = _predict(model, inputs)
    stable = [np.isclose(a, b, rtol=0, atol=0, equal_nan=True)
              for a, b in zip(original, again)]
    if rewriter.prepare_masks():
        masked = rewriter.rebuild(rewriter.masked_weights, keep_all=True)
        reference = _predict(masked, inputs)
    else:
        reference = original  # the removed inputs are exactly zero already
    result = _predict(pruned, inputs)
    _note_random_outputs(model, stable, report)

    def largest(values):
        return float(max(
            (np.max(v[m], initial=0.0) for v, m in zip(values, stable)),
            default=0.0,
        ))

    compared = sum(int(m.sum()) for m in stable)
    if compared == 0:
        report.max_abs_diff = report.max_abs_diff_original = None
        report.output_scale = None
        return
    report.max_abs_diff = largest(
        [np.abs(a - b) for a, b in zip(result, reference)])
    report.max_abs_diff_original = largest(
        [np.abs(a - b) for a, b in zip(result, original)])
    report.output_scale = largest([np.abs(a) for a in reference])
    if report.max_abs_diff > 1e-4 * max(1.0, report.output_scale):
        warnings.warn(
            f"The pruned model differs from the original with the removed "
            f"units masked by up to {report.max_abs_diff:.3g} (output scale "
            f"{report.output_scale:.3g}). See `PruneReport.notes` "
            f"({len(report.notes)} notes) for where folding is approximate.",
            stacklevel=3,
        )
