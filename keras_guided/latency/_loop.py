"""A latency target held as measured: plan, time, re-aim (NetAdapt-style).

A `LatencyTable` is a model of the runtime, calibrated once; on another
day, with another process on the next core, the share it predicts is not
the share the interpreter measures (MobileNetV2 planned at 0.4 measured
0.68 on a loaded 2-core machine). `prune_model(..., measure=...)` closes
the loop:

1. plan at the asked share of the table (`aim = asked`);
2. build the candidate and time it against the base with an
   `InterleavedTimer` (rounds of base, candidate, candidate, base; the
   median ratio);
3. within `tolerance` (relative to the asked share): done. Otherwise
   re-aim: multiplicatively first (`aim * asked / measured`), then by the
   secant through the last two (aim, measured) points while the measured
   share rises with the aim, and by false position inside the tightest
   bracket once one try measured below and one above (a kernel's time
   moves in steps, so a secant alone overshoots); the aim stays within the
   table's deepest plan and 1, and an unbracketed step moves it at most by
   a factor of 2;
4. after `max_tries`, or when the aim cannot move (the deepest plan allowed
   by `min_units` still measures above the asked share), return the
   candidate closest to the asked share and warn with the numbers.

Every try is kept in `LatencyCheck.tries`, which `PruneReport.latency`
holds.

References:
    Yang et al., "NetAdapt: Platform-Aware Neural Network Adaptation for
    Mobile Applications", ECCV 2018: empirical measurements drive each
    step toward a latency budget.
"""

import dataclasses
import math
import warnings

_MAX_STEP = 2.0
_SAME_AIM = 1e-4


@dataclasses.dataclass(frozen=True)
class LatencyTry:
    """One candidate of the closed loop.

    Attributes:
        aim: the share of the table's latency the plan was made for.
        measured: the candidate's measured share of the base (median of
            the interleaved rounds).
        spread: coefficient of variation of the per-round ratios.
        base_ms: the base's median ms in this comparison.
        candidate_ms: the candidate's median ms.
    """

    aim: float
    measured: float
    spread: float
    base_ms: float
    candidate_ms: float


@dataclasses.dataclass(frozen=True)
class LatencyCheck:
    """How a latency target held as measured (`PruneReport.latency`).

    Attributes:
        asked: the asked share of the base's measured latency (a count
            target in ms is divided by the base's measured ms).
        measured: the returned candidate's measured share.
        tolerance: the relative tolerance on `measured / asked - 1`.
        within: whether the returned candidate is within it.
        tries: every `LatencyTry`, in order.
        chosen: the index in `tries` of the returned candidate.
        reason: why the loop stopped outside the tolerance (`None` when
            within).
    """

    asked: float
    measured: float
    tolerance: float
    within: bool
    tries: tuple
    chosen: int
    reason: str = None

    def summary(self):
        """One line: asked, measured, tolerance and tries."""
        verdict = "within" if self.within else "NOT within"
        tries = (
            "1 try" if len(self.tries) == 1 else (f"{len(self.tries)} tries")
        )
        return (
            f"Latency as measured: {self.measured:.3f} of the base "
            f"(asked {self.asked:.3f}, {verdict} {self.tolerance:.0%}) "
            f"after {tries}" + (f"; {self.reason}" if self.reason else "") + "."
        )


def hold_latency(
    asked,
    count,
    plan_at,
    build,
    base_run,
    timer,
    tolerance,
    max_tries,
    floor,
    table_ms,
):
    """Plans, measures and re-aims; returns `(plan, LatencyCheck)`.

    Args:
        asked: the asked share (a float in (0, 1]), or `None` for a count.
        count: the asked ms (a count target), or `None`.
        plan_at: `plan_at(aim)` the table's plan at share `aim`; with
            `aim=None` the plan of the user's target as given.
        build: `build(plan)` the candidate model.
        base_run: the base's prepared `run` (`timer.prepare(base)`).
        timer: an `InterleavedTimer`.
        tolerance: relative tolerance on the measured share.
        max_tries: candidates timed at most.
        floor: `floor()`: the table's deepest share (computed lazily).
        table_ms: the table's total ms (a count target's first aim).
    """
    tries, plans = [], []
    aim, reason, lowest = (None if count is not None else asked), None, None
    for attempt in range(max_tries):
        plan = plan_at(aim)
        comparison = timer.compare(base_run, build(plan))
        if asked is None:  # a count in ms: a share of the measured base
            asked = float(count) / comparison.base_ms
            aim = min(1.0, float(count) / table_ms)
        tries.append(
            LatencyTry(
                aim,
                comparison.ratio,
                comparison.spread,
                comparison.base_ms,
                comparison.candidate_ms,
            )
        )
        plans.append(plan)
        if abs(comparison.ratio / asked - 1.0) <= tolerance:
            break
        if attempt == max_tries - 1:
            reason = f"stopped after max_tries={max_tries}"
            break
        following = _next_aim(tries, asked)
        if following < aim and lowest is None:
            lowest = floor() * (1 + 1e-6)
        if lowest is not None:
            following = max(following, min(lowest, 1.0))
        following = min(following, 1.0)
        if abs(following - aim) <= _SAME_AIM * aim:
            reason = (
                "the deepest plan the table allows (within `min_units`) "
                f"is at {aim:.3f} of the table and still measures "
                f"{comparison.ratio:.3f}"
                if following < 1.0
                else "the full model already measures below the asked share"
            )
            break
        aim = following
    chosen = min(
        range(len(tries)),
        key=lambda i: abs(math.log(tries[i].measured / asked)),
    )
    best = tries[chosen]
    within = abs(best.measured / asked - 1.0) <= tolerance
    check = LatencyCheck(
        float(asked),
        best.measured,
        float(tolerance),
        within,
        tuple(tries),
        chosen,
        None if within else reason or "no try landed within the tolerance",
    )
    if not within:
        warnings.warn(
            f"Latency target not met as measured: asked {asked:.3f} of the "
            f"base's latency, measured {best.measured:.3f} "
            f"({best.measured / asked - 1:+.1%}; tolerance "
            f"{tolerance:.0%}) after {len(tries)} tries: {check.reason}. "
            "Returning the closest candidate; every try is in "
            "`PruneReport.latency`.",
            stacklevel=4,
        )
    return plans[chosen], check


def _next_aim(tries, asked):
    """The next aim: inside a bracket (a try measured below the asked share
    and one above), false position between the tightest pair, bisecting
    when that lands near an end; otherwise the secant through the last two
    tries while the measured share rises with the aim, else
    multiplicative; at most a factor 2 a step."""
    below = [t for t in tries if t.measured < asked]
    above = [t for t in tries if t.measured > asked]
    if below and above:
        low = max(below, key=lambda t: t.aim)
        high = min(above, key=lambda t: t.aim)
        if low.aim < high.aim:
            width = high.aim - low.aim
            following = low.aim + width * (asked - low.measured) / (
                high.measured - low.measured
            )
            if (
                not low.aim + 0.1 * width
                <= following
                <= (high.aim - 0.1 * width)
            ):
                following = low.aim + width / 2
            return following
    last = tries[-1]
    following = last.aim * asked / last.measured
    if len(tries) >= 2:
        before = tries[-2]
        rise = last.measured - before.measured
        run = last.aim - before.aim
        if run and rise and rise / run > 0:
            following = last.aim + (asked - last.measured) * run / rise
    return min(max(following, last.aim / _MAX_STEP), last.aim * _MAX_STEP)


def check_arguments(measure, target, latency_table, tolerance, max_tries):
    """Raises unless the closed-loop arguments of `prune_model` fit."""
    from keras_guided.latency import _timing

    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float))
        or not 0 < tolerance < 1
    ):
        raise ValueError(
            "`latency_tolerance` must be a float in (0, 1): the relative "
            "distance allowed between the measured and the asked share, "
            f"e.g. 0.1. Received: latency_tolerance={tolerance!r}"
        )
    if (
        isinstance(max_tries, bool)
        or not isinstance(max_tries, int)
        or (max_tries < 1)
    ):
        raise ValueError(
            "`max_tries` must be an int >= 1 (candidates timed at most). "
            f"Received: max_tries={max_tries!r}"
        )
    if measure is None:
        return
    if not (isinstance(target, dict) and list(target) == ["latency"]) or (
        latency_table is None
    ):
        raise ValueError(
            "`measure` times the candidates of a latency target. Received: "
            f"measure={_describe(measure)} with target={target!r} and "
            "latency_table="
            f"{'None' if latency_table is None else '<LatencyTable>'}. "
            "Pass target={'latency': 0.5} and latency_table=table, or drop "
            "measure."
        )
    if not (
        measure == "litert"
        or isinstance(measure, _timing.InterleavedTimer)
        or callable(measure)
    ):
        raise ValueError(
            "`measure` must be 'litert', a keras_guided.latency."
            "InterleavedTimer, or a callable `measure(model) -> run` "
            "(`run()` returns the ms of one timing). Received: "
            f"measure={measure!r}"
        )


def run(
    model,
    groups,
    target,
    plan_at,
    build,
    measure,
    table,
    tolerance,
    max_tries,
    min_units,
    shapes,
):
    """The closed loop of `prune_model(..., measure=...)`: `(plan,
    LatencyCheck)` (see module doc)."""
    from keras_guided import scoring
    from keras_guided.latency import _plan
    from keras_guided.latency import _timing

    if measure == "litert":
        timer = _timing.InterleavedTimer.from_table(table)
    elif isinstance(measure, _timing.InterleavedTimer):
        timer = measure
    else:
        timer = _timing.InterleavedTimer(measure)
    count = scoring._target_count(target)
    asked = None if count is not None else scoring.parse_target(target)[1]

    def floor():
        return _plan.deepest_share(
            groups,
            model,
            scoring.default_scores(groups),
            min_units,
            True,
            shapes,
            table,
        )

    return hold_latency(
        asked,
        count,
        plan_at,
        build,
        timer.prepare(model),
        timer,
        tolerance,
        max_tries,
        floor,
        table.total_ms,
    )


def _describe(measure):
    return (
        repr(measure)
        if isinstance(measure, str)
        else (f"<{type(measure).__name__}>")
    )
