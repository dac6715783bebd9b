"""The arguments of `prune_model` checked together, before any work."""

from keras_guided import scoring


def check_arguments(
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
    importance=None,
):
    """Raises a `ValueError` for conflicting or invalid arguments."""
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
    scoring.check_measure(
        measure, target, latency_table, latency_tolerance, max_tries
    )
    if uniform_blocks and (threshold is not None or plan is not None):
        raise ValueError(
            "`uniform_blocks=True` plans the widths itself: it works with a "
            "`target` or on dead units. Received: uniform_blocks=True with "
            f"{'threshold' if threshold is not None else 'plan'}. Drop one "
            "of them."
        )
    if importance is not None and (
        threshold is None and plan is None and target is None
    ):
        raise ValueError(
            "`importance` ranks units for a `target`, a `threshold` or a "
            "`plan` of counts. Received: importance without any of them "
            "(which removes the dead units only). Pass target=..., or drop "
            "importance."
        )
