"""A latency target held as measured: plan, time, re-aim (NetAdapt-style).

A `LatencyTable` is a model of the runtime, calibrated once; on another
day, with another process on the next core, the share it predicts is not
the share the interpreter measures (MobileNetV2 planned at 0.4 measured
0.68 on a loaded 2-core machine). `prune_model(..., measure=...)` closes
the loop (`plan_measured`; the planner, the candidate's `build` and the
`measure` are injected, so this module neither rebuilds nor times on its
own):

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

from keras_guided import latency as latency_lib
from keras_guided.scoring._latency_greedy import deepest_share
from keras_guided.scoring._targets import plan_for
from keras_guided.scoring._targets import read_target

_MAX_STEP = 2.0
_SAME_AIM = 1e-4


@dataclasses.dataclass(frozen=True)
class LatencyLoop:
    """How a latency target is held as measured (`plan_measured`).

    Attributes:
        build: `build(plan)` the candidate model of a plan.
        measure: `"litert"`, a `keras_guided.latency.InterleavedTimer`, or
            a callable `measure(model) -> run` (`run()` returns the ms of
            one timing).
        tolerance: relative tolerance on the measured share. Defaults to
            0.1.
        max_tries: candidates timed at most. Defaults to 5.
    """

    build: object
    measure: object
    tolerance: float = 0.1
    max_tries: int = 5


def plan_measured(inputs, target, loop):
    """The closed loop of `prune_model(..., measure=...)`: the plan of a
    latency `target` over `inputs` (`PlanInputs`, with its latency table)
    whose candidate measures within `loop.tolerance` of the asked share,
    and the `keras_guided.latency.LatencyCheck` (see module doc).

    Returns:
        `(plan, LatencyCheck)`.
    """
    target = read_target(target)
    measure, table = loop.measure, inputs.latency_table
    if measure == "litert":
        timer = latency_lib.InterleavedTimer.from_table(table)
    elif isinstance(measure, latency_lib.InterleavedTimer):
        timer = measure
    else:
        timer = latency_lib.InterleavedTimer(measure)
    base_run = timer.prepare(inputs.model)

    def plan_at(aim):
        return plan_for(
            inputs, target if aim is None else read_target({"latency": aim})
        )

    return _hold(
        target,
        plan_at,
        lambda plan: timer.compare(base_run, loop.build(plan)),
        loop,
        lambda: deepest_share(inputs),
        table.total_ms,
    )


def _hold(target, plan_at, compare, loop, floor, table_ms):
    """Plans, measures and re-aims; returns `(plan, LatencyCheck)`.

    Args:
        target: the latency `Target` (a share, or a count in ms).
        plan_at: `plan_at(aim)` the table's plan at share `aim`; with
            `aim=None` the plan of the user's target as given.
        compare: `compare(plan)` the `LatencyComparison` of the plan's
            candidate against the base.
        loop: the `LatencyLoop` (tolerance, max_tries).
        floor: `floor()`: the table's deepest share (computed lazily).
        table_ms: the table's total ms (a count target's first aim).
    """
    count, tolerance, max_tries = target.count, loop.tolerance, loop.max_tries
    asked = None if count is not None else target.fraction
    tries, plans = [], []
    aim, reason, lowest = (None if count is not None else asked), None, None
    for attempt in range(max_tries):
        plan = plan_at(aim)
        comparison = compare(plan)
        if asked is None:  # a count in ms: a share of the measured base
            asked = float(count) / comparison.base_ms
            aim = min(1.0, float(count) / table_ms)
        tries.append(
            latency_lib.LatencyTry(
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
    check = latency_lib.LatencyCheck(
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


def check_measure(measure, target, latency_table, tolerance, max_tries):
    """Raises unless the closed-loop arguments of `prune_model` fit
    (`measure`, `latency_tolerance`, `max_tries`).

    Raises:
        ValueError: naming the argument, the value received and the fix.
    """
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
        or isinstance(measure, latency_lib.InterleavedTimer)
        or callable(measure)
    ):
        raise ValueError(
            "`measure` must be 'litert', a keras_guided.latency."
            "InterleavedTimer, or a callable `measure(model) -> run` "
            "(`run()` returns the ms of one timing). Received: "
            f"measure={measure!r}"
        )


def _describe(measure):
    return (
        repr(measure)
        if isinstance(measure, str)
        else (f"<{type(measure).__name__}>")
    )
