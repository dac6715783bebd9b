"""`mode="penalty"` of `GuidedPruning`: the group penalty in the loss.

The penalty is attached for the duration of `fit` as the `regularizer` of
one model variable (Keras adds variable regularizers to `model.losses`,
which the compiled train step reads): the one loss hook Keras offers after
the model is built that needs neither `add_loss` in `call` nor a custom
train step. The original regularizer is put back (and the compiled
functions rebuilt) in `on_train_end`.
"""

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

    def __init__(self, callback, anchor_index, previous):
        self.callback = callback
        self.anchor_index = anchor_index
        self.previous = previous

    def __call__(self, x):
        plan = self.callback._plan
        values = []
        for i, variable in enumerate(plan.variables):
            if i == self.anchor_index:
                values.append(x)
            else:
                values.append(ops.convert_to_tensor(variable))
        norms = proximal.group_norms(values, plan.entries, plan.num_segments)
        weights = ops.convert_to_tensor(self.callback._unit_weights)
        strength = ops.convert_to_tensor(self.callback._strength)
        penalty = strength * ops.sum(weights * norms)
        penalty = ops.cast(penalty, x.dtype)
        if self.previous is not None:
            penalty = penalty + self.previous(x)
        return penalty


class PenaltyMode:
    """Penalty methods mixed into `GuidedPruning`."""


    def _attach_penalty(self):
        plan = self._plan
        trainable = {id(v) for v in self.model.trainable_weights}
        candidates = [
            i for i, v in enumerate(plan.variables) if id(v) in trainable
        ]
        if not candidates:
            return
        free = [i for i in candidates if plan.variables[i].regularizer is None]
        anchor = (free or candidates)[0]
        variable = plan.variables[anchor]
        previous = variable.regularizer
        self._penalty = (variable, previous)
        variable.regularizer = GroupPenalty(self, anchor, previous)
        self._rebuild_functions()

    def _detach_penalty(self):
        variable, previous = self._penalty
        variable.regularizer = previous
        self._penalty = None
        self._rebuild_functions()

    def _rebuild_functions(self):
        model = self.model
        model.make_train_function(force=True)
        if getattr(model, "test_function", None) is not None:
            model.make_test_function(force=True)

    def penalty(self):
        """The current group penalty `strength * sum_u g_u sqrt(p_u) ||W_u||`.

        Returns:
            A Python float (0.0 before the first `fit`).
        """
        plan = self._plan
        if plan is None or not plan.num_units:
            return 0.0
        norms = proximal.numpy_group_norms(self._values(), plan.entries, plan.num_segments)
        weights = ops.convert_to_numpy(self._unit_weights.value)
        return float(self.strength * np.sum(weights * norms))
