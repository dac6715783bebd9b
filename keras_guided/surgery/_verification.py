"""Verification: the pruned model against the masked original (step 5 of
`prune_model`), and the sample inputs and shapes it runs on."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_guided import _keras_adapter as adapter
from keras_guided import graph as graph_lib


def _probe_shapes(model, sample_inputs):
    """Concrete shapes of every tensor: from `sample_inputs`, or defaults."""
    functional = graph_lib.functional_graph(model)
    if all(None not in tuple(t.shape)[1:] for t in functional.inputs):
        return {}  # fixed sizes: the symbolic shapes are the real ones
    if sample_inputs is not None:
        shapes = [tuple(np.shape(x)) for x in keras.tree.flatten(sample_inputs)]
    else:
        shapes = [graph_lib.probe_shape(t.shape) for t in functional.inputs]
    if len(shapes) != len(functional.inputs):
        return {}
    shapes = [(1,) + tuple(shape[1:]) for shape in shapes]
    return graph_lib.concrete_shapes(model, shapes)


def _unknown_size(error, model, sample_inputs):
    """`prune_model`'s advice for a FLOPs count that met an unknown size
    (`rules.UnknownSizeError`): pass sample inputs, or, where they were
    passed, what stopped their shapes before the layer."""
    if sample_inputs is None:
        return error
    shapes = [tuple(np.shape(x)) for x in keras.tree.flatten(sample_inputs)]
    blocked = []
    graph_lib.concrete_shapes(
        model, [(1,) + tuple(shape[1:]) for shape in shapes], blocked
    )
    before = graph_lib.describe(blocked[0]) if blocked else "a layer before it"
    return error.with_advice(
        f"The `sample_inputs` passed (shapes {shapes}) give the model's "
        f"inputs their lengths, but {before} gives no output shape for "
        "them symbolically, so the lengths do not reach this layer. Use a "
        "'units' or 'params' target, which need no FLOPs, or build the "
        "model with fixed input lengths."
    )


def _sample_inputs(model, sample_inputs):
    if sample_inputs is not None:
        return sample_inputs
    rng = np.random.default_rng(0)
    functional = graph_lib.functional_graph(model)
    values = []
    for tensor in functional.inputs:
        shape = graph_lib.probe_shape(tensor.shape, batch=4)
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if "int" in dtype:
            values.append(rng.integers(0, 2, size=shape).astype(dtype))
        else:
            values.append(rng.normal(size=shape).astype(dtype))
    return adapter.pack_inputs(functional, values)


def _predict(model, inputs):
    outputs = model(inputs, training=False)
    return [
        ops.convert_to_numpy(o).astype(np.float64)
        for o in keras.tree.flatten(outputs)
    ]


def _note_random_outputs(model, stable, report):
    """Says which outputs vary between two calls, and what was compared."""
    functional = graph_lib.functional_graph(model)
    for tensor, mask in zip(functional.outputs, stable):
        if mask.all():
            continue
        producer = adapter.producer(tensor)
        report.notes.append(
            f"the output of {graph_lib.describe(producer)} changes from "
            f"call to call at inference (a layer that is random at "
            f"inference, such as sampling, feeds it): {int(mask.sum())} of "
            f"{mask.size} values repeat and were compared"
            + ("" if mask.any() else "; nothing could be compared")
        )


def _verify(
    model, pruned, masked_reference, report, sample_inputs, folding_notes=()
):
    """Fills `report`'s differences: `pruned` against the original and
    against `masked_reference()`, the original with the removed units'
    incoming weights set to zero (`None` when they are zero already)."""
    inputs = _sample_inputs(model, sample_inputs)
    try:
        original = _predict(model, inputs)
    except Exception as error:  # noqa: BLE001 (re-raised with advice)
        shapes = [tuple(np.shape(x)) for x in keras.tree.flatten(inputs)]
        raise ValueError(
            f"Verification could not run model '{model.name}' on sample "
            f"inputs of shapes {shapes}: {error}. Pass `sample_inputs=` "
            "with data the model accepts, or `verify=False`."
        ) from error
    # A layer random at inference (a VAE's sampling) changes some outputs
    # from call to call: compare only the values that repeat exactly.
    again = _predict(model, inputs)
    stable = [
        np.isclose(a, b, rtol=0, atol=0, equal_nan=True)
        for a, b in zip(original, again)
    ]
    masked = masked_reference()
    if masked is not None:
        reference = _predict(masked, inputs)
    else:
        reference = original  # the removed inputs are exactly zero already
    result = _predict(pruned, inputs)
    _note_random_outputs(model, stable, report)

    def largest(values):
        return float(
            max(
                (np.max(v[m], initial=0.0) for v, m in zip(values, stable)),
                default=0.0,
            )
        )

    compared = sum(int(m.sum()) for m in stable)
    if compared == 0:
        report.max_abs_diff = report.max_abs_diff_original = None
        report.output_scale = None
        return
    report.max_abs_diff = largest(
        [np.abs(a - b) for a, b in zip(result, reference)]
    )
    report.max_abs_diff_original = largest(
        [np.abs(a - b) for a, b in zip(result, original)]
    )
    report.output_scale = largest([np.abs(a) for a in reference])
    if report.max_abs_diff > 1e-4 * max(1.0, report.output_scale):
        difference = (
            f"The pruned model differs from the original with the removed "
            f"units masked by up to {report.max_abs_diff:.3g} (output scale "
            f"{report.output_scale:.3g})"
        )
        if folding_notes:
            because = (
                ", where the constants of removed units are folded "
                "approximately: " + "; ".join(folding_notes) + "."
            )
        else:
            because = (
                ". No constant of a removed unit was folded approximately, "
                "so the layers rebuilt with fewer units compute this "
                "differently: check `pruned(x)` against `model(x)` on your "
                "data before using the pruned model."
            )
        warnings.warn(difference + because, stacklevel=3)
