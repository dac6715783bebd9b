"""Running the proximal step of `GuidedPruning`: inside the compiled train
step where Keras lets us (TensorFlow and JAX, through the optimizer hook of
`keras_guided._keras_adapter`), else from Python between batches.

The step itself is the pure `keras_guided.proximal.shrink`; these methods
compile it for the callback's plan, read and write the variables and the
callback's state, and put the hook on and off the optimizer for one `fit`.
"""

import keras
from keras import ops

from keras_guided import _keras_adapter as adapter
from keras_guided import proximal


class StepRunner:
    """Step methods mixed into `GuidedPruning`."""

    def _compile_step(self):
        """The pure step for this plan, and its compiled form for the calls
        from Python (landing, and the fallback after each batch)."""
        plan = self._plan
        guarded = self.budget is not None
        layout = proximal.StepLayout(
            entries=self._penalized_entries,
            num_segments=plan.num_segments,
            is_unit=ops.convert_to_tensor(plan.is_unit),
            keep_dead=self.keep_dead,
            group_ids=(ops.convert_to_tensor(plan.group_ids, dtype="int32")
                       if guarded else None),
            num_groups=len(plan.groups),
        )

        def pure(values, state, threshold, unit_weights):
            return proximal.shrink(values, state, threshold, unit_weights,
                                   layout)

        self._pure = pure
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            optimizer = self.model.optimizer

            def step(steps):
                lr = ops.cast(adapter.step_learning_rate(optimizer),
                              "float32")
                self._assign_step(lr * steps)

            # The step has no tensor-dependent Python control flow (its loops
            # run over a fixed list of variables at trace time): skip
            # AutoGraph, which otherwise warns that it cannot transform it.
            return tf.function(step, reduce_retracing=True, autograph=False)
        if backend == "jax":
            import jax

            return jax.jit(pure)
        return pure

    def _assign_step(self, rate):
        """Reads the variables, takes one step with threshold
        `rate * strength` and writes the results back. Traced into the
        train step (or the `tf.function` above); on JAX inside the train
        step's stateless scope, which carries the callback's state."""
        variables = self._plan.variables
        # Only the penalized weights (all trainable) are read and written:
        # inside JAX's optimizer step the others (BatchNormalization moving
        # statistics) are not part of the state.
        penalized = {index for index, _, _, _ in self._penalized_entries}
        threshold = rate * ops.cast(self._strength.value, "float32")
        values, state = self._pure(
            [v.value if i in penalized else None
             for i, v in enumerate(variables)],
            self._state(), threshold, self._unit_weights.value,
        )
        for index in sorted(penalized):
            variables[index].assign(values[index])
        self._set_state(state)

    def _state(self):
        return proximal.ProximalState(
            dead=self._dead.value, allowed=self._allowed.value,
            held=self._held.value, floor=self._floor.value,
        )

    def _set_state(self, state):
        self._dead.assign(state.dead)
        if self.budget is not None:
            self._allowed.assign(state.allowed)
            self._held.assign(state.held)

    def _install_step_hook(self):
        """Puts the step inside the compiled train step for this `fit`."""
        model = self.model
        optimizer = model.optimizer
        penalty = self.mode == "penalty"

        def hook(learning_rate):
            # Penalty mode: the loss carries the penalty; the step only
            # keeps dead units at zero (threshold 0).
            self._assign_step(0.0 if penalty else learning_rate)

        state = [self._strength, self._unit_weights, self._dead,
                 self._allowed, self._floor, self._held]
        removers = [adapter.carry_state(optimizer, state),
                    adapter.after_optimizer_step(optimizer, hook)]

        def unhook():
            for remove in reversed(removers):
                remove()

        self._unhook = unhook
        # The train function is built (not yet traced) before
        # on_train_begin. Keep it for the fits without this callback, and
        # reuse the hooked one while the model keeps that plain function
        # (no retracing per fit; a `compile` makes a new plain function).
        plain = model.train_function
        cached = self._hooked_function
        if cached is not None and cached[0] is plain and plain is not None:
            model.train_function = cached[1]
        else:
            model.make_train_function(force=True)
        self._plain_function = plain

    def _remove_step_hook(self):
        self._sync()
        unhook, self._unhook = self._unhook, None
        unhook()
        # The compiled train step holds the hook: put the plain one back, so
        # a later fit without this callback trains plainly.
        model = self.model
        plain, self._plain_function = self._plain_function, None
        if plain is not None:
            self._hooked_function = (plain, model.train_function)
            model.train_function = plain
        else:
            self._hooked_function = None
            model.make_train_function(force=True)

    def _sync(self):
        """On JAX, writes the train loop's state back into the variables
        (model and callback state), so that Python reads and writes them."""
        model = self.model
        if model is not None and keras.backend.backend() == "jax":
            model.jax_state_sync()

    def _run_step(self, steps):
        """One step from Python (between batches)."""
        backend = keras.backend.backend()
        if backend == "tensorflow":
            self._step(ops.convert_to_tensor(float(steps), dtype="float32"))
            return
        # JAX: put the step's state back into the variables; the next step
        # reads the variables again because the state is marked synced.
        self._sync()
        lr = float(ops.convert_to_numpy(
            adapter.step_learning_rate(self.model.optimizer)
        ))
        threshold = lr * steps * self.strength
        variables = self._plan.variables
        values, state = self._step(
            [v.value for v in variables], self._state(),
            ops.convert_to_tensor(threshold, dtype="float32"),
            self._unit_weights.value,
        )
        for variable, value in zip(variables, values):
            variable.assign(value)
        self._set_state(state)
