"""The step hook: our step after the optimizer's update, inside the
compiled train step; the state carried along as optimizer variables; the
rate of the step that just ran (see `keras_guided._keras_adapter`)."""

import keras


def supports_step_hook(optimizer):
    """Whether `after_optimizer_step` can hook `optimizer` on this backend.

    Wrapper optimizers (`LossScaleOptimizer`) keep their inner optimizer's
    variables apart, so the JAX state cannot ride along: the callback then
    takes its step from Python after each batch instead.
    """
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        return False
    if hasattr(optimizer, "inner_optimizer"):
        return backend == "tensorflow"
    return isinstance(optimizer, keras.optimizers.Optimizer)


def after_optimizer_step(optimizer, hook):
    """Runs `hook(learning_rate)` after every `optimizer.apply`, inside the
    compiled train step. `learning_rate` is the rate of that step.

    Returns:
        A function that removes the hook.
    """
    original = optimizer.__dict__.get("apply")
    previous = optimizer.apply

    def apply(grads, trainable_variables=None):
        # Read before the update: a schedule is evaluated at the step's own
        # iteration (after it, `iterations` has advanced).
        learning_rate = keras.ops.cast(optimizer.learning_rate, "float32")
        result = previous(grads, trainable_variables)
        _in_cross_replica_context(hook, learning_rate)
        return result

    optimizer.apply = apply

    def remove():
        if original is None:
            optimizer.__dict__.pop("apply", None)
        else:
            optimizer.apply = original

    return remove


def _in_cross_replica_context(hook, learning_rate):
    """Calls `hook` once per step: under a `tf.distribute` strategy the
    optimizer runs per replica, so the hook runs once, in cross-replica
    context, where assigning a mirrored variable updates every replica."""
    if keras.backend.backend() != "tensorflow":
        hook(learning_rate)
        return
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or not tf.distribute.has_strategy():
        hook(learning_rate)
        return

    def merged(strategy, rate):
        hook(strategy.experimental_local_results(rate)[0])

    context.merge_call(merged, args=(learning_rate,))


def carry_state(optimizer, variables):
    """On JAX, threads `variables` through the compiled train step as extra
    optimizer variables, left out of what the optimizer saves and loads.

    Call before the train function is (re)built. No-op on other backends.

    Returns:
        A function that takes them out again.
    """
    if keras.backend.backend() != "jax" or not variables:
        return lambda: None
    extra = list(variables)
    tracked = optimizer._variables
    tracked.extend(extra)
    save = optimizer.__dict__.get("save_own_variables")
    load = optimizer.__dict__.get("load_own_variables")

    def without_extra(method):
        def call(store):
            kept = [v for v in tracked if not any(v is e for e in extra)]
            full = list(tracked)
            tracked[:] = kept
            try:
                return getattr(type(optimizer), method)(optimizer, store)
            finally:
                tracked[:] = full

        return call

    optimizer.save_own_variables = without_extra("save_own_variables")
    optimizer.load_own_variables = without_extra("load_own_variables")

    def remove():
        tracked[:] = [v for v in tracked if not any(v is e for e in extra)]
        for name, previous in (
            ("save_own_variables", save),
            ("load_own_variables", load),
        ):
            if previous is None:
                optimizer.__dict__.pop(name, None)
            else:
                setattr(optimizer, name, previous)

    return remove


def step_learning_rate(optimizer):
    """Learning rate of the optimizer step that just ran (outside the step).

    After the update `optimizer.iterations` has advanced, so a
    `LearningRateSchedule` is evaluated at `iterations - 1`.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    schedule = getattr(inner, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return schedule(keras.ops.maximum(inner.iterations - 1, 0))
    return optimizer.learning_rate
