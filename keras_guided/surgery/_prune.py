"""`prune_model`: the pipeline, one step handing its value to the next.

analysis (`graph.analyze`) -> plan (`_planning`) -> constants, folding and
rebuild (`_apply`) -> report (`_report`) -> inlining (`_inline`) ->
verification against the masked original, run without a second copy of
the weights (`_masked`, `_verification`) -> the keras-hub class
(`_hub_rebuild`) or the loadability check (`_loadable`) -> the compile
state (`_compile`)."""

import warnings

from keras_guided import graph as graph_lib
from keras_guided import rules as rules_lib
from keras_guided import scoring
from keras_guided import validation
from keras_guided.surgery import _arguments
from keras_guided.surgery import _compile
from keras_guided.surgery import _hub_rebuild
from keras_guided.surgery import _inline
from keras_guided.surgery import _loadable
from keras_guided.surgery._apply import apply_plan
from keras_guided.surgery._constants import ProbeNoise
from keras_guided.surgery._masked import masked_reference
from keras_guided.surgery._planning import choose_plan
from keras_guided.surgery._report import _report
from keras_guided.surgery._verification import _predict
from keras_guided.surgery._verification import _probe_shapes
from keras_guided.surgery._verification import _sample_inputs
from keras_guided.surgery._verification import _unknown_size
from keras_guided.surgery._verification import _verify


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
    importance=None,
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
        importance: the scores that rank units for `target`, `threshold`
            and a `plan` of counts, instead of the weight norms: one array
            of `num_units` non-negative scores per unit group, e.g.
            `keras_guided.scoring.calibration_scores(model, data)` (what
            each unit does on calibration data), or a callable
            `groups -> scores`. Scores must be for the groups this call
            finds (the same `on_unsupported`). Units scoring 0 go first,
            even past the target. Defaults to `None`: weight norms, with
            dead units at 0 (`keras_guided.scoring.default_scores`).

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
    _arguments.check_arguments(
        threshold,
        plan,
        target,
        min_units,
        round_to,
        latency_table,
        measure,
        latency_tolerance,
        max_tries,
        uniform_blocks,
        importance,
    )
    validation.check_not_quantized(model, "prune_model cannot prune")
    # 1. the unit groups
    analysis = graph_lib.analyze(model, on_unsupported=on_unsupported)
    groups = analysis.groups
    scoring.protect(model, groups, protected)
    families = scoring.find_families(model, groups) if uniform_blocks else []
    shapes = _probe_shapes(model, sample_inputs)
    # The probe noise of this prune, drawn on by every propagation of it.
    noise = ProbeNoise()
    # 2. the plan
    try:
        chosen = choose_plan(
            model,
            analysis,
            shapes,
            noise,
            families,
            threshold=threshold,
            plan=plan,
            target=target,
            min_units=min_units,
            round_to=round_to,
            tolerance=tolerance,
            latency_table=latency_table,
            measure=measure,
            latency_tolerance=latency_tolerance,
            max_tries=max_tries,
            importance=importance,
        )
    except rules_lib.UnknownSizeError as error:
        if target is None:
            raise
        # A FLOPs count met a size the sample inputs do not reach.
        raise _unknown_size(error, model, sample_inputs) from None
    plan = chosen.plan
    # 3, 4. constants, folding, rebuild
    applied = apply_plan(analysis, plan, shapes, noise)
    pruned = applied.model
    report = None
    if return_report or verify:
        report = _report(
            model, pruned, analysis, plan, shapes, chosen.notes + applied.notes
        )
        report.latency = chosen.latency_check
        if chosen.latency_check is not None:
            report.notes.append(chosen.latency_check.summary())
    # A layer shared across a nested model (a tied output projection)
    # would not load: that model is inlined, its layers unchanged.
    pruned = _inline.inline_shared(pruned)
    # 5. verification, against the masked original (run, not rebuilt)
    if verify:
        _verify(
            model,
            pruned,
            lambda: masked_reference(analysis, plan),
            report,
            sample_inputs,
            folding_notes=chosen.notes + applied.folding_notes,
        )
    if report is not None:
        report.notes.extend(scoring.describe_families(families, groups, plan))
    # the keras-hub class, loadability, 6. the compile state
    pruned = _as_hub_class(
        model, pruned, applied.shared, report, sample_inputs, uniform_blocks
    )
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


def _as_hub_class(model, pruned, shared, report, sample_inputs, uniform):
    """`pruned` rebuilt as `model`'s keras-hub class where it can be;
    else `pruned`, checked for loadability (with a note and a warning
    when it would not load)."""
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
        if rebuilt is None and uniform:
            warnings.warn(f"prune_model: {note}", stacklevel=3)
    if rebuilt is not None:
        return rebuilt
    reason = _loadable.check(pruned)
    if report is not None:
        report.loadable = reason is None
    if reason is not None:
        original = _loadable.check(model)
        if original is not None:
            # Not a change made by pruning: the user's own model does not
            # re-create from its config either (an unregistered layer
            # class, say), so both load only with `custom_objects`.
            if report is not None:
                report.notes.append(_loadable.note_unchanged(model, reason))
            return pruned
        note = _loadable.note(model, reason)
        if report is not None:
            report.notes.append(note)
        warnings.warn(f"prune_model: {note}", stacklevel=3)
    return pruned
