"""Distills a tiny keras-hub Llama and trains one with `GuidedPruning`, on
one device, under JAX `DataParallel` and under `ModelParallel` with
keras-hub's layout map over a `(1, 2)` ("batch", "model") mesh.

Run in a fresh process: XLA's host device count must be set before JAX
starts. Prints one JSON line with every run's distillation losses, dead
units (exact zeros) and losses under `GuidedPruning`, and the variables
each run left sharded over both devices, for
tests/distill/test_distill_decoders.py.
"""

import json
import os

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=2"
).strip()

import jax  # noqa: E402
import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import keras_guided  # noqa: E402
from keras_guided import scoring  # noqa: E402
from keras_guided.distill import distill_causal_lm  # noqa: E402


def llama(intermediate_dim, seed):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=64,
        num_layers=1,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=16,
        intermediate_dim=intermediate_dim,
    )
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)


def tokens(rows=16, length=9):
    rng = np.random.default_rng(0)
    mask = np.ones((rows, length), "int32")
    mask[::3, 6:] = 0  # some rows are shorter
    ids = rng.integers(1, 64, (rows, length)).astype("int32") * mask
    return {"token_ids": ids, "padding_mask": mask}


def sharded(model):
    """Paths of the variables split (not copied) over more than one device."""
    return sorted(
        v.path
        for v in model.weights
        if len(v.value.sharding.device_set) > 1
        and not v.value.sharding.is_fully_replicated
    )


def distill():
    student = llama(16, seed=1)
    report = distill_causal_lm(
        student,
        llama(32, seed=0),
        tokens(),
        tokens=250,
        batch_size=8,
        optimizer=keras.optimizers.Adam(1e-2),
        alpha=0.5,
        verbose=0,
    )
    return {"loss": list(report.losses), "sharded": sharded(student)}


def guided_pruning():
    model = llama(32, seed=0)
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    data = tokens()
    x = {k: v[:, :-1] for k, v in data.items()}
    y, weight = data["token_ids"][:, 1:], data["padding_mask"][:, 1:]
    pruning = keras_guided.GuidedPruning(strength=1.5, guidance="linear")
    history = model.fit(
        x,
        y,
        sample_weight=weight.astype("float32"),
        epochs=2,
        batch_size=8,
        shuffle=False,
        verbose=0,
        callbacks=[pruning],
    )
    groups = keras_guided.find_unit_groups(model, on_unsupported="keep")
    dead = scoring.dead_units(groups, tolerance=0.0)
    return {
        "loss": history.history["loss"],
        "dead": [np.flatnonzero(d).tolist() for d in dead],
        "sharded": sharded(model),
    }


def distributions():
    mesh = keras.distribution.DeviceMesh(
        (1, 2), ["batch", "model"], devices=jax.devices()
    )
    layout_map = keras_hub.models.LlamaBackbone.get_layout_map(mesh)
    return {
        "single": None,
        "data_parallel": keras.distribution.DataParallel(devices=jax.devices()),
        "model_parallel": keras.distribution.ModelParallel(
            layout_map=layout_map, batch_dim_name="batch"
        ),
    }


def main():
    result = {"devices": len(jax.devices())}
    for name, run in (("distill", distill), ("pruning", guided_pruning)):
        result[name] = {}
        for setting, distribution in distributions().items():
            keras.distribution.set_distribution(distribution)
            result[name][setting] = run()
        keras.distribution.set_distribution(None)
        # The model-parallel run must really split the FFN kernels, or the
        # comparison with one device would prove nothing.
        split = result[name]["model_parallel"]["sharded"]
        if not any("feedforward_intermediate_dense/kernel" in p for p in split):
            raise AssertionError(f"no FFN kernel sharded: {split}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
