"""Tests for keras_guided.trace on decoders: causal masks of any length.

keras-hub decoder blocks build their causal mask from the sequence length,
which a symbolic tensor of a variable-length model does not know; the trace
builds it with length-free ops instead, so the pruned blocks compute the
same function at every length. Tiny configs built offline (no presets).
"""

import keras
import numpy as np
import pytest
from keras import layers
from keras import ops

import keras_guided
from keras_guided import stats
from keras_guided.stats._layers import iter_layers
from tests.helpers import zero_units

keras_hub = pytest.importorskip("keras_hub")
# GPT-2's position embedding (a lookup and an add) and Phi-3's RMS norms
# have no FLOPs rule.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.* of model .* ha(s|ve) unknown FLOPs:UserWarning"
)


def _prunable(groups):
    return [(g.num_units, g.layers[0]) for g in groups if g.prunable]


def _leaf_classes(model):
    return {type(layer).__name__ for _, layer, _ in iter_layers(model)}


def _relative_difference(a, b, x):
    expected = ops.convert_to_numpy(a(x, training=False))
    got = ops.convert_to_numpy(b(x, training=False))
    return float(np.max(np.abs(expected - got)) / np.max(np.abs(expected)))


def _token_inputs(length, batch=3, vocabulary=100, seed=None):
    rng = np.random.default_rng(length if seed is None else seed)
    mask = np.ones((batch, length), "int32")
    mask[0, length - 2 :] = 0  # a padded sequence
    return {
        "token_ids": rng.integers(0, vocabulary, (batch, length)).astype(
            "int32"
        ),
        "padding_mask": mask,
    }


def _assert_exact_and_reloads(model, pruned, path, lengths=(7, 23)):
    """`pruned` computes what `model` computes at `lengths` (none of them
    the length it was pruned at), and so does its saved and loaded copy."""
    for length in lengths:
        x = _token_inputs(length)
        assert _relative_difference(model, pruned, x) <= 1e-5
    pruned.save(path)
    reloaded = keras.saving.load_model(path)
    for length in lengths:
        x = _token_inputs(length)
        np.testing.assert_allclose(reloaded(x), pruned(x), atol=1e-6)


def _flops(model, length):
    shapes = keras_guided.graph.concrete_shapes(model, [(1, length)] * 2)
    return stats.count_flops(model, shapes=shapes)


# ---------------------------------------------------------------- GPT-2
def _gpt2():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=100,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=32,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


@pytest.fixture(scope="module")
def gpt2():
    return _gpt2()


def test_gpt2_shows_ffn_units_and_heads_of_every_block(gpt2):
    groups = keras_guided.find_unit_groups(gpt2)
    assert _prunable(groups) == [
        (2, "self_attention"),
        (32, "feedforward_intermediate_dense"),
        (2, "self_attention"),
        (32, "feedforward_intermediate_dense"),
    ]
    stream = groups[0]
    assert stream.num_units == 16 and not stream.prunable
    assert (
        "layer 'token_embedding' (ReversibleEmbedding) keeps its channels: "
        "it is called in reverse (its embeddings project its input channels "
        "onto the vocabulary, tied weights); it is copied unchanged"
    ) in stream.reason
    assert (
        "layer 'transformer_layer_1' (TransformerDecoder) is traced: the "
        "channels of its inputs and outputs (the residual stream) are kept"
    ) in stream.reason


def test_gpt2_flops_price_every_block_and_the_tied_output(gpt2):
    # Per block and position: 4 projections 4 * 2 * 16 * 16, a feed-forward
    # 2 * 2 * 16 * 32, attention 2 * 16 * 2 * 16 (scores and values over
    # 16 positions); the tied output projection 2 * 16 * 100.
    length = 16
    block = 4 * 2 * 16 * 16 + 2 * 2 * 16 * 32
    attention = 2 * length * 2 * 16
    output = 2 * 16 * 100
    assert _flops(gpt2, length) == length * (
        2 * (block + attention) + output
    )  # 215040


def test_gpt2_prunes_exactly_at_every_length_and_reloads(tmp_path):
    model = _gpt2()
    groups = [g for g in keras_guided.find_unit_groups(model) if g.prunable]
    zero_units(groups[0], [1], inputs_only=True)  # a head of block 0
    zero_units(groups[1], [0, 5, 31], inputs_only=True)  # FFN of block 0
    zero_units(groups[3], [2], inputs_only=True)  # FFN of block 1
    pruned, report = keras_guided.prune_model(
        model, return_report=True, sample_inputs=_token_inputs(16)
    )
    assert report.removed_units == 5
    assert "TransformerDecoder" not in _leaf_classes(pruned)
    # Traced at no fixed length: exact at lengths it was never probed at.
    _assert_exact_and_reloads(model, pruned, str(tmp_path / "gpt2.keras"))


def test_gpt2_flops_target_is_met(gpt2):
    pruned = keras_guided.prune_model(
        gpt2, target={"flops": 0.5}, sample_inputs=_token_inputs(16)
    )
    goal = 0.5 * _flops(gpt2, 16)
    assert 0.99 * goal <= _flops(pruned, 16) <= goal
    x = _token_inputs(11)
    assert pruned(x).shape == (3, 11, 100)


# ------------------------------------------------------- kept intact
class PooledCausalBlock(layers.Layer):
    """Takes its causal mask's length from a pooled sequence, not from its
    input: the length-free mask would be the wrong size."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pool = layers.MaxPooling1D(2)
        self.attention = layers.MultiHeadAttention(2, 4)

    def call(self, x):
        from keras_hub.src.layers.modeling import transformer_layer_utils

        pooled = self.pool(x)
        batch, length = ops.shape(pooled)[0], ops.shape(pooled)[1]
        mask = transformer_layer_utils.compute_causal_mask(
            batch, length, length
        )
        return self.attention(pooled, pooled, attention_mask=mask)


class MaskCountingBlock(layers.Layer):
    """Reads the values of a causal mask of its pooled length: the
    length-free mask has the right shape but other values."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pool = layers.MaxPooling1D(2)
        self.dense = layers.Dense(8)

    def call(self, x):
        from keras_hub.src.layers.modeling import transformer_layer_utils

        length = ops.shape(self.pool(x))[1]
        mask = transformer_layer_utils.compute_causal_mask(
            ops.shape(x)[0], length, length
        )
        return self.dense(x) + ops.sum(ops.cast(mask, "float32")) / 10.0


def test_a_wrong_length_free_mask_is_caught_and_kept_intact():
    inputs = keras.Input((None, 8))
    x = layers.Dense(8, name="embed")(inputs)
    x = PooledCausalBlock(name="block")(x)
    model = keras.Model(inputs, layers.Dense(2)(x))
    analysis = keras_guided.graph.analyze(model, on_unsupported="keep")
    assert len(analysis.unsupported_reasons) == 1
    assert analysis.unsupported_reasons[0].startswith(
        "layer 'block' (PooledCausalBlock) is not supported: its traced call "
        "(with the causal mask built for any length) could not run at "
        "length 5 ("
    )
    assert _prunable(analysis.groups) == []


def test_a_length_free_mask_of_other_values_is_caught():
    inputs = keras.Input((None, 8))
    x = layers.Dense(8, name="embed")(inputs)
    x = MaskCountingBlock(name="block")(x)
    model = keras.Model(inputs, layers.Dense(2)(x))
    analysis = keras_guided.graph.analyze(model, on_unsupported="keep")
    # At length 5 the pooled length is 2: 2 x 3 mask entries, not 2 x 15.
    assert analysis.unsupported_reasons == [
        "layer 'block' (MaskCountingBlock) is not supported: its traced call "
        "(with the causal mask built for any length) differs from its call "
        "at length 5 (max abs difference 2.4)"
    ]


@pytest.mark.slow
def test_gpt2_budget_in_fit():
    model = _gpt2()
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = _token_inputs(8, batch=32)
    y = np.roll(x["token_ids"], -1, axis=1)  # the next token
    pruning = keras_guided.GuidedPruning(target={"flops": 0.5})
    with pytest.warns(UserWarning, match="unknown length"):
        history = model.fit(
            x, y, epochs=2, batch_size=32, verbose=0, callbacks=[pruning]
        )
    goal = pruning.budget_report["goal"]
    assert history.history["live_flops"][-1] <= goal
    small = keras_guided.prune_model(model, sample_inputs=x)
    assert _flops(small, 32) <= 0.5 * _flops(_gpt2(), 32)


# ----------------------------------------------- grouped-query attention
def _phi3():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.Phi3Backbone(
        vocabulary_size=100,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
    )
    return keras_hub.models.Phi3CausalLM(backbone=backbone, preprocessor=None)


@pytest.fixture(scope="module")
def phi3():
    return _phi3()


def test_grouped_query_attention_heads_are_unit_groups(phi3):
    analysis = keras_guided.graph.analyze(phi3, on_unsupported="keep")
    groups = [g for g in analysis.groups if g.prunable]
    assert [(g.num_units, g.layers[:2]) for g in groups] == [
        (2, ["attention"]),
        (32, ["feedforward_gate_dense", "feedforward_intermediate_dense"]),
    ] * 2
    # Key/value head k and query heads 2k, 2k + 1; the output rows of
    # those query heads.
    head = groups[0]
    assert [
        (s.layer.name, s.weight, s.axis, s.positions.tolist(), s.role)
        for s in head.slices
    ] == [
        ("query", "kernel", 1, [[0, 1], [2, 3]], "producer"),
        ("key", "kernel", 1, [[0], [1]], "producer"),
        ("value", "kernel", 1, [[0], [1]], "producer"),
        ("attention_output", "kernel", 0, [[0, 1], [2, 3]], "consumer"),
    ]
    # The gated feed-forward: gate and up projections tied, the down
    # projection's input rows with them.
    assert {(s.layer.name, s.role) for s in groups[1].slices} == {
        ("feedforward_gate_dense", "producer"),
        ("feedforward_intermediate_dense", "producer"),
        ("feedforward_output_dense", "consumer"),
    }
    # The hidden size stays: RMS norms over it have no rule.
    stream = analysis.groups[0]
    assert stream.num_units == 16 and not stream.prunable
    assert (
        "layer 'attention' (Phi3Attention) keeps its channels: its "
        "key/value heads (each with the query heads that share it) are "
        "unit groups, but its input and output channels are kept"
    ) in stream.reason


def test_grouped_query_attention_prunes_exactly_and_reloads(tmp_path):
    model = _phi3()
    analysis = keras_guided.graph.analyze(model, on_unsupported="keep")
    groups = [g for g in analysis.groups if g.prunable]
    zero_units(groups[0], [1], inputs_only=True)  # a KV head of block 0
    zero_units(groups[1], [0, 5, 31], inputs_only=True)  # FFN of block 0
    zero_units(groups[2], [0], inputs_only=True)  # a KV head of block 1
    pruned, report = keras_guided.prune_model(
        model,
        return_report=True,
        sample_inputs=_token_inputs(16),
        on_unsupported="keep",
    )
    assert report.removed_units == 5
    attention = [
        row
        for row in report.layers
        if row["layer"].endswith("transformer_layer_0/attention/query")
    ]
    assert [(r["params_before"], r["params_after"]) for r in attention] == [
        (256, 128)
    ]  # 16 x 4 heads x 4 -> 16 x 2 heads x 4
    _assert_exact_and_reloads(model, pruned, str(tmp_path / "phi3.keras"))


def test_grouped_query_attention_flops_target_is_met(phi3):
    pruned = keras_guided.prune_model(
        phi3,
        target={"flops": 0.5},
        sample_inputs=_token_inputs(16),
        on_unsupported="keep",
    )
    goal = 0.5 * _flops(phi3, 16)
    assert 0.99 * goal <= _flops(pruned, 16) <= goal
    x = _token_inputs(9)
    assert pruned(x).shape == (3, 9, 100)
    # The rebuilt attention (a nested model now) shows its heads again.
    again = keras_guided.graph.analyze(pruned, on_unsupported="keep")
    heads = [g for g in again.groups if g.layers == ["attention"]]
    assert len(heads) == 2
    assert all(g.num_units == 1 for g in heads)


class _Scale(layers.Layer):
    """Takes its factor from an iterator: neither its config nor its
    recorded arguments (the spent iterator) create it again."""

    def __init__(self, factors, **kwargs):
        super().__init__(**kwargs)
        self.factor = next(factors)

    def call(self, x):
        return x * self.factor


class _ScaledBlock(layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(6, activation="relu")
        self.scale = _Scale(iter([2.0]), name="scale")

    def call(self, x):
        return self.scale(self.dense(x))


def test_a_block_whose_sublayer_does_not_copy_is_kept_with_the_reason():
    # A pruned Functional copy holding `scale` would not load, so a block
    # that is not a keras-hub block (rebuilt as its class, see
    # test_hub_rebuild) stays intact.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    x = _ScaledBlock(name="block")(inputs)
    model = keras.Model(inputs, layers.Dense(2)(x))
    analysis = keras_guided.graph.analyze(model, on_unsupported="keep")
    assert analysis.unsupported_reasons[0].startswith(
        "layer 'block' (_ScaledBlock) is not supported: its sublayer 'scale' "
        "(_Scale) cannot be rebuilt from its config ("
    )
    assert analysis.unsupported_reasons[0].endswith(
        "so a pruned model holding it would not load"
    )
    assert _prunable(analysis.groups) == []
