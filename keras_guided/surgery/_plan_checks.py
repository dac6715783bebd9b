"""A user's plan checked against the unit groups."""

import numpy as np

from keras_guided import scoring


def _describe_group(group):
    return f"group {group.index} (layers {group.layers})"


def _validate_plan(plan, groups, min_units, scores=None):
    if not isinstance(plan, dict):
        raise ValueError(
            "`plan` must be a dict {group index: kept unit indices or "
            f"count}}. Received: {type(plan).__name__}"
        )
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
