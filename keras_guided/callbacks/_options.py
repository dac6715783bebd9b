"""The arguments of `GuidedPruning`, validated once in its `__init__`.

`validate_options` checks every argument the way Keras checks a layer's
arguments (an error that names the argument, the value received and the
fix) and resolves the defaults that depend on each other: a dict `target`
with the default schedule is a budget (`schedule="budget"`, calibrated
strength, importance guidance), any other target a threshold. It returns
a frozen `Options`, whose fields the callback keeps as its attributes of
the same names. The option constants (`MODES`, `SCHEDULES`, ...) are
defined here and public as `keras_guided.callbacks.MODES`, ...
"""

import dataclasses
import math
import warnings

import numpy as np

from keras_guided import budget as budget_lib
from keras_guided import guidance as guidance_lib
from keras_guided import latency as latency_lib
from keras_guided import regularizers as regularizers_lib
from keras_guided import scoring

MODES = ("proximal", "penalty")
SCHEDULES = ("constant", "warmup", "ramp", "budget")
COSTS = ("params", "flops", "latency")
TARGET_METRICS = ("units", "params", "flops", "latency")
ON_TARGET = ("hold", "release", "stop")
ON_UNREACHABLE = ("raise", "warn")


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {list(choices)}. "
            f"Received: {name}={value!r}"
        )
    return value


@dataclasses.dataclass(frozen=True)
class Options:
    """The validated arguments of one `GuidedPruning` (see its `Args:`).

    `budget` is `(metric, amount)` for a budget target (then `target` is
    `None`), `target` and `target_metric` a threshold target, and
    `base_strength` the validated `strength` (`None`: calibrated at the
    start of `fit`).
    """

    mode: str
    schedule: object
    budget: tuple | None
    base_strength: float | None
    target_epochs: int | float | None
    guidance: object
    warmup_epochs: int
    cost: str | None
    proximal_every: int
    adapt_every: int | None
    keep_dead: bool
    target: float | int | None
    target_metric: str
    on_target: str
    latency_table: object
    on_unsupported: str
    on_unreachable: str
    protected: tuple = ()
    uniform_blocks: bool = False


def validate_options(
    *,
    strength,
    guidance,
    mode,
    schedule,
    warmup_epochs,
    cost,
    adapt_every,
    keep_dead,
    target,
    target_metric,
    on_target,
    proximal_every,
    on_unsupported,
    target_epochs,
    latency_table,
    on_unreachable,
    protected=(),
    uniform_blocks=False,
):
    """The `Options` of `GuidedPruning(...)` called with these arguments.

    Raises:
        ValueError: for an invalid argument, as documented on
            `GuidedPruning`.
    """
    mode = _check_choice(mode, "mode", MODES)
    if schedule is not None and not callable(schedule):
        _check_choice(schedule, "schedule", SCHEDULES)
    budget = None
    if isinstance(target, dict) and schedule in (None, "budget"):
        budget = budget_lib.parse_budget(target)
        schedule = "budget"
        target = None
    elif isinstance(target, dict):
        target_metric, target = budget_lib.parse_budget(target)
        if isinstance(target, float) and target >= 1.0:
            target = None  # keep everything: nothing to reach
    elif target is not None:
        warnings.warn(
            "GuidedPruning(target=<number>, target_metric=...) is "
            "deprecated: pass the one target grammar shared with "
            "prune_model, e.g. target={'units': 66} or "
            "{'flops': 0.1}, which also turns on the budget "
            "controller.",
            DeprecationWarning,
            stacklevel=3,
        )
    if schedule == "budget":
        if budget is None:
            raise ValueError(
                "schedule='budget' needs a target to land on, e.g. "
                "target={'flops': 0.1}. Received: target=None"
            )
        if mode != "proximal":
            raise ValueError(
                "A budget target needs mode='proximal' (the budget is "
                "reached by units that are exactly zero). "
                f"Received: mode={mode!r}"
            )
    elif schedule is None:
        schedule = "constant"
    if strength is None:
        # In budget mode the strength is calibrated at the start of fit.
        strength = None if budget else 1e-3
    if strength is not None:
        strength = regularizers_lib.validate_strength(strength)
    if target_epochs is not None:
        target_epochs = _positive_epochs(target_epochs, "target_epochs")
    if guidance is None:
        guidance = "importance" if budget else "linear"
    if guidance == "importance" and budget is None:
        raise ValueError(
            "guidance='importance' needs a budget to know which units "
            "to spare: pass target={'units': ...}, {'params': ...} or "
            "{'flops': ...}. Received: target=None"
        )
    guidance = _validate_guidance(guidance)
    warmup_epochs = _positive_int(warmup_epochs, "warmup_epochs")
    if cost is not None:
        _check_choice(cost, "cost", COSTS)
    proximal_every = _positive_int(proximal_every, "proximal_every")
    if adapt_every is not None:
        adapt_every = _positive_int(adapt_every, "adapt_every")
    if not isinstance(keep_dead, bool):
        raise ValueError(
            f"`keep_dead` must be True or False. "
            f"Received: keep_dead={keep_dead!r}"
        )
    target = _validate_target(target)
    target_metric = _check_choice(
        target_metric, "target_metric", TARGET_METRICS
    )
    on_target = _check_choice(on_target, "on_target", ON_TARGET)
    latency_table = _check_latency_table(
        latency_table,
        budget,
        target,
        target_metric,
        cost,
    )
    on_unreachable = _check_choice(
        on_unreachable, "on_unreachable", ON_UNREACHABLE
    )
    protected = scoring.check_protected(protected)
    if not isinstance(uniform_blocks, bool):
        raise ValueError(
            "`uniform_blocks` must be True or False. "
            f"Received: uniform_blocks={uniform_blocks!r}"
        )
    if uniform_blocks and "units" in (
        budget[0] if budget else None,
        target_metric if target is not None else None,
    ):
        raise ValueError(
            "`uniform_blocks=True` trains the blocks' units together, so a "
            "units target would count one block's unit for all of them. "
            "Received: uniform_blocks=True with a 'units' target. Use a "
            "'params' or 'flops' target (e.g. target={'flops': 0.5}), or "
            "uniform_blocks=False."
        )
    return Options(
        mode=mode,
        schedule=schedule,
        budget=budget,
        base_strength=strength,
        target_epochs=target_epochs,
        guidance=guidance,
        warmup_epochs=warmup_epochs,
        cost=cost,
        proximal_every=proximal_every,
        adapt_every=adapt_every,
        keep_dead=keep_dead,
        target=target,
        target_metric=target_metric,
        on_target=on_target,
        latency_table=latency_table,
        on_unsupported=on_unsupported,
        on_unreachable=on_unreachable,
        protected=protected,
        uniform_blocks=uniform_blocks,
    )


def _validate_guidance(guidance):
    if isinstance(guidance, guidance_lib.ScoreGuidance):
        return guidance
    if isinstance(guidance, str) and guidance in (
        "from_regularizers",
        "importance",
    ):
        return guidance
    if isinstance(guidance, dict) and "class_name" not in guidance:
        checked = {}
        for name, spec in guidance.items():
            if not isinstance(name, str):
                raise ValueError(
                    "`guidance` dict keys must be layer names (str). "
                    f"Received key {name!r}."
                )
            checked[name] = guidance_lib.get(spec)
        return checked
    try:
        return guidance_lib.get(guidance)
    except ValueError as error:
        raise ValueError(
            f"{error} GuidedPruning also accepts 'from_regularizers' and a "
            "dict {layer_name: scheme or coefficients}."
        ) from None


def _positive_epochs(value, name):
    """A positive int, or a positive float (part of an epoch, or more)."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value):
        if value > 0:
            return int(value) if float(value).is_integer() else float(value)
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value >= 1:
            return int(value)
    raise ValueError(
        f"`{name}` must be a positive number of epochs: an int, or a float "
        f"such as 0.5 for a path that ends halfway through the first "
        f"epoch. Received: {name}={value!r}"
    )


def _positive_int(value, name):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < 1
    ):
        raise ValueError(
            f"`{name}` must be a positive int. Received: {name}={value!r}"
        )
    return int(value)


def _check_latency_table(table, budget, target, target_metric, cost):
    """The table, checked against what prices latency (a latency budget,
    threshold target or cost); `None` without one."""
    uses = []
    if budget is not None and budget[0] == "latency":
        uses.append(f"target={{'latency': {budget[1]!r}}}")
    if target is not None and target_metric == "latency":
        uses.append(f"target={{'latency': {target!r}}}")
    if cost == "latency":
        uses.append("cost='latency'")
    if table is None:
        if uses:
            raise ValueError(
                f"GuidedPruning({uses[0]}) needs a latency table measured "
                "on the target runtime. Received: latency_table=None. "
                + latency_lib.BUILD_HINT
            )
        return None
    latency_lib.check_is_table(table)
    if not uses:
        raise ValueError(
            "`latency_table` prices latency only, and this GuidedPruning "
            "has no latency target or cost. Received: latency_table="
            f"<LatencyTable of model '{table.model_name}'> with "
            f"target={_describe_target(budget, target, target_metric)}, "
            f"cost={cost!r}. Pass target={{'latency': 0.5}} or "
            "cost='latency', or drop latency_table."
        )
    return table


def _describe_target(budget, target, target_metric):
    if budget is not None:
        return repr({budget[0]: budget[1]})
    if target is not None:
        return repr({target_metric: target})
    return "None"


def _validate_target(target):
    if target is None:
        return None
    if isinstance(target, bool):
        pass
    elif isinstance(target, (int, np.integer)) and target >= 1:
        return int(target)
    elif (
        isinstance(target, (float, np.floating))
        and math.isfinite(target)
        and 0 < target < 1
    ):
        return float(target)
    raise ValueError(
        "`target` must be None, a float in (0, 1) (fraction of the starting "
        "value) or an int >= 1 (absolute count). "
        f"Received: target={target!r}"
    )
