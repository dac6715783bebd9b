"""Composite layers as keras.io examples write them, for the tracing tests.

Written from the examples' descriptions: a Transformer block
(text_classification_with_transformer), the ViT patch encoder
(image_classification_with_vision_transformer) and the MLP-Mixer layer
(mlp_image_classification).
"""

import keras
from keras import layers
from keras import ops


class TransformerBlock(layers.Layer):
    """Self-attention and a two-Dense feed-forward, each with a residual."""

    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.att = layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=embed_dim
        )
        self.ffn = keras.Sequential(
            [layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)]
        )
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs, training=None):
        attention = self.att(inputs, inputs)
        attention = self.dropout1(attention, training=training)
        out1 = self.layernorm1(inputs + attention)
        ffn_output = self.ffn(out1)
        ffn_output = self.dropout2(ffn_output, training=training)
        return self.layernorm2(out1 + ffn_output)


class PatchEncoder(layers.Layer):
    """A Dense projection of the patches plus an embedding of positions."""

    def __init__(self, num_patches, projection_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_patches = num_patches
        self.projection = layers.Dense(units=projection_dim)
        self.position_embedding = layers.Embedding(
            input_dim=num_patches, output_dim=projection_dim
        )

    def call(self, patch):
        positions = ops.expand_dims(
            ops.arange(start=0, stop=self.num_patches, step=1), axis=0
        )
        projected_patches = self.projection(patch)
        return projected_patches + self.position_embedding(positions)


class MLPMixerLayer(layers.Layer):
    """Token mixing (over patches) then channel mixing, with residuals."""

    def __init__(self, num_patches, hidden_units, dropout_rate, **kwargs):
        super().__init__(**kwargs)
        self.mlp1 = keras.Sequential(
            [
                layers.Dense(units=num_patches, activation="gelu"),
                layers.Dense(units=num_patches),
                layers.Dropout(rate=dropout_rate),
            ]
        )
        self.mlp2 = keras.Sequential(
            [
                layers.Dense(units=num_patches, activation="gelu"),
                layers.Dense(units=hidden_units),
                layers.Dropout(rate=dropout_rate),
            ]
        )
        self.normalize = layers.LayerNormalization(epsilon=1e-6)

    def call(self, inputs):
        x = self.normalize(inputs)
        x_channels = ops.transpose(x, axes=(0, 2, 1))
        mlp1_outputs = self.mlp1(x_channels)
        mlp1_outputs = ops.transpose(mlp1_outputs, axes=(0, 2, 1))
        x = mlp1_outputs + inputs
        x_patches = self.normalize(x)
        mlp2_outputs = self.mlp2(x_patches)
        return x + mlp2_outputs


def text_classifier(
    maxlen=10, vocab=50, embed_dim=8, num_heads=2, ff_dim=16, seed=0
):
    """The keras.io text classifier: embedding, one block, pooling, heads."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((maxlen,), dtype="int32")
    x = layers.Embedding(vocab, embed_dim, name="embedding")(inputs)
    x = TransformerBlock(embed_dim, num_heads, ff_dim, name="block")(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dense(12, activation="relu", name="head")(x)
    outputs = layers.Dense(2, name="out")(x)
    return keras.Model(inputs, outputs)


def mixer_classifier(num_patches=6, hidden=8, blocks=2, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((num_patches, 5))
    x = layers.Dense(hidden, name="patch_projection")(inputs)
    for i in range(blocks):
        x = MLPMixerLayer(num_patches, hidden, 0.1, name=f"mixer_{i}")(x)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(3, name="out")(x)
    return keras.Model(inputs, outputs)


class GatedFeedForward(layers.Layer):
    """A SwiGLU feed-forward with a residual: silu(x W_gate) * (x W_up)."""

    def __init__(self, hidden_dim, intermediate_dim, **kwargs):
        super().__init__(**kwargs)
        self.norm = layers.LayerNormalization(epsilon=1e-6)
        self.gate = layers.Dense(intermediate_dim, use_bias=False, name="gate")
        self.up = layers.Dense(intermediate_dim, use_bias=False, name="up")
        self.down = layers.Dense(hidden_dim, use_bias=False, name="down")

    def call(self, x):
        h = self.norm(x)
        return x + self.down(ops.silu(self.gate(h)) * self.up(h))


class TokenExperts(layers.Layer):
    """The Switch Transformer's expert call (text_classification_with_
    switch_transformer): the tokens of the whole batch flattened, fed to
    the experts, and reshaped back with the batch size read off the input
    (`None` while tracing, so a traced graph would freeze it)."""

    def __init__(self, embed_dim, ff_dim, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = embed_dim
        self.expert = keras.Sequential(
            [layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)]
        )

    def call(self, inputs):
        batch_size = ops.shape(inputs)[0]
        num_tokens_per_example = ops.shape(inputs)[1]
        tokens = ops.reshape(inputs, [-1, self.embed_dim])
        outputs = self.expert(tokens)
        return ops.reshape(
            outputs, [batch_size, num_tokens_per_example, self.embed_dim]
        )


class PredictionHead(layers.Layer):
    """A detection head shared by feature maps of several sizes (RetinaNet's
    class and box heads, applied to P3 and P4)."""

    def __init__(self, filters, outputs, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(filters, 3, padding="same", activation="relu")
        self.prediction = layers.Conv2D(outputs, 1)

    def call(self, inputs):
        return self.prediction(self.conv(inputs))
