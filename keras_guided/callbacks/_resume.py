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
"""

import json

import numpy as np

#: The model attribute that holds the state (never a layer or a weight).
ATTRIBUTE = "_keras_guided_pruning_state"
VERSION = 1
_HEADER = "state_json"


def pack(header, arrays):
    """`{key: np.ndarray}` for a weights file: the JSON `header` as bytes
    and the arrays as they are."""
    stored = {_HEADER: np.frombuffer(
        json.dumps(dict(header, version=VERSION)).encode(), dtype=np.uint8)}
    for key, value in arrays.items():
        stored[key] = np.asarray(value)
    return stored


def unpack(stored):
    """`(header, arrays)` from what `pack` wrote, or `None` (a file without
    the state, or of another version)."""
    if not stored or _HEADER not in stored:
        return None
    header = json.loads(np.asarray(stored[_HEADER], dtype=np.uint8)
                        .tobytes().decode())
    if header.get("version") != VERSION:
        return None
    arrays = {k: np.asarray(v) for k, v in stored.items() if k != _HEADER}
    return header, arrays


def signature(plan):
    """What identifies the prunable groups of a plan: a state saved for
    other groups is not resumed."""
    return [[list(g.layers), int(g.num_units)] for g in plan.groups]
