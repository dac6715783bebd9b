"""The proximal core of `GuidedPruning`: pure functions in `keras.ops`.

`shrink(values, state, threshold, unit_weights, layout) -> (values, state)`
is one group soft-thresholding step over every unit group of a model, in
the style of optax's transformations: no variables, no Python loop over
units (one `segment_sum` per penalized weight slice, one gather per
slice), so the callback can trace it into the compiled train step on any
backend and call it again from Python where needed.

* `values`: the weights, one tensor per variable of the plan (an entry may
  be `None` when no penalized slice reads it).
* `state`: a `ProximalState`: `dead` (1 for units kept at zero), and for
  the budget guard `allowed` (how many more units may die), `held` (1 for
  units held at their floor in the last step) and `floor` (the norm such a
  unit is held at).
* `layout`: a `StepLayout`, the static index arrays of the plan.

`W_u <- W_u * max(0, 1 - threshold * w_u / ||W_u||)`, with `w_u` the unit
weight (`g_u * sqrt(p_u)`) and `threshold = lr * strength * steps`.
"""

from typing import Any
from typing import NamedTuple

import numpy as np
from keras import ops

from keras_guided import units as units_lib

TINY = 1e-30


class ProximalState(NamedTuple):
    """What one step reads and updates (all `(num_segments,)` except
    `allowed`, a scalar)."""

    dead: Any
    allowed: Any
    held: Any
    floor: Any


class StepLayout(NamedTuple):
    """Static arrays of a plan: `entries` are tuples `(value_index,
    other_axes, index, broadcast_shape)`; `num_segments` is the number of
    units plus one sentinel; `is_unit` is 1 for real units and 0 for the
    sentinel. `group_ids` (per unit, its group; the sentinel has its own)
    and `num_groups` turn on the budget guard; `None` leaves it off."""

    entries: Any
    num_segments: int
    is_unit: Any
    keep_dead: bool
    group_ids: Any = None
    num_groups: int = 0


def shrink(values, state, threshold, unit_weights, layout):
    """One group soft-thresholding step (pure).

    With the budget guard (`layout.group_ids` set), of the units this step
    would zero only the `state.allowed` ones furthest past zero die, and
    never the last live unit of a group; the others are held at
    `state.floor`. With `layout.keep_dead`, a unit whose weights end at
    exactly zero is marked dead for good, and dead units stay zero.

    Returns:
        `(new_values, new_state)`.
    """
    norms = ops.sqrt(
        squared_group_norms(values, layout.entries, layout.num_segments)
    )
    amount = threshold * unit_weights
    scale = ops.maximum(0.0, 1.0 - amount / ops.maximum(norms, TINY))
    scale = scale * (1.0 - state.dead)
    allowed, held = state.allowed, state.held
    if layout.group_ids is not None:
        scale, (allowed, held) = _guard_deaths(
            norms,
            amount,
            scale,
            state.dead,
            layout.is_unit,
            {
                "allowed": state.allowed,
                "floor": state.floor,
                "group_ids": layout.group_ids,
                "num_groups": layout.num_groups,
            },
        )
    dead = state.dead
    if layout.keep_dead:
        zero = ops.cast(ops.equal(norms * scale, 0.0), "float32")
        dead = ops.maximum(dead, zero * layout.is_unit)
    factors = [None] * len(values)
    for value_index, _, index, shape in layout.entries:
        factor = ops.reshape(ops.take(scale, index), shape)
        previous = factors[value_index]
        factors[value_index] = (
            factor if previous is None else (previous * factor)
        )
    new_values = []
    for value, factor in zip(values, factors):
        if factor is None:
            new_values.append(value)
        else:
            new_values.append(value * ops.cast(factor, value.dtype))
    return new_values, state._replace(dead=dead, allowed=allowed, held=held)


def _guard_deaths(norms, amount, scale, dead, is_unit, guard):
    """Lets at most `guard["allowed"]` units die in this step (the ones
    furthest past zero), never the last live unit of a group, and holds
    the others at their floor norm. Pure, vectorized (one sort)."""
    alive = (1.0 - dead) * is_unit
    margin = norms - amount
    dies = ops.cast(ops.equal(scale, 0.0), "float32") * alive
    very_low = ops.full_like(margin, -3e38)
    very_high = ops.full_like(margin, 3e38)
    group_ids = guard["group_ids"]
    alive_margin = ops.where(alive > 0, margin, very_low)
    best = ops.segment_max(
        alive_margin, group_ids, num_segments=guard["num_groups"] + 1
    )
    last = (
        ops.cast(
            ops.greater_equal(alive_margin, ops.take(best, group_ids)),
            "float32",
        )
        * alive
    )
    candidates = dies * (1.0 - last)
    key = ops.where(candidates > 0, margin, very_high)
    order = ops.sort(key)
    size = ops.shape(key)[0]
    allowed = guard["allowed"]
    index = ops.cast(
        ops.clip(allowed, 0.0, ops.cast(size - 1, "float32")), "int32"
    )
    cutoff = ops.take(order, index)
    everyone = ops.cast(
        ops.greater_equal(allowed, ops.sum(candidates)), "float32"
    )
    permitted = candidates * ops.maximum(
        ops.cast(ops.less(key, cutoff), "float32"), everyone
    )
    held = dies - permitted
    floor_scale = ops.minimum(1.0, guard["floor"] / ops.maximum(norms, TINY))
    scale = ops.where(held > 0, floor_scale, scale)
    new_allowed = allowed - ops.sum(permitted)
    return scale, (new_allowed, held)


def squared_group_norms(values, entries, num_segments):
    """Per-unit squared L2 norms (sentinel included) over `entries`: one
    segment sum per penalized weight slice."""
    squared = ops.zeros((num_segments,), dtype="float32")
    for value_index, other_axes, index, _ in entries:
        sq = ops.square(ops.cast(values[value_index], "float32"))
        if other_axes:
            sq = ops.sum(sq, axis=other_axes)
        sq = ops.reshape(sq, (-1,))
        squared = squared + ops.segment_sum(
            sq, index, num_segments=num_segments
        )
    return squared


def group_norms(values, entries, num_segments):
    """Per-unit L2 norms (sentinel included) over `entries`, with a safe
    gradient at zero."""
    return units_lib.safe_sqrt(
        squared_group_norms(values, entries, num_segments)
    )


def numpy_group_norms(values, entries, num_segments):
    """Per-unit L2 norms (sentinel included) in NumPy (float64), for the
    checks the callback makes from Python."""
    squared = np.zeros(num_segments)
    for value_index, other_axes, index, _ in entries:
        sq = np.square(values[value_index].astype("float64"))
        if other_axes:
            sq = sq.sum(axis=other_axes)
        squared += np.bincount(
            index, weights=sq.reshape(-1), minlength=num_segments
        )
    return np.sqrt(squared)
