"""What the parts of `GuidedPruning` read for one `fit`: one `FitContext`.

`GuidedPruning.on_train_begin` builds a `FitContext` once per `fit`: the
validated options (`_options.Options`, as the callback's attributes are at
the start of that `fit`), the model `fit` trains and the network it prunes
(a distiller's student), the `GroupPlan` of the unit groups training can
prune (the removable ones only), the `StepRunner` that owns the step's
state (the strength and unit-weight variables, the dead mask, the death
guard), the `fit`'s `params` (`"epochs"`, `"steps"`) and a `FitProgress`
that the hooks advance. Every part of the recipe (`LiveMetrics`,
`Coefficients`, `ScheduleMode`, `BudgetMode` and the budget's own parts,
`PenaltyMode`, the resume state) is built from the context and reads it;
none reads the callback.

The parts built for a `fit` are gathered in one `FitParts`; the context
holds nothing they compute, so a part depends on another only through the
argument it is given (the budget mode's `Coefficients`, say).
"""

import dataclasses

import keras
from keras import ops

from keras_guided.callbacks import _step_runner


@dataclasses.dataclass
class FitProgress:
    """Where a `fit` is, as the hooks count it (the resume state reads it).

    Attributes:
        epochs_done: the epochs whose end has run.
        in_epoch: whether an epoch has begun and its end has not run.
        first_epoch: whether no epoch of this `fit` has begun yet.
    """

    epochs_done: int = 0
    in_epoch: bool = False
    first_epoch: bool = True


@dataclasses.dataclass(frozen=True)
class FitContext:
    """What the parts of one `fit` read.

    Attributes:
        options: the validated `_options.Options` of this `fit`.
        model: the model `fit` trains (its optimizer takes the step hook).
        network: the network pruned (`trained_network(model)`).
        plan: the `GroupPlan` of `network`'s prunable, removable groups.
        runner: the `StepRunner` of `plan` on `model`, with the step's
            state: `strength`, `unit_weights`, `dead`, `allowed`,
            `floor`, `held`.
        params: the callback's `params` of this `fit` (`"epochs"`,
            `"steps"`; empty when Keras gives none).
        progress: the `FitProgress` the hooks advance.
    """

    options: object
    model: keras.Model
    network: keras.Model
    plan: object
    runner: object
    params: dict
    progress: FitProgress = dataclasses.field(default_factory=FitProgress)

    @property
    def budget(self):
        """`(metric, amount)` of a budget target, else `None`."""
        return self.options.budget

    @property
    def strength(self):
        """The float32 strength variable the step and penalty read."""
        return self.runner.strength

    @property
    def unit_weights(self):
        """The float32 unit-weight variable (`g_u sqrt(p_u)`)."""
        return self.runner.unit_weights

    def strength_value(self):
        """The strength in effect now (a Python float)."""
        _step_runner.sync(self.model)
        return float(ops.convert_to_numpy(self.strength.value))

    def values(self):
        """The plan variables as NumPy arrays (on JAX after the train
        loop's state is written back)."""
        _step_runner.sync(self.model)
        return [ops.convert_to_numpy(v.value) for v in self.plan.variables]


@dataclasses.dataclass(frozen=True)
class FitParts:
    """The parts built from one `FitContext`, each owning its own state.

    Attributes:
        metrics: the `LiveMetrics` (live units, the live network's cost).
        coefficients: the guidance `Coefficients`.
        mode: the `ScheduleMode`, or with a budget the `BudgetMode`.
        penalty: the attached `PenaltyMode` of `mode="penalty"`, or `None`.
    """

    metrics: object
    coefficients: object
    mode: object
    penalty: object = None
