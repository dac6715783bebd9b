"""Teach keras_guided your own layers with `keras_guided.register_rule`.

`keras_guided.prune_model` knows the standard Keras layers. A layer class of
your own is refused (with an error naming it) until you tell keras_guided
two things about it:

* how the graph sees it: `kind="elementwise"` (channel `c` in gives channel
  `c` out, like BatchNormalization) or `kind="producer"` (it makes new
  output units, like Dense), and which of its weights are indexed by output
  units (`output_weights`) or, for a producer, by input channels
  (`input_weights`);
* how to rewrite it for the kept units: a rule
  `rule(layer, weights, kept_inputs, kept_outputs) -> (config, weights)`.

This example defines two layers and a rule for each:

* `LayerScale`: a learnable per-channel scale (as in CaiT, Touvron et al.
  2021), elementwise;
* `LowRankDense`: a Dense layer with a factored kernel `U @ V` (rank `r`),
  a producer: its units are the columns of `V` and the bias; its input
  channels are the rows of `U`.

It then trains a small model that uses both on scikit-learn digits under
`keras_guided.GuidedPruning` (which penalizes the registered weights with
the rest of each unit group), prunes it, checks that the pruned model
computes what the trained one computes, and saves and reloads it.

    python examples/custom_layer_rule.py --quick

Artifacts in `--out` (default `./out_custom_layer_rule`): `pruned.keras`.
"""

import argparse
import os
import time

# Keep TensorFlow's C++ start-up logs out of the example's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_guided  # noqa: E402

SETTINGS = {
    "full": {"epochs": 20, "strength": 0.3},
    "quick": {"epochs": 6, "strength": 0.6},
}


# ---------------------------------------------------------------------------
# 1. Two user layers. `register_keras_serializable` lets a saved model that
# uses them load with `keras.saving.load_model` (in any script that imports
# them).
# ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="examples")
class LayerScale(keras.layers.Layer):
    """`y = x * gamma`, one learnable `gamma` per channel (last axis)."""

    def __init__(self, init_value=1.0, **kwargs):
        super().__init__(**kwargs)
        self.init_value = init_value

    def build(self, input_shape):
        self.gamma = self.add_weight(
            shape=(input_shape[-1],),
            name="gamma",
            initializer=keras.initializers.Constant(self.init_value),
        )

    def call(self, x):
        return x * self.gamma

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}


@keras.saving.register_keras_serializable(package="examples")
class LowRankDense(keras.layers.Layer):
    """`y = activation(x @ U @ V + bias)`, kernel factored to rank `rank`."""

    def __init__(self, units, rank, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.rank = rank
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.u_kernel = self.add_weight(
            shape=(input_shape[-1], self.rank),
            name="u_kernel",
            initializer="glorot_uniform",
        )
        self.v_kernel = self.add_weight(
            shape=(self.rank, self.units),
            name="v_kernel",
            initializer="glorot_uniform",
        )
        self.bias = self.add_weight(
            shape=(self.units,), name="bias", initializer="zeros"
        )

    def call(self, x):
        y = keras.ops.matmul(keras.ops.matmul(x, self.u_kernel), self.v_kernel)
        return self.activation(y + self.bias)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "rank": self.rank,
            "activation": keras.activations.serialize(self.activation),
        }


# ---------------------------------------------------------------------------
# 2. The rewrite rules. `weights` maps each variable name to a numpy array
# (with the constants of removed input channels already folded into
# "bias"); `kept_inputs[0]` / `kept_outputs` are the sorted indices of the
# channels that stay. Return the new layer's config and its weights, in the
# order of `layer.weights`. Never modify `layer` itself.
# ---------------------------------------------------------------------------


def layer_scale_rule(layer, weights, kept_inputs, kept_outputs):
    # Elementwise: the config does not depend on the channel count.
    return layer.get_config(), [weights["gamma"][kept_outputs]]


def low_rank_dense_rule(layer, weights, kept_inputs, kept_outputs):
    config = layer.get_config()
    config["units"] = len(kept_outputs)
    u_kernel = weights["u_kernel"][kept_inputs[0], :]  # rows: input channels
    v_kernel = weights["v_kernel"][:, kept_outputs]  # columns: output units
    return config, [u_kernel, v_kernel, weights["bias"][kept_outputs]]


def register_rules():
    keras_guided.register_rule(
        LayerScale,
        layer_scale_rule,
        kind="elementwise",
        output_weights=[("gamma", 0)],
    )
    keras_guided.register_rule(
        LowRankDense,
        low_rank_dense_rule,
        kind="producer",
        # (weight name, axis) indexed by the layer's own output units:
        output_weights=[("v_kernel", 1), ("bias", 0)],
        # (weight name, axis, block) indexed by its input channels:
        input_weights=[("u_kernel", 0, 1)],
    )


# ---------------------------------------------------------------------------
# 3. A model that uses them.
# ---------------------------------------------------------------------------


def build_model():
    inputs = keras.Input((64,), name="pixels")
    x = keras.layers.Dense(128, activation="relu", name="hidden")(inputs)
    x = LayerScale(name="scale")(x)
    x = LowRankDense(64, rank=16, activation="relu", name="low_rank")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="custom_layers")


def load_data(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        x,
        digits.target,
        test_size=0.2,
        random_state=seed,
        stratify=digits.target,
    )
    return x_train, y_train, x_test, y_test


def predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Register keras_guided rewrite rules for user-defined "
        "layers, train, prune, verify, save and reload."
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few epochs only (CI smoke test)"
    )
    parser.add_argument(
        "--out",
        default="out_custom_layer_rule",
        help="directory for artifacts (default: ./out_custom_layer_rule)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    settings = SETTINGS["quick" if args.quick else "full"]
    start = time.perf_counter()

    def progress(message):
        print(f"[{time.perf_counter() - start:6.1f}s] {message}", flush=True)

    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    x_train, y_train, x_test, y_test = load_data(args.seed)
    model = build_model()

    # Without rules, keras_guided refuses the model and says what to do.
    for layer_class in (LayerScale, LowRankDense):
        keras_guided.rules.unregister_rule(layer_class)
    try:
        keras_guided.prune_model(model)
    except ValueError as error:
        print(f"before register_rule: ValueError: {error}")
    register_rules()
    groups = keras_guided.find_unit_groups(model)
    for index, group in enumerate(groups):
        state = "prunable" if group.prunable else "protected"
        print(
            f"unit group {index}: {group.num_units} units over layers "
            f"{group.layers} ({state})"
        )

    # Train under GuidedPruning. The group of 'hidden' holds its kernel
    # columns and bias, the LayerScale gamma, and the rows of
    # LowRankDense's u_kernel: all are shrunk together.
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    epochs = settings["epochs"]

    def schedule(epoch):  # no penalty in the last epoch: survivors settle
        return 0.0 if epoch == epochs - 1 else settings["strength"]

    pruning = keras_guided.GuidedPruning(
        strength=settings["strength"],
        guidance="linear",
        mode="proximal",
        schedule=schedule,
    )

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            progress(
                f"epoch {epoch + 1}/{epochs}: accuracy "
                f"{logs['accuracy']:.3f}, live units hidden "
                f"{int(logs['live_units/hidden'])}/128, low_rank "
                f"{int(logs['live_units/low_rank'])}/64"
            )

    model.fit(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=64,
        verbose=0,
        callbacks=[pruning, Progress()],
    )

    # Prune: the rules rebuild LayerScale and LowRankDense for the kept
    # channels. The pruned model must compute what the trained one does.
    pruned, report = keras_guided.prune_model(
        model, sample_inputs=x_test[:128], return_report=True
    )
    print(report.summary())
    expected, actual = predict(model, x_test), predict(pruned, x_test)
    difference = float(np.max(np.abs(actual - expected)))
    print(
        f"max |pruned - trained| on {len(x_test)} test images: {difference:.3g}"
    )
    print(
        f"pruned layers: scale gamma {pruned.get_layer('scale').gamma.shape}"
        f", low_rank u_kernel "
        f"{pruned.get_layer('low_rank').u_kernel.shape}, v_kernel "
        f"{pruned.get_layer('low_rank').v_kernel.shape}"
    )
    if difference > 1e-4:
        raise SystemExit("the pruned model does not match the trained one")

    # Save and reload: the user classes are registered serializables.
    path = os.path.join(args.out, "pruned.keras")
    pruned.save(path)
    reloaded = keras.saving.load_model(path)
    reload_difference = float(
        np.max(np.abs(predict(reloaded, x_test) - actual))
    )
    accuracy = float(np.mean(np.argmax(actual, -1) == y_test))
    print(f"reloaded {path}: max |reloaded - pruned| = {reload_difference:.3g}")
    print(
        f"params {model.count_params():,} -> {pruned.count_params():,}, "
        f"test accuracy {accuracy:.2%}"
    )
    progress("done")


if __name__ == "__main__":
    main()
