"""Resume state of `GuidedPruning`: what an interrupted `fit` needs to go
on as if it had not stopped.

`keras.callbacks.BackupAndRestore` (and `ModelCheckpoint` with
`save_weights_only=True`) save the model's weights and the optimizer; a
fresh `GuidedPruning` in the resumed `fit` would measure its start on the
restored, already pruned weights and prune again. So the callback's state
(the start and goal, the controller, the landing, the dead mask and death
guard, the coefficients, the epochs done) is written into the same weights
file, through one saveable set on the model
(`keras_guided._keras_adapter.attach_saved_state`), and read back when the
weights are loaded.

A loaded state resumes the run only when the resumed `fit` starts at the
epoch the state was saved after, on a model with the same prunable groups;
any other `fit` starts afresh (one instance serves several `fit` calls).

Keras restores weights by position, whatever the layers are named (a model
rebuilt in the same process numbers its auto-named layers on: `dense_3`
where the first had `dense`); the state follows them the same way. Its
groups are identified by the positions of their layers in the order Keras
saves them in (`signature`), never by names. And the order of the
callbacks does not matter: a weights file written at an epoch's end
before `GuidedPruning`'s own epoch end ran (`BackupAndRestore` listed
first) holds the weights and the state from before that end
(`pending_end`), and the resumed `fit` runs that end first
(`GuidedPruning` does), as the uninterrupted run did.

`export_state` gathers the state of a `fit` from its `FitContext` (the
step runner, the progress of the hooks) and its `FitParts` (coefficients,
and the mode: a `ScheduleMode` or `BudgetMode`) into what `pack` writes;
`restore` checks a state read with `unpack` against the resumed `fit` and
puts it back into those parts.
"""

import json
import warnings

import numpy as np
from keras import ops

from keras_guided import _keras_adapter as adapter

#: The model attribute that holds the state (never a layer or a weight).
ATTRIBUTE = "_keras_guided_pruning_state"
VERSION = 1
_HEADER = "state_json"
#: The threshold fields of the header in a budget run (no threshold).
_NO_THRESHOLD = {"start_value": None, "reached": False, "held_strength": None}


def pack(header, arrays):
    """`{key: np.ndarray}` for a weights file: the JSON `header` as bytes
    and the arrays as they are."""
    stored = {
        _HEADER: np.frombuffer(
            json.dumps(dict(header, version=VERSION)).encode(), dtype=np.uint8
        )
    }
    for key, value in arrays.items():
        stored[key] = np.asarray(value)
    return stored


def unpack(stored):
    """`(header, arrays)` from what `pack` wrote, or `None` (a file without
    the state, or of another version)."""
    if not stored or _HEADER not in stored:
        return None
    header = json.loads(
        np.asarray(stored[_HEADER], dtype=np.uint8).tobytes().decode()
    )
    if header.get("version") != VERSION:
        return None
    arrays = {k: np.asarray(v) for k, v in stored.items() if k != _HEADER}
    return header, arrays


def signature(plan, model):
    """What identifies the prunable groups of a plan: a state saved for
    other groups is not resumed. Each group is its slices (the position of
    the slice's layer under `model`, in the order Keras saves layers in;
    the weight; the role) and its number of units: no layer name, so the
    same architecture built again matches."""
    position = {
        id(layer): index
        for index, layer in enumerate(adapter.layer_tree(model))
    }
    return [
        [
            [
                [position.get(id(s.layer), -1), s.weight, s.role]
                for s in g.slices
            ],
            int(g.num_units),
        ]
        for g in plan.groups
    ]


def export_state(context, parts):
    """The `pack`ed state of the `fit` of a `FitContext` after
    `context.progress.epochs_done` epochs, or (`in_epoch`) during the
    next, before its end ran: the JSON header (with the mode's state: a
    `ScheduleMode`'s threshold fields, or with a budget the `BudgetMode`'s
    under `"budget"`) and the arrays of the step's state (the context's
    `runner`) and of `parts.coefficients`."""
    runner, progress = context.runner, context.progress
    budget, mode = context.budget, parts.mode
    coefficients = parts.coefficients
    epoch, pending_end = progress.epochs_done, progress.in_epoch
    strength = context.strength_value()
    header = {
        "epoch": int(epoch),
        "pending_end": bool(pending_end),
        "pending_steps": int(runner.pending_steps),
        "groups": signature(context.plan, context.model),
        **(mode.state() if budget is None else _NO_THRESHOLD),
        "known_dead": runner.known_dead,
        "strength": strength,
        "cost_factors": [float(f) for f in coefficients.cost_factors],
        "budget": None if budget is None else mode.state(),
    }
    active = [np.asarray(c, dtype="float64") for c in coefficients.active]
    arrays = {
        name: ops.convert_to_numpy(variable.value)
        for name, variable in (
            ("dead", runner.dead),
            ("allowed", runner.allowed),
            ("floor", runner.floor),
            ("held", runner.held),
            ("unit_weights", runner.unit_weights),
        )
    }
    arrays["coefficients"] = np.concatenate(active) if active else np.zeros(0)
    return pack(header, arrays)


def pending_end(restored):
    """Whether the state `(header, arrays)` was saved at an epoch's end
    before `GuidedPruning`'s own end of that epoch ran: the resumed `fit`
    runs it first."""
    return bool(restored[0].get("pending_end", False))


def restore(restored, context, parts, *, epoch):
    """Puts the state `(header, arrays)` back into the `fit` of a
    `FitContext` that starts at `epoch` (the step's state and strength
    into the context's `runner`, the coefficients into
    `parts.coefficients`, the threshold or budget state into `parts.mode`),
    when it resumes the run that saved it: it starts at the epoch the
    state was saved after (or during, `pending_end`), on the same prunable
    groups of the context's model, with a budget where that run had one.
    Otherwise warns and changes nothing.

    Returns:
        Whether the state was restored.
    """
    plan, model, runner = context.plan, context.model, context.runner
    budget, mode = context.budget, parts.mode
    coefficients = parts.coefficients
    header, arrays = restored
    resumes_at = header["epoch"] + int(pending_end(restored))
    mismatch = None
    if header["groups"] != signature(plan, model):
        mismatch = "for other prunable groups"
    elif (header["budget"] is None) != (budget is None):
        mismatch = "of a run with " + (
            "a budget" if budget is None else "no budget"
        )
    elif resumes_at != epoch:
        mismatch = (
            f"to resume at epoch {resumes_at}, and this fit starts at "
            f"epoch {epoch}"
        )
    if mismatch is not None:
        warnings.warn(
            "GuidedPruning found its state in the restored weights, "
            f"saved {mismatch}; it starts afresh from the restored "
            "weights (its start and budget are measured on them).",
            stacklevel=3,
        )
        return False
    for name, variable in (
        ("dead", runner.dead),
        ("allowed", runner.allowed),
        ("floor", runner.floor),
        ("held", runner.held),
    ):
        variable.assign(arrays[name])
    coefficients.cost_factors = np.asarray(header["cost_factors"])
    flat = arrays["coefficients"]
    coefficients.set(
        [
            flat[start : start + group.num_units]
            for group, start in zip(plan.groups, plan.offsets)
        ]
    )
    runner.unit_weights.assign(arrays["unit_weights"])
    runner.strength.assign(header["strength"])
    runner.known_dead = header["known_dead"]
    runner.pending_steps = header.get("pending_steps", 0)
    mode.restore(header if budget is None else header["budget"])
    return True
