"""Tests for keras_guided.surgery._hub_rebuild: pruned keras-hub models stay
keras-hub models (`generate()`, `save_to_preset`, the task API).

Tiny configs built offline (no presets, no downloads).
"""

import re
import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_guided
from tests.helpers import tiny_llama
from tests.helpers import zero_units

keras_hub = pytest.importorskip("keras_hub")
pytestmark = pytest.mark.filterwarnings(
    "ignore:.* of model .* ha(s|ve) unknown FLOPs:UserWarning"
)


def _gpt2(seed=0):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=100,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=32,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def _ffn_groups(model):
    groups = keras_guided.find_unit_groups(model, on_unsupported="keep")
    return [
        g
        for g in groups
        if g.prunable and "feedforward_intermediate_dense" in g.layers
    ]


def _kill_ffn_units(model, counts):
    """Zeroes `counts[i]` FFN units of block i (different ones per block)."""
    for block, (group, count) in enumerate(zip(_ffn_groups(model), counts)):
        rng = np.random.default_rng(block)
        zero_units(group, rng.choice(group.num_units, count, replace=False))


def _tokens(length=12, prompt=5, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros((batch, length), "int32")
    mask[:, :prompt] = 1
    ids = rng.integers(1, 100, (batch, length)).astype("int32") * mask
    return {"token_ids": ids, "padding_mask": mask}


def _max_relative(a, b):
    a, b = ops.convert_to_numpy(a), ops.convert_to_numpy(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


@pytest.fixture(scope="module")
def dead_gpt2():
    model = _gpt2()
    _kill_ffn_units(model, (12, 20))  # blocks keep 20 and 12 live units
    return model


def test_uniform_dead_units_rebuild_the_causal_lm_exactly(dead_gpt2):
    small, report = keras_guided.prune_model(
        dead_gpt2,
        on_unsupported="keep",
        uniform_blocks=True,
        return_report=True,
    )
    assert type(small) is keras_hub.models.GPT2CausalLM
    # The widest block sets the width; the narrower keeps 8 dead units.
    assert small.backbone.get_config()["intermediate_dim"] == 20
    assert report.notes[-1] == (
        "rebuilt as GPT2CausalLM with intermediate_dim 32 -> 20, its pruned "
        "weights copied; it matches the pruned Functional model to 0"
    )
    x = _tokens()
    assert _max_relative(dead_gpt2(x), small(x)) <= 1e-5
    # generate() runs the keras-hub blocks with their cache: same tokens.
    for lm in (dead_gpt2, small):
        lm.compile(sampler="greedy")
    expected = dead_gpt2.generate(x, max_length=12, stop_token_ids=None)
    got = small.generate(x, max_length=12, stop_token_ids=None)
    np.testing.assert_array_equal(got["token_ids"], expected["token_ids"])
    assert (got["token_ids"][:, 5:] != 0).any()  # tokens were generated
    assert small.count_params() < dead_gpt2.count_params()


def test_rebuilt_causal_lm_saves_to_a_preset_and_loads(dead_gpt2, tmp_path):
    small = keras_guided.prune_model(
        dead_gpt2, on_unsupported="keep", uniform_blocks=True
    )
    small.save_to_preset(str(tmp_path / "preset"))
    loaded = keras_hub.models.GPT2CausalLM.from_preset(str(tmp_path / "preset"))
    x = _tokens(seed=1)
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(x)),
        ops.convert_to_numpy(small(x)),
        atol=1e-6,
    )


def test_rebuilt_causal_lm_exports_token_ids_in_logits_out(dead_gpt2, tmp_path):
    pytest.importorskip("ai_edge_litert")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export runs on the TensorFlow backend")
    small = keras_guided.prune_model(
        dead_gpt2, on_unsupported="keep", uniform_blocks=True
    )
    x = _tokens(length=8, prompt=8, batch=3, seed=2)
    report = keras_guided.export_tflite(
        small, str(tmp_path / "gpt2.tflite"), sample_inputs=x, sequence_length=8
    )
    assert report.ok
    assert report.max_abs_diff <= 1e-4 * max(
        1.0, float(np.max(np.abs(ops.convert_to_numpy(small(x)))))
    )


def test_without_uniform_blocks_different_widths_stay_functional(dead_gpt2):
    small, report = keras_guided.prune_model(
        dead_gpt2, on_unsupported="keep", return_report=True
    )
    assert not isinstance(small, keras_hub.models.CausalLM)
    assert report.notes[-1] == (
        "kept as a Functional model, not GPT2CausalLM: its blocks keep "
        "different widths (intermediate_dim: 12 in transformer_layer_1, 20 "
        "in transformer_layer_0), which one GPT2Backbone config cannot say. "
        "Pass uniform_blocks=True to keep the same widths in every block."
    )
    x = _tokens()
    assert _max_relative(dead_gpt2(x), small(x)) <= 1e-5


def test_fewer_heads_cannot_be_said_and_the_warning_says_how_to_keep_them():
    model = _gpt2()
    with pytest.warns(
        UserWarning,
        match=re.escape(
            "prune_model: kept as a Functional model, not GPT2CausalLM: "
            "GPT2Backbone with intermediate_dim 32 -> 16, num_heads 2 -> 1 "
            "gives transformer_layer_0/self_attention/query/kernel the shape "
            "(16, 1, 16), the pruned model (16, 1, 8): its config cannot say "
            "these widths. Pass protected=['self_attention'] to keep them."
        ),
    ):
        small = keras_guided.prune_model(
            model,
            plan=None,
            target={"units": 0.5},
            on_unsupported="keep",
            uniform_blocks=True,
            min_units=0.5,
        )
    assert not isinstance(small, keras_hub.models.CausalLM)


def test_target_with_uniform_blocks_keeps_the_class_and_the_budget():
    model = _gpt2()
    small, report = keras_guided.prune_model(
        model,
        target={"units": 0.5},
        on_unsupported="keep",
        uniform_blocks=True,
        protected=["self_attention"],
        return_report=True,
    )
    assert type(small) is keras_hub.models.GPT2CausalLM
    assert small.backbone.get_config()["intermediate_dim"] == 16
    # Exact against the original with the removed units masked.
    assert report.max_abs_diff <= 1e-5 * max(1.0, report.output_scale)
    assert (
        "uniform_blocks: 2 TransformerDecoder blocks (transformer_layer_0"
        " ... transformer_layer_1) keep 16 of 32 units of layers "
        "['feedforward_intermediate_dense']" in report.notes
    )


def test_bert_classifier_is_rebuilt_as_its_task():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=200,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=32,
    )
    classifier = keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=3, preprocessor=None
    )
    _kill_ffn_units(classifier, (40, 40))
    small = keras_guided.prune_model(
        classifier,
        on_unsupported="keep",
        uniform_blocks=True,
        protected=["pooled_dense"],
    )
    assert type(small) is keras_hub.models.BertTextClassifier
    assert small.backbone.get_config()["intermediate_dim"] == 24
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(0, 200, (3, 16)).astype("int32"),
        "segment_ids": np.zeros((3, 16), "int32"),
        "padding_mask": np.ones((3, 16), "int32"),
    }
    assert _max_relative(classifier(x), small(x)) <= 1e-5
    # The task's own head is the pruned model's, copied.
    np.testing.assert_array_equal(
        small.get_layer("logits").get_weights()[0],
        classifier.get_layer("logits").get_weights()[0],
    )


def test_a_pruned_pooler_is_named_in_the_reason():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=200,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=32,
    )
    classifier = keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=2, preprocessor=None
    )
    pooler = next(
        g
        for g in keras_guided.find_unit_groups(
            classifier, on_unsupported="keep"
        )
        if g.layers[0] == "pooled_dense"
    )
    zero_units(pooler, [0, 1])
    small, report = keras_guided.prune_model(
        classifier, on_unsupported="keep", return_report=True
    )
    assert not isinstance(small, keras_hub.models.Task)
    assert report.notes[-1] == (
        "kept as a Functional model, not BertTextClassifier: BertBackbone "
        "with its config unchanged gives pooled_dense/kernel the shape "
        "(16, 16), the pruned model (16, 14): its config cannot say these "
        "widths. Pass protected=['pooled_dense'] to keep them."
    )


# ---------------------------------------------------------------- Llama
# keras-hub 0.32's Llama attention and rotary embedding do not rebuild from
# their configs, so a Functional copy of a pruned block would not load; the
# blocks are opened all the same, and the model is kept only as its class.
def test_llama_blocks_show_their_gated_ffn_units_and_kv_heads():
    groups = keras_guided.find_unit_groups(tiny_llama(), on_unsupported="keep")
    assert [(g.num_units, g.layers[:2]) for g in groups if g.prunable] == [
        (2, ["self_attention"]),
        (32, ["feedforward_gate_dense", "feedforward_intermediate_dense"]),
    ] * 2


def test_llama_is_pruned_inside_and_rebuilt_as_its_class(tmp_path):
    model = tiny_llama()
    _kill_ffn_units(model, (16, 10))
    small = keras_guided.prune_model(
        model,
        on_unsupported="keep",
        uniform_blocks=True,
        sample_inputs=_tokens(length=8, prompt=8),
    )
    assert type(small) is keras_hub.models.LlamaCausalLM
    assert small.backbone.get_config()["intermediate_dim"] == 22
    x = _tokens()
    assert _max_relative(model(x), small(x)) <= 1e-5
    for lm in (model, small):
        lm.compile(sampler="greedy")
    np.testing.assert_array_equal(
        small.generate(x, max_length=12, stop_token_ids=None)["token_ids"],
        model.generate(x, max_length=12, stop_token_ids=None)["token_ids"],
    )
    small.save_to_preset(str(tmp_path / "llama"))
    loaded = keras_hub.models.LlamaCausalLM.from_preset(str(tmp_path / "llama"))
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(x)),
        ops.convert_to_numpy(small(x)),
        atol=1e-6,
    )


def test_rebuilt_class_shares_no_variable_with_the_users_model():
    # The class is built without values and takes the pruned model's
    # storage; the unchanged embedding must still be the pruned model's
    # own copy, so training the small model never writes the user's.
    model = tiny_llama()
    _kill_ffn_units(model, (16, 16))
    before = [ops.convert_to_numpy(w) for w in model.weights]
    small = keras_guided.prune_model(
        model,
        on_unsupported="keep",
        uniform_blocks=True,
        protected=["token_embedding"],
        sample_inputs=_tokens(length=8, prompt=8),
    )
    assert type(small) is keras_hub.models.LlamaCausalLM
    storages = {id(getattr(w, "_value", w)) for w in model.weights}
    assert not any(
        id(getattr(w, "_value", w)) in storages for w in small.weights
    )
    for w in small.weights:
        w.assign(ops.zeros(w.shape, w.dtype))
    for a, w in zip(before, model.weights):
        np.testing.assert_array_equal(a, ops.convert_to_numpy(w))


def test_llama_that_cannot_be_its_class_is_refused_with_both_reasons():
    model = tiny_llama()
    _kill_ffn_units(model, (16, 10))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Model 'llama_causal_lm' can be pruned inside its blocks only "
            "as its keras-hub class: sublayer 'llama_rotary_embedding' "
            "(LlamaRotaryEmbedding) cannot be rebuilt from its config"
        ),
    ) as caught:
        keras_guided.prune_model(
            model,
            on_unsupported="keep",
            sample_inputs=_tokens(length=8, prompt=8),
        )
    assert str(caught.value).endswith(
        "It could not be rebuilt as that class: its blocks keep different "
        "widths (intermediate_dim: 16 in transformer_layer_0, 22 in "
        "transformer_layer_1), which one LlamaBackbone config cannot say. "
        "Pass uniform_blocks=True to keep the same widths in every block. "
        "Or keep the blocks intact with protected=[<block names>]."
    )


@pytest.mark.filterwarnings("ignore:Model .* has inputs of unknown length")
def test_llama_trained_with_uniform_blocks_prunes_to_its_class():
    # The callback spares the key/value heads (the class cannot shrink
    # them) and trains the blocks' FFN units together, so prune_model with
    # no arguments removes what it trained and rebuilds a LlamaCausalLM.
    model = tiny_llama()
    x = _tokens(length=8, prompt=8, batch=16)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    pruning = keras_guided.GuidedPruning(
        target={"flops": 0.7},
        protected=["self_attention"],
        uniform_blocks=True,
        on_unsupported="keep",
    )
    history = model.fit(
        x,
        x["token_ids"],
        epochs=3,
        batch_size=8,
        verbose=0,
        callbacks=[pruning],
    ).history
    assert [g.layers[:2] for g in pruning.groups] == [
        ["feedforward_gate_dense", "feedforward_intermediate_dense"]
    ]
    small = keras_guided.prune_model(
        model, on_unsupported="keep", sample_inputs=_tokens(length=8, prompt=8)
    )
    assert type(small) is keras_hub.models.LlamaCausalLM
    width = small.backbone.get_config()["intermediate_dim"]
    assert width < 32
    # Two blocks of `width` units each, as the callback logged.
    assert history["live_units"][-1] == 2 * width
    xt = _tokens()
    assert _max_relative(model(xt), small(xt)) <= 1e-6


def test_gemma_ffn_is_pruned_and_rebuilt_with_twice_the_gate_width():
    # keras-hub 0.32's Gemma attention reshapes with sizes read off symbolic
    # tensors, so its traced graph does not run: it stays intact, with the
    # reason. The gated FFN is pruned, and Gemma's `intermediate_dim` is
    # twice the width of each gate.
    model = _tiny_gemma()
    analysis = keras_guided.graph.analyze(model, on_unsupported="keep")
    assert analysis.unsupported_reasons[0].startswith(
        "layer 'attention' (CachedGemmaAttention) is not supported: its "
        "traced call could not run at length 5 ("
    )
    groups = [g for g in analysis.groups if g.prunable]
    assert [(g.num_units, g.layers[:2]) for g in groups] == [
        (32, ["ffw_gating", "ffw_gating_2"])
    ] * 2
    for group, count in zip(groups, (8, 12)):
        zero_units(group, list(range(count)))
    small = keras_guided.prune_model(
        model,
        on_unsupported="keep",
        uniform_blocks=True,
        sample_inputs=_tokens(length=8, prompt=8),
    )
    assert type(small) is keras_hub.models.GemmaCausalLM
    assert small.backbone.get_config()["intermediate_dim"] == 48
    x = _tokens()
    assert _max_relative(model(x), small(x)) <= 1e-5


def _tiny_gemma():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=100,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=16,
        intermediate_dim=64,
        head_dim=8,
    )
    return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)


def test_gemma_flops_target_takes_the_sizes_of_the_sample_inputs():
    # The sizes of `sample_inputs` reach the layers inside Gemma's blocks
    # (it used to ask for the `sample_inputs` it was given).
    model = _tiny_gemma()
    x = _tokens(length=8, prompt=8)
    small = keras_guided.prune_model(
        model,
        target={"flops": 0.8},
        on_unsupported="keep",
        uniform_blocks=True,
        sample_inputs=x,
    )
    assert type(small) is keras_hub.models.GemmaCausalLM
    assert small.backbone.get_config()["intermediate_dim"] < 64


def test_gemma_params_floor_is_the_same_in_the_callback_and_prune_model():
    # The tied embedding is called by the backbone and by the output
    # projection: its parameters count once, as in `count_params`.
    model = _tiny_gemma()
    assert keras_guided.stats.count_params(model) == model.count_params()
    floor = (
        "Cannot keep only 50% of the params: removing every prunable unit "
        "allowed by min_units=1 keeps 62.0%."
    )
    with pytest.raises(ValueError, match=re.escape(floor)):
        keras_guided.prune_model(
            model, target={"params": 0.5}, on_unsupported="keep"
        )
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = _tokens(length=8, prompt=8)
    pruning = keras_guided.GuidedPruning(
        target={"params": 0.5}, on_unsupported="keep"
    )
    with pytest.raises(ValueError, match=re.escape(floor)):
        model.fit(x, x["token_ids"], epochs=1, verbose=0, callbacks=[pruning])


def test_deeplab_v3_copy_is_exact_and_the_model_untouched():
    # Its SpatialPyramidPooling's call takes no `training`: run against
    # its traced graph without it, its BatchNormalization updated the
    # user's moving statistics, and the copy then "differed" by 0.003.
    keras.utils.set_random_seed(0)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 64, 64],
        stackwise_num_blocks=[1, 1, 1],
        stackwise_num_strides=[1, 2, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder,
        spatial_pyramid_pooling_key="P4",
        upsampling_size=4,
        dilation_rates=[6, 12],
        low_level_feature_key="P2",
        projection_filters=8,
        image_shape=(32, 32, 3),
    )
    model = keras_hub.models.DeepLabV3ImageSegmenter(
        backbone=backbone, num_classes=3
    )
    before = [np.array(w) for w in model.get_weights()]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="The pruned model differs")
        small, report = keras_guided.prune_model(
            model, on_unsupported="keep", return_report=True
        )
    assert report.max_abs_diff == 0.0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3))
    np.testing.assert_array_equal(
        ops.convert_to_numpy(small(x.astype("float32"), training=False)),
        ops.convert_to_numpy(model(x.astype("float32"), training=False)),
    )
