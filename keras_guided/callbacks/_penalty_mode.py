"""`mode="penalty"` of `GuidedPruning`: the group penalty in the loss.

The penalty is attached for the duration of `fit` as the `regularizer` of
one model variable (Keras adds variable regularizers to `model.losses`,
which the compiled train step reads): the one loss hook Keras offers after
the model is built that needs neither `add_loss` in `call` nor a custom
train step. The original regularizer is put back (and the compiled
functions rebuilt) in `on_train_end`.

`attach_penalty` returns a `PenaltyMode` that owns the borrowed variable
and its original regularizer until `detach`; it reads the plan, the
strength and unit-weight variables of the `fit`'s `FitContext`. JAX
freezes variables outside the model state into the compiled step, so a
new strength or new coefficients rebuild it there (`refresh`).
"""

import keras
import numpy as np
from keras import ops

from keras_guided import proximal


class GroupPenalty:
    """Variable regularizer carrying the whole-model group penalty.

    Attached to one model variable (`anchor`) during `fit`; reads the other
    variables through `ops.convert_to_tensor`, which returns the traced
    value inside the compiled (stateless on JAX) train step, so gradients
    reach every penalized variable.
    """

    def __init__(self, plan, unit_weights, strength, anchor_index, previous):
        self.plan = plan
        self.unit_weights = unit_weights
        self.strength = strength
        self.anchor_index = anchor_index
        self.previous = previous

    def __call__(self, x):
        plan = self.plan
        values = []
        for i, variable in enumerate(plan.variables):
            if i == self.anchor_index:
                values.append(x)
            else:
                values.append(ops.convert_to_tensor(variable))
        norms = proximal.group_norms(values, plan.entries, plan.num_segments)
        weights = ops.convert_to_tensor(self.unit_weights)
        strength = ops.convert_to_tensor(self.strength)
        penalty = strength * ops.sum(weights * norms)
        penalty = ops.cast(penalty, x.dtype)
        if self.previous is not None:
            penalty = penalty + self.previous(x)
        return penalty


class PenaltyMode:
    """The group penalty borrowed as one variable's regularizer for one
    `fit`; `detach` puts the original regularizer back."""

    def __init__(self, model, variable, previous):
        self.model = model
        self.variable = variable
        self.previous = previous
        self.attached = True

    def refresh(self):
        """After a new strength or new coefficients: on JAX, which freezes
        variables outside the model state into the compiled step, rebuild
        it so that they are read."""
        if keras.backend.backend() == "jax":
            self.model.make_train_function(force=True)

    def detach(self):
        """Puts the original regularizer back (once: a second call does
        nothing)."""
        if not self.attached:
            return
        self.attached = False
        self.variable.regularizer = self.previous
        rebuild_functions(self.model)


def attach_penalty(context):
    """The `PenaltyMode` attached for the `fit` of a `FitContext` in
    `mode="penalty"`: it borrows the `regularizer` of one trainable plan
    variable (one without a regularizer where there is one) for the group
    penalty, which reads the context's `unit_weights` and `strength`.

    Returns:
        The attached `PenaltyMode`, or `None` in proximal mode or when no
        plan variable is trainable.

    Raises:
        ValueError: penalty mode through `keras.distillation.Distiller`.
    """
    model, plan = context.model, context.plan
    if context.options.mode != "penalty":
        return None
    if isinstance(model, keras.distillation.Distiller):
        raise ValueError(
            "GuidedPruning(mode='penalty') cannot act through "
            "keras.distillation.Distiller: its loss leaves out the "
            "student's regularization losses, where the penalty lives, "
            "so the units would never shrink. Use mode='proximal' (the "
            "default), or train with keras_guided.Distiller, whose loss "
            "includes them."
        )
    if not plan.variables:
        return None
    unit_weights, strength = context.unit_weights, context.strength
    trainable = {id(v) for v in model.trainable_weights}
    candidates = [i for i, v in enumerate(plan.variables) if id(v) in trainable]
    if not candidates:
        return None
    free = [i for i in candidates if plan.variables[i].regularizer is None]
    anchor = (free or candidates)[0]
    variable = plan.variables[anchor]
    previous = variable.regularizer
    variable.regularizer = GroupPenalty(
        plan, unit_weights, strength, anchor, previous
    )
    rebuild_functions(model)
    return PenaltyMode(model, variable, previous)


def rebuild_functions(model):
    model.make_train_function(force=True)
    if getattr(model, "test_function", None) is not None:
        model.make_test_function(force=True)


def penalty_value(context):
    """`strength * sum_u g_u sqrt(p_u) ||W_u||` of the `fit` of a
    `FitContext`, from its plan variables read as NumPy arrays (0.0
    without prunable units)."""
    plan = context.plan
    if not plan.num_units:
        return 0.0
    values = context.values()
    unit_weights = context.unit_weights
    strength = context.strength_value()
    norms = proximal.numpy_group_norms(values, plan.entries, plan.num_segments)
    weights = ops.convert_to_numpy(unit_weights.value)
    return float(strength * np.sum(weights * norms))
