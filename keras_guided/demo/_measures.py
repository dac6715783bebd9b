"""What the demo measures on a model: test accuracy in Keras and in a
`.tflite` file, prunable units, and the removal of the dead units with
its difference on real images."""

import numpy as np


def accuracy(model, x, y):
    """Test accuracy of `model` in Keras on images `x`, labels `y`."""
    from keras_guided import export

    probabilities = export.keras_outputs(model, x)
    return float(np.mean(np.argmax(probabilities, axis=-1) == y))


def prunable_units(model):
    """How many units of `model` are in prunable unit groups."""
    from keras_guided import graph

    groups = graph.find_unit_groups(model)
    return int(sum(g.num_units for g in groups if g.prunable))


def tflite_accuracy(path, x, y):
    """Test accuracy of the `.tflite` file at `path` in LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_guided import export

    with open(path, "rb") as f:
        interpreter = Interpreter(model_content=f.read())
    interpreter.allocate_tensors()
    probabilities = export.run_litert(interpreter, x)
    return float(np.mean(np.argmax(probabilities, axis=-1) == y))


def prune(model, sample_inputs):
    """Removes the dead units; returns (pruned model, max |difference|).

    The difference is measured here on real test images (pruned vs trained
    model), on top of `prune_model`'s own check on random inputs.
    """
    from keras_guided import export
    from keras_guided.surgery import prune_model

    pruned = prune_model(model, sample_inputs=sample_inputs)
    expected = export.keras_outputs(model, sample_inputs)
    actual = export.keras_outputs(pruned, sample_inputs)
    return pruned, float(np.max(np.abs(expected - actual)))
