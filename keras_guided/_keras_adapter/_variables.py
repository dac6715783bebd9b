"""Variables made without values, then given the storage of others.

A pruned keras-hub model is built again as its own class from a config
(`surgery/_hub_rebuild`). Built the ordinary way, every variable of the new
model gets initial values first (a whole second copy of the pruned weights,
the largest transient of `prune_model` on a language model), and then the
pruned values are copied over them. Keras already knows how to create a
variable without its values: inside a `StatelessScope` a variable with an
initializer only records it (`Variable._initializer`) and waits for
`_deferred_initialize()`. Here the scope does not initialize them at its
end, and each new variable then takes the storage of the variable it
replaces (`Variable._initialize` keeps a backend variable or array as is),
so nothing is allocated and nothing copied.

On the PyTorch backend a layer registers its parameters as the variables
are created, so the variables are made with values as usual and the
values are copied.
"""

import contextlib

import keras


@contextlib.contextmanager
def deferred_variables():
    """A context in which new variables get no values; yields a list that
    holds them once the context ends. Each must then be given its values
    (`adopt_storage`) or its initial ones (`initialize`).

    The variables are removed from Keras' list of variables waiting for
    values, so no later `StatelessScope` initializes them behind our back,
    even when the context ends with an error.
    """
    created = []
    if keras.backend.backend() == "torch":
        yield created
        return
    from keras.src.backend import StatelessScope
    from keras.src.backend.common import global_state

    key = "uninitialized_variables"
    waiting = global_state.get_global_attribute(key, [], set_to_default=True)
    before = {id(v) for v in waiting}
    try:
        with StatelessScope(initialize_variables=False):
            yield created
    finally:
        waiting = global_state.get_global_attribute(key, [])
        created.extend(v for v in waiting if id(v) not in before)
        global_state.set_global_attribute(
            key, [v for v in waiting if id(v) in before]
        )


def has_values(variable):
    """Whether `variable` holds values (it was not made in
    `deferred_variables`, or was given them since)."""
    return getattr(variable, "_value", None) is not None


def adopt_storage(variable, source, forbidden=()):
    """Gives `variable` the values of `source`, a variable of the same shape
    and dtype: its very storage when `variable` has none yet (made in
    `deferred_variables`), unless that storage is one of `forbidden`
    (variables that must never share it, such as a user's model's); a copy
    otherwise."""
    if not has_values(variable):
        storage = source._value
        if source.dtype != variable.dtype or any(
            storage is getattr(v, "_value", None) for v in forbidden
        ):
            value = keras.ops.convert_to_tensor(source)
            storage = keras.ops.copy(keras.ops.cast(value, variable.dtype))
        variable._initializer = None
        variable._initialize(storage)
        return
    variable.assign(keras.ops.convert_to_tensor(source))


def initialize(variable):
    """Gives a variable made in `deferred_variables` its initial values
    (a seed generator's state, say); leaves any other variable alone."""
    if not has_values(variable):
        variable._deferred_initialize()
