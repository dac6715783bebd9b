"""prune_model: rebuild a model without its pruned unit groups.

The steps, each in a private module of this package:

1. `graph.analyze` finds the unit groups;
2. a *plan* (kept units per group) comes from the dead units (default), a
   threshold, a target, or the user (`scoring.py`; checked in
   `_plan_checks`), with `uniform_blocks` the same widths in repeated
   blocks (`keras_guided._uniform`);
3. constants: a removed unit whose incoming weights are zero (or masked to
   zero) still emits a constant (its bias through the activation, BN's
   shift, ...). We propagate those constants through the graph by calling
   each layer on constant-filled probes, then fold them into the biases of
   the consumers (Dense: `bias += const @ removed_rows`; Conv: the same,
   summed over the kernel window; `_constants`);
4. the graph is rebuilt layer by layer, through `keras.models.clone_model`
   (its graph walk, with a `call_function` that makes each call;
   `_keras_adapter.replay`): a layer with removed units is re-created
   from its sliced config and weights by its rule (`keras_guided.rules`);
   a layer no removed unit passes through is copied with all its state
   (adapted statistics, vocabularies; `_copies.py`); shared layers stay
   shared, nested models are rebuilt as nested models, and no new layer
   shares a variable with the original (`_rebuild`; `_rewriter` holds
   the plan's kept channels and weights); a keras-hub model is then
   rebuilt as its own class where its config can say the widths
   (`keras_guided._hub_rebuild`);
5. verification: the pruned model against the original with the removed
   units masked (their incoming weights set to zero) on sample inputs
   (`_verification`), and the `PruneReport` (`_report`);
6. the compile state: a compiled model's pruned model is compiled with
   the same loss and metric objects and a new optimizer of the same
   config, or returned uncompiled with a warning (`_compile`).
"""

import warnings

from keras_guided import _hub_rebuild
from keras_guided import _inline
from keras_guided import _uniform
from keras_guided import graph as graph_lib
from keras_guided import rules as rules_lib
from keras_guided import scoring
from keras_guided import validation
from keras_guided.latency import _loop as _latency_loop
from keras_guided.surgery import _compile
from keras_guided.surgery import _loadable
from keras_guided.surgery._plan_checks import _dead_plan
from keras_guided.surgery._plan_checks import _protect
from keras_guided.surgery._plan_checks import _validate_plan
from keras_guided.surgery._report import PruneReport
from keras_guided.surgery._report import _report
from keras_guided.surgery._rewriter import Rewriter as _Rewriter
from keras_guided.surgery._verification import _predict
from keras_guided.surgery._verification import _probe_shapes
from keras_guided.surgery._verification import _sample_inputs
from keras_guided.surgery._verification import _unknown_size
from keras_guided.surgery._verification import _verify

__all__ = ["PruneReport", "prune_model"]


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
        `PruneReport.notes` says why. A compiled `model` gives a compiled
        result: the loss, metric and loss-weight objects passed to its
        `compile` reused as they are, a new optimizer of the same class
        and config (no slots, step 0); where that cannot be done (an
        optimizer whose config does not round-trip), an uncompiled model,
        a warning, and `PruneReport.compiled` is `False`. The user's own
        regularizers, constraints, initializers and activations are
        reused in the pruned layers, not re-created from their config.

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
    chosen = [
        name
        for name, value in (
            ("threshold", threshold),
            ("plan", plan),
            ("target", target),
        )
        if value is not None
    ]
    if len(chosen) > 1:
        raise ValueError(
            "Pass at most one of `threshold`, `plan` and `target`. "
            f"Received: {', '.join(chosen)}"
        )
    if uniform_blocks and isinstance(target, dict) and "latency" in target:
        raise ValueError(
            "`uniform_blocks=True` works with a units, params or FLOPs "
            "target. Received: a latency target. Use target={'flops': ...}"
            ", or uniform_blocks=False."
        )
    scoring.check_limits(min_units, round_to)
    if latency_table is not None and target is None:
        raise ValueError(
            "`latency_table` prices a latency target only. Received: "
            "latency_table=<LatencyTable> without a target. Pass "
            "target={'latency': 0.5}, or drop latency_table."
        )
    _latency_loop.check_arguments(
        measure, target, latency_table, latency_tolerance, max_tries
    )
    if uniform_blocks and (threshold is not None or plan is not None):
        raise ValueError(
            "`uniform_blocks=True` plans the widths itself: it works with a "
            "`target` or on dead units. Received: uniform_blocks=True with "
            f"{'threshold' if threshold is not None else 'plan'}. Drop one "
            "of them."
        )
    validation.check_not_quantized(model, "prune_model cannot prune")
    analysis = graph_lib.analyze(model, on_unsupported=on_unsupported)
    groups = analysis.groups
    _protect(model, groups, protected)
    families = _uniform.find_families(model, groups) if uniform_blocks else []
    rewriter = _Rewriter(analysis, _probe_shapes(model, sample_inputs))
    latency_check = None
    if plan is not None:
        plan = _validate_plan(plan, groups, min_units)
    elif threshold is not None:
        plan = scoring.plan_from_threshold(
            groups, threshold, min_units=min_units, round_to=round_to
        )
    elif target is not None:
        try:

            def plan_at(aim):
                return scoring.plan_from_target(
                    groups,
                    model,
                    target if aim is None else {"latency": aim},
                    min_units=min_units,
                    round_to=round_to,
                    shapes=rewriter.shapes,
                    latency_table=latency_table,
                )

            if families:
                merged = _uniform.MergedGroups(
                    groups, families, scoring.default_scores(groups)
                )
                plan = merged.spread(
                    scoring.plan_from_target(
                        merged.groups,
                        model,
                        target,
                        scores=merged.scores,
                        min_units=min_units,
                        round_to=round_to,
                        shapes=rewriter.shapes,
                    )
                )
            elif measure is None:
                plan = plan_at(None)
            else:
                plan, latency_check = _latency_loop.run(
                    model,
                    groups,
                    target,
                    plan_at,
                    lambda candidate: _rebuilt(
                        analysis, rewriter.shapes, candidate
                    ),
                    measure,
                    latency_table,
                    latency_tolerance,
                    max_tries,
                    min_units,
                    rewriter.shapes,
                )
        except rules_lib.UnknownSizeError as error:
            raise _unknown_size(error, model, sample_inputs) from None
    else:
        plan = _dead_plan(rewriter, groups, tolerance, min_units, round_to)
        if families:
            plan = _uniform.widen(
                plan, groups, families, scoring.default_scores(groups)
            )
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
        model, pruned, lambda: _sample_inputs(model, sample_inputs), _predict
    )
    if shared and rebuilt is None:
        reason = next(iter(shared.values()))
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
    if rebuilt is None:
        reason = _loadable.check(pruned)
        if report is not None:
            report.loadable = reason is None
        if reason is not None:
            note = _loadable.note(model, reason)
            if report is not None:
                report.notes.append(note)
            warnings.warn(f"prune_model: {note}", stacklevel=2)
    note = _compile.carry_compile(model, pruned)
    if report is not None:
        report.compiled = bool(getattr(pruned, "compiled", False))
    if note is not None:
        if report is not None:
            report.notes.append(note)
        warnings.warn(f"prune_model: {note}", stacklevel=2)
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
