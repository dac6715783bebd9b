"""The bad-input catalogue: every entry point answers bad input with a typed
error that names the argument or layer, what was expected, what was received
and the fix; the user's model is never changed and no file is left behind.

docs/errors.md lists the same cases; regenerate its table with

    python -m tests.test_errors > /tmp/table.md
"""

import os

import keras
import numpy as np
import pytest

import keras_guided
from keras_guided import cli


def small_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(6, name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


def built_subclassed():
    model = Subclassed()
    model(np.ones((1, 3), "float32"))
    return model


def lambda_model():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(5)(inputs)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return self.dense(x)


class ValueBranch(keras.layers.Layer):
    """A composite layer whose call branches on a tensor value."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(4)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (4,)

    def call(self, x):
        if float(keras.ops.convert_to_numpy(keras.ops.sum(x))) > 0:
            return self.dense(x)
        return self.dense(-x)


def untraceable_model():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(5)(inputs)
    x = ValueBranch(name="branch")(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


LegacyFunctional = type(
    "Functional", (), {"__module__": "tf_keras.src.engine.functional"}
)


def fit_with(model, callback):
    model.compile(optimizer="adam", loss="mse")
    x = np.zeros((4,) + tuple(model.input_shape[1:]), "float32")
    y = np.zeros((4,) + tuple(model.output_shape[1:]), "float32")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])


def token_model():
    """Token ids and a padding mask in a dict, with a None length."""
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    mask = keras.Input((None,), dtype="int32", name="padding_mask")
    x = keras.layers.Embedding(20, 4)(ids)
    x = x * keras.ops.expand_dims(keras.ops.cast(mask, "float32"), -1)
    return keras.Model(
        {"token_ids": ids, "padding_mask": mask}, keras.layers.Dense(2)(x)
    )


def run_cli(argv, capsys):
    code = cli.main(argv)
    message = capsys.readouterr().err.strip()
    if code != 0:
        raise SystemExit(f"exit {code}: {message}")


# id, what is wrong, call(model, tmp, capsys), exception, message pattern.
# `model` is a fresh small_model() the call may use; the test checks it is
# unchanged afterwards and that `tmp` holds no new file.
CATALOGUE = [
    # GuidedRegularizer
    (
        "reg-negative-strength",
        "GuidedRegularizer strength < 0",
        lambda m, t, c: keras_guided.GuidedRegularizer(strength=-1.0),
        ValueError,
        r"`strength` must be a non-negative finite float\. "
        r"Received: strength=-1\.0",
    ),
    (
        "reg-nan-strength",
        "GuidedRegularizer strength NaN",
        lambda m, t, c: keras_guided.GuidedRegularizer(strength=float("nan")),
        ValueError,
        r"Received: strength=nan",
    ),
    (
        "reg-string-strength",
        "GuidedRegularizer strength as text",
        lambda m, t, c: keras_guided.GuidedRegularizer(strength="1e-3"),
        ValueError,
        r"Received: strength='1e-3'",
    ),
    (
        "reg-unknown-norm",
        "unknown norm",
        lambda m, t, c: keras_guided.GuidedRegularizer(norm="l3"),
        ValueError,
        r"`norm` must be one of \['l1', 'l2', 'group'\]\. "
        r"Received: norm='l3'",
    ),
    (
        "reg-unknown-guidance",
        "unknown guidance name",
        lambda m, t, c: keras_guided.GuidedRegularizer(guidance="cubic"),
        ValueError,
        r"Unknown guidance 'cubic'\. Expected one of",
    ),
    (
        "reg-negative-guidance",
        "negative coefficient",
        lambda m, t, c: keras_guided.GuidedRegularizer(guidance=[1.0, -1.0]),
        ValueError,
        r"must be non-negative\. Received negative values at "
        r"units \[1\]",
    ),
    (
        "reg-nan-guidance",
        "NaN coefficient",
        lambda m, t, c: keras_guided.GuidedRegularizer(
            guidance=[1.0, float("nan")]
        ),
        ValueError,
        r"must be finite\. Received NaN or inf at units \[1\]",
    ),
    (
        "reg-zero-guidance",
        "all-zero coefficients",
        lambda m, t, c: keras_guided.GuidedRegularizer(guidance=[0.0, 0.0]),
        ValueError,
        r"must not be all zero .*use strength=0\.0 instead",
    ),
    (
        "reg-guidance-length",
        "coefficients for 3 units on a 4-unit kernel",
        lambda m, t, c: keras_guided.GuidedRegularizer(guidance=[1, 2, 3])(
            np.ones((2, 4), "float32")
        ),
        ValueError,
        r"`guidance` has 3 coefficients but the weight has 4 "
        r"units\. Pass one coefficient per unit \(4 values\)",
    ),
    (
        "reg-axis-range",
        "unit axis the weight does not have",
        lambda m, t, c: keras_guided.GuidedRegularizer(axis=3)(
            np.ones((2, 2), "float32")
        ),
        ValueError,
        r"GuidedRegularizer\(axis=3\) cannot be applied to a "
        r"weight of shape \(2, 2\)",
    ),
    (
        "reg-axis-gap",
        "non-contiguous unit axes",
        lambda m, t, c: keras_guided.GuidedRegularizer(axis=(0, 2))(
            np.ones((2, 2, 2), "float32")
        ),
        ValueError,
        r"must name contiguous axes",
    ),
    # GuidedPruning
    (
        "cb-negative-strength",
        "GuidedPruning strength < 0",
        lambda m, t, c: keras_guided.GuidedPruning(strength=-1),
        ValueError,
        r"`strength` must be a non-negative finite float\. "
        r"Received: strength=-1",
    ),
    (
        "cb-mode",
        "unknown mode",
        lambda m, t, c: keras_guided.GuidedPruning(mode="prox"),
        ValueError,
        r"`mode` must be one of \['proximal', 'penalty'\]\. "
        r"Received: mode='prox'",
    ),
    (
        "cb-schedule",
        "unknown schedule",
        lambda m, t, c: keras_guided.GuidedPruning(schedule="cosine"),
        ValueError,
        r"`schedule` must be one of .* Received: "
        r"schedule='cosine'",
    ),
    (
        "cb-target",
        "target 1.5",
        lambda m, t, c: keras_guided.GuidedPruning(target=1.5),
        ValueError,
        r"`target` must be .* Received: target=1\.5",
    ),
    (
        "cb-target-metric",
        "unknown target metric",
        lambda m, t, c: keras_guided.GuidedPruning(
            target=0.5, target_metric="bytes"
        ),
        ValueError,
        r"`target_metric` must be one of \['units', 'params', "
        r"'flops', 'latency'\]\. Received: target_metric='bytes'",
    ),
    (
        "cb-adapt-every",
        "adapt_every=0",
        lambda m, t, c: keras_guided.GuidedPruning(adapt_every=0),
        ValueError,
        r"`adapt_every` must be a positive int\. "
        r"Received: adapt_every=0",
    ),
    (
        "cb-cost",
        "unknown cost",
        lambda m, t, c: keras_guided.GuidedPruning(cost="energy"),
        ValueError,
        r"`cost` must be one of \['params', 'flops', "
        r"'latency'\]\. Received: cost='energy'",
    ),
    (
        "cb-guidance-layer",
        "guidance dict naming a layer with no units",
        lambda m, t, c: fit_with(
            m, keras_guided.GuidedPruning(guidance={"nope": "linear"})
        ),
        ValueError,
        r"`guidance` names layers \['nope'\] that produce no "
        r"prunable unit group\. Layers that do: \['conv', "
        r"'hidden'\]",
    ),
    (
        "cb-lambda",
        "callback on a model with a Lambda layer",
        lambda m, t, c: fit_with(lambda_model(), keras_guided.GuidedPruning()),
        ValueError,
        r"Cannot prune through layer 'double' \(Lambda\).*"
        r"register_rule.*on_unsupported='keep'",
    ),
    (
        "cb-on-unreachable",
        "unknown on_unreachable",
        lambda m, t, c: keras_guided.GuidedPruning(on_unreachable="ignore"),
        ValueError,
        r"`on_unreachable` must be one of \['raise', 'warn'\]\. "
        r"Received: on_unreachable='ignore'",
    ),
    (
        "cb-protected",
        "protected that is not layer names",
        lambda m, t, c: keras_guided.GuidedPruning(protected=3),
        ValueError,
        r"`protected` must be a layer name or a list of layer names, e\.g\. "
        r"protected=\['self_attention'\]\. Received: protected=3",
    ),
    (
        "cb-uniform-units",
        "uniform_blocks with a units target",
        lambda m, t, c: keras_guided.GuidedPruning(
            uniform_blocks=True, target={"units": 8}
        ),
        ValueError,
        r"`uniform_blocks=True` trains the blocks' units together.*Use a "
        r"'params' or 'flops' target",
    ),
    (
        "cb-budget-unreachable",
        "budget below one unit per layer",
        lambda m, t, c: fit_with(
            m, keras_guided.GuidedPruning(target={"units": 1})
        ),
        ValueError,
        r"Cannot keep only 10% of the units: removing every "
        r"prunable unit allowed by min_units=1 keeps 20\.0%\. "
        r"Training prunes only the trainable groups whose dead "
        r"units prune_model removes exactly; the others keep all "
        r"their units \(prunable groups: 2 trainable\)\. Raise "
        r"the target, make more groups prunable, or pass "
        r"on_unreachable='warn' to prune as far as they allow\.",
    ),
    # prune_model / find_unit_groups
    (
        "prune-subclassed",
        "subclassed model",
        lambda m, t, c: keras_guided.prune_model(Subclassed()),
        ValueError,
        r"Model 'sub' \(Subclassed\) is a subclassed model.*"
        r"Functional API",
    ),
    (
        "prune-lambda",
        "Lambda layer",
        lambda m, t, c: keras_guided.prune_model(lambda_model()),
        ValueError,
        r"Cannot prune through layer 'double' \(Lambda\)",
    ),
    (
        "prune-untraceable",
        "composite layer whose call cannot be traced",
        lambda m, t, c: keras_guided.prune_model(untraceable_model()),
        ValueError,
        r"Cannot prune through layer 'branch' \(ValueBranch\): its "
        r"call could not run on symbolic inputs \(.+\)\. Register "
        r"one with",
    ),
    (
        "prune-not-a-model",
        "a path instead of a model",
        lambda m, t, c: keras_guided.prune_model("model.keras"),
        ValueError,
        r"`model` must be a Keras 3 keras.Model .* Received: str\. "
        r"Load a saved model first",
    ),
    (
        "prune-tf-keras",
        "a tf_keras (Keras 2) model",
        lambda m, t, c: keras_guided.prune_model(LegacyFunctional()),
        ValueError,
        r"`model` is a tf_keras \(Keras 2\) model .* works on "
        r"Keras 3 models",
    ),
    (
        "prune-unbuilt",
        "Sequential without an Input",
        lambda m, t, c: keras_guided.prune_model(
            keras.Sequential([keras.layers.Dense(2)], name="lazy")
        ),
        ValueError,
        r"Sequential model 'lazy' is not built.*keras\.Input",
    ),
    (
        "prune-plan-index",
        "plan for a group that does not exist",
        lambda m, t, c: keras_guided.prune_model(m, plan={99: 1}),
        ValueError,
        r"`plan` refers to group 99, but the model has 3 unit "
        r"groups \(indices 0 to 2\)",
    ),
    (
        "prune-plan-empty",
        "plan that empties a layer",
        lambda m, t, c: keras_guided.prune_model(m, plan={0: []}),
        ValueError,
        r"`plan` keeps 0 units of group 0 .* at least "
        r"min_units=1 must stay",
    ),
    (
        "prune-plan-units",
        "plan with a unit index out of range",
        lambda m, t, c: keras_guided.prune_model(m, plan={0: [0, 17]}),
        ValueError,
        r"must list distinct unit indices in \[0, 4\)\. "
        r"Received: \[0, 17\]",
    ),
    (
        "prune-plan-protected",
        "plan touching a protected layer",
        lambda m, t, c: keras_guided.prune_model(
            m, plan={0: [0]}, protected=["conv"]
        ),
        ValueError,
        r"which is not prunable: protected layer 'conv'",
    ),
    (
        "prune-protected-unknown",
        "protecting a layer that does not exist",
        lambda m, t, c: keras_guided.prune_model(m, protected=["nope"]),
        ValueError,
        r"`protected` names layers that are not in model .*"
        r"\['nope'\]",
    ),
    (
        "prune-two-criteria",
        "threshold and target together",
        lambda m, t, c: keras_guided.prune_model(m, threshold=0.1, target=0.5),
        ValueError,
        r"Pass at most one of `threshold`, `plan` and `target`\. "
        r"Received: threshold, target",
    ),
    (
        "prune-target",
        "target 1.5",
        lambda m, t, c: keras_guided.prune_model(m, target=1.5),
        ValueError,
        r"`target` must be .* Received: target=1\.5",
    ),
    (
        "prune-min-units",
        "min_units=0",
        lambda m, t, c: keras_guided.prune_model(m, min_units=0),
        ValueError,
        r"`min_units` must be a positive int \(the fewest units "
        r"kept per group; never a zero-width layer\) or a float in "
        r"\(0, 1\] \(the smallest share of each group kept, e\.g\. "
        r"0\.25\)\. Received: min_units=0",
    ),
    (
        "prune-threshold",
        "negative threshold",
        lambda m, t, c: keras_guided.prune_model(m, threshold=-1.0),
        ValueError,
        r"`threshold` must be a non-negative float\. "
        r"Received: threshold=-1\.0",
    ),
    (
        "prune-on-unsupported",
        "unknown on_unsupported",
        lambda m, t, c: keras_guided.prune_model(m, on_unsupported="ignore"),
        ValueError,
        r"`on_unsupported` must be one of \('raise', 'keep'\)\. "
        r"Received: on_unsupported='ignore'",
    ),
    (
        "prune-measure-target",
        "measure without a latency target",
        lambda m, t, c: keras_guided.prune_model(
            m, target={"flops": 0.5}, measure="litert"
        ),
        ValueError,
        r"`measure` times the candidates of a latency target\. "
        r"Received: measure='litert' with target=\{'flops': 0\.5\}",
    ),
    (
        "prune-latency-tolerance",
        "latency_tolerance=0",
        lambda m, t, c: keras_guided.prune_model(m, latency_tolerance=0),
        ValueError,
        r"`latency_tolerance` must be a float in \(0, 1\)",
    ),
    (
        "prune-max-tries",
        "max_tries=0",
        lambda m, t, c: keras_guided.prune_model(m, max_tries=0),
        ValueError,
        r"`max_tries` must be an int >= 1 \(candidates timed at "
        r"most\)\. Received: max_tries=0",
    ),
    (
        "timer-rounds",
        "InterleavedTimer num_rounds=0",
        lambda m, t, c: keras_guided.latency.InterleavedTimer(num_rounds=0),
        ValueError,
        r"`num_rounds` must be an int >= 1\. Received: "
        r"num_rounds=0",
    ),
    (
        "groups-channels-first",
        "channels-first convolution",
        lambda m, t, c: keras_guided.find_unit_groups(
            keras.Sequential(
                [
                    keras.Input((1, 8, 8)),
                    keras.layers.Conv2D(
                        2, 3, data_format="channels_first", name="cf"
                    ),
                    keras.layers.Flatten(),
                    keras.layers.Dense(2),
                ]
            )
        ),
        ValueError,
        r"channels-last layers only\. Received: layer 'cf' "
        r"\(Conv2D\) with data_format='channels_first'",
    ),
    (
        "rule-not-a-layer",
        "register_rule for a non-layer class",
        lambda m, t, c: keras_guided.register_rule(int, lambda *a: None),
        ValueError,
        r"`layer_class` must be a keras.layers.Layer subclass",
    ),
    # export_tflite
    (
        "export-int8-no-data",
        "int8 without representative data",
        lambda m, t, c: keras_guided.export_tflite(
            m, os.path.join(t, "m.tflite"), quantization="int8"
        ),
        ValueError,
        r"`quantization='int8'` needs `representative_data`.*"
        r"Received: representative_data=None",
    ),
    (
        "export-quantization",
        "unknown quantization",
        lambda m, t, c: keras_guided.export_tflite(
            m, os.path.join(t, "m.tflite"), quantization="int4"
        ),
        ValueError,
        r"`quantization` must be one of None, 'dynamic', "
        r"'float16', 'int8'\. Received: quantization='int4'",
    ),
    (
        "export-calibration-shape",
        "calibration data of the wrong shape",
        lambda m, t, c: keras_guided.export_tflite(
            m,
            os.path.join(t, "m.tflite"),
            quantization="int8",
            representative_data=np.zeros((4, 5)),
        ),
        ValueError,
        r"`representative_data` must have shape \(num_samples,\) "
        r"\+ \(8, 8, 1\)\. Received shape \(4, 5\)",
    ),
    (
        "export-missing-dir",
        "output directory that does not exist",
        lambda m, t, c: keras_guided.export_tflite(
            m, os.path.join(t, "missing", "m.tflite")
        ),
        FileNotFoundError,
        r"The output directory .*missing' does not exist",
    ),
    (
        "export-extension",
        "output path without .tflite",
        lambda m, t, c: keras_guided.export_tflite(m, os.path.join(t, "m.bin")),
        ValueError,
        r"`filepath` must end in '\.tflite'",
    ),
    (
        "export-tf-keras",
        "a tf_keras model to export",
        lambda m, t, c: keras_guided.export_tflite(
            LegacyFunctional(), os.path.join(t, "m.tflite")
        ),
        ValueError,
        r"tf_keras \(Keras 2\) model",
    ),
    (
        "export-sequence-length",
        "a None sequence length, no length given",
        lambda m, t, c: keras_guided.export_tflite(
            token_model(), os.path.join(t, "m.tflite")
        ),
        ValueError,
        r"needs a fixed input shape \(apart from the batch\)\. "
        r"Received: model '.*' with input 'token_ids' of shape "
        r"\(None, None\)\. Pass the sizes the file should take, "
        r"e\.g\. sequence_length=128",
    ),
    (
        "export-inputs-dict",
        "an array for a model with a dict of inputs",
        lambda m, t, c: keras_guided.export_tflite(
            token_model(),
            os.path.join(t, "m.tflite"),
            sequence_length=8,
            sample_inputs=np.zeros((4, 8)),
        ),
        ValueError,
        r"`sample_inputs` must be a dict keyed by input name, "
        r"since model '.*' has several inputs: 'token_ids': "
        r"\(num_samples, 8\) int32, 'padding_mask': \(num_samples, "
        r"8\) int32\. Received: ndarray\.",
    ),
    (
        "export-input-shape",
        "input_shape with a zero size",
        lambda m, t, c: keras_guided.export_tflite(
            m, os.path.join(t, "m.tflite"), input_shape=(8, 0)
        ),
        ValueError,
        r"`input_shape` must be a tuple of positive ints \(the "
        r"input shape without the batch\)\. Received: "
        r"input_shape=\(8, 0\)",
    ),
    (
        "export-subclassed",
        "a subclassed model without input_shape",
        lambda m, t, c: keras_guided.export_tflite(
            built_subclassed(), os.path.join(t, "m.tflite")
        ),
        ValueError,
        r"has no defined inputs \(a subclassed model\), so the "
        r"shape of the file's input is unknown\. Pass it: "
        r"`keras_guided\.export_tflite\(model, path, "
        r"input_shape=\(\.\.\.\)\)`",
    ),
    (
        "flops-subclassed-strict",
        "count_flops(strict=True) on a subclassed model",
        lambda m, t, c: keras_guided.stats.count_flops(
            built_subclassed(), strict=True
        ),
        ValueError,
        r"is subclassed: Keras records no shapes for the layers "
        r"its `call` uses, so its FLOPs are unknown",
    ),
    # command line
    (
        "cli-missing-file",
        "keras-guided inspect on a missing file",
        lambda m, t, c: run_cli(["inspect", os.path.join(t, "none.keras")], c),
        SystemExit,
        r"exit 1: .*none\.keras",
    ),
    (
        "cli-not-keras",
        "keras-guided prune on a file that is not a model",
        lambda m, t, c: (
            open(os.path.join(t, "junk.keras"), "w").write("x"),
            run_cli(
                [
                    "prune",
                    os.path.join(t, "junk.keras"),
                    "-o",
                    os.path.join(t, "out.keras"),
                ],
                c,
            ),
        ),
        SystemExit,
        r"exit 1: .*junk\.keras",
    ),
]


@pytest.mark.parametrize(
    "case_id, description, call, error, pattern",
    CATALOGUE,
    ids=[case[0] for case in CATALOGUE],
)
def test_bad_input(
    case_id, description, call, error, pattern, tmp_path, capsys
):
    model = small_model()
    before = [w.copy() for w in model.get_weights()]
    files_before = set(os.listdir(tmp_path))
    with pytest.raises(error, match=pattern):
        call(model, str(tmp_path), capsys)
    after = model.get_weights()
    assert len(after) == len(before)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    new_files = set(os.listdir(tmp_path)) - files_before - {"junk.keras"}
    assert not new_files, f"left behind: {sorted(new_files)}"


def test_catalogue_is_large_and_documented():
    assert len(CATALOGUE) >= 30
    ids = [case[0] for case in CATALOGUE]
    assert len(set(ids)) == len(ids)
    path = os.path.join(
        os.path.dirname(os.path.dirname(__file__)), "docs", "errors.md"
    )
    with open(path, encoding="utf-8") as f:
        documented = f.read()
    missing = [i for i in ids if f"`{i}`" not in documented]
    assert not missing, (
        f"docs/errors.md lacks {missing}; regenerate the table with "
        "`python -m tests.test_errors`"
    )


def markdown_table():
    lines = ["| id | bad input | error |", "|---|---|---|"]
    for case_id, description, _, error, _ in CATALOGUE:
        lines.append(f"| `{case_id}` | {description} | `{error.__name__}` |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
