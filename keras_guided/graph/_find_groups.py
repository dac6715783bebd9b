"""`find_unit_groups` and `analyze`: a model's unit groups, and the whole
analysis they come from."""

from keras_guided.graph._analysis import GraphAnalysis


def analyze(model, on_unsupported="raise"):
    """Runs the graph analysis and returns a `GraphAnalysis`.

    Args:
        model: a built Sequential or Functional `keras.Model`.
        on_unsupported: `"raise"` (default) or `"keep"`, as in
            `find_unit_groups`.

    Returns:
        A `GraphAnalysis`; its `groups` are what `find_unit_groups` returns.

    Examples:
        >>> import keras, keras_guided
        >>> inputs = keras.Input((3,))
        >>> hidden = keras.layers.Dense(4)(inputs)
        >>> model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
        >>> analysis = keras_guided.graph.analyze(model)
        >>> units = analysis.channel_units(hidden)  # global unit ids
        >>> [analysis.unit_location[int(u)] for u in units]
        [(0, 0), (0, 1), (0, 2), (0, 3)]
    """
    return GraphAnalysis(model, on_unsupported=on_unsupported)


def find_unit_groups(model, on_unsupported="raise"):
    """Computes the unit groups of a built Sequential or Functional model.

    Args:
        model: a built `keras.Sequential` or Functional `keras.Model`
            (nested models used as layers are followed).
        on_unsupported: `"raise"` (default) raises a `ValueError` naming the
            first unsupported layer whose channels could otherwise be
            pruned; `"keep"` marks the groups touching unsupported layers
            unprunable and gives the reason.

    Returns:
        A list of `UnitGroup`, in graph order. Model inputs are not groups;
        groups reaching a model output are `prunable=False` with a reason.

    Raises:
        ValueError: for a subclassed or unbuilt model, a channels-first
            layer, or (with `on_unsupported="raise"`) an unsupported layer.

    Examples:
        >>> import keras, keras_guided
        >>> inputs = keras.Input((8,))
        >>> hidden = keras.layers.Dense(4, name="hidden")(inputs)
        >>> outputs = keras.layers.Dense(2, name="out")(hidden)
        >>> model = keras.Model(inputs, outputs)
        >>> groups = keras_guided.find_unit_groups(model)
        >>> [(g.layers, g.num_units, g.prunable) for g in groups]
        [(['hidden'], 4, True), (['out'], 2, False)]
        >>> [(s.weight, s.role) for s in groups[0].slices]
        [('kernel', 'producer'), ('bias', 'producer'), ('kernel', 'consumer')]
    """
    return analyze(model, on_unsupported=on_unsupported).groups
