"""The built-in rules: one `LayerRule` per Keras layer class, and the
keras-hub layers known by name."""

from keras import layers as keras_layers

from keras_guided import _weights
from keras_guided.rules._checks import _check_channels_last
from keras_guided.rules._checks import _check_embedding
from keras_guided.rules._checks import _check_group_normalization
from keras_guided.rules._checks import _check_normalization
from keras_guided.rules._checks import _check_permute
from keras_guided.rules._checks import _check_rescaling
from keras_guided.rules._checks import _check_reshape
from keras_guided.rules._flops import _CONV_FLOPS
from keras_guided.rules._flops import _DENSE_FLOPS
from keras_guided.rules._flops import _SEPARABLE_FLOPS
from keras_guided.rules._flops import _TRANSPOSE_FLOPS
from keras_guided.rules._flops import _attention_flops
from keras_guided.rules._flops import _bidirectional_flops
from keras_guided.rules._flops import _einsum_flops
from keras_guided.rules._flops import _embedding_flops
from keras_guided.rules._flops import _no_flops
from keras_guided.rules._flops import _recurrent_flops
from keras_guided.rules._flops import _time_distributed_flops
from keras_guided.rules._responses import einsum_response
from keras_guided.rules._responses import kernel_response
from keras_guided.rules._rewrites import _check_attention
from keras_guided.rules._rewrites import _check_einsum
from keras_guided.rules._rewrites import _layer_scale_rule
from keras_guided.rules._rewrites import _producer_rule
from keras_guided.rules._rewrites import attention_rule
from keras_guided.rules._rewrites import channel_rule
from keras_guided.rules._rewrites import depthwise_rule
from keras_guided.rules._rewrites import dropout_rule
from keras_guided.rules._rewrites import einsum_dense_rule
from keras_guided.rules._rewrites import group_normalization_rule
from keras_guided.rules._rewrites import grouped_conv_rule
from keras_guided.rules._rewrites import prelu_rule
from keras_guided.rules._rewrites import reshape_rule
from keras_guided.rules._rewrites import unchanged_rule
from keras_guided.rules._rule import LayerRule
from keras_guided.rules._units import einsum_family
from keras_guided.rules._units import einsum_inputs
from keras_guided.rules._units import einsum_outputs
from keras_guided.rules._units import unit_axes


def _kernel_producer(count_key, family, **fields):
    """The rule of a producer that cuts its units like `family`
    (`rules._units.unit_axes`), its unit count the config entry
    `count_key`: the axes are the rule's own fields, and its rewrite
    cuts those same axes."""
    axes = unit_axes(family)
    rewrite = _producer_rule(
        count_key, axes["output_weights"], axes["input_weights"]
    )
    return LayerRule(rewrite, "producer", **axes, **fields)


def _keep(note):
    return LayerRule(unchanged_rule, kind="keep", note=note)


_KEEP_RECURRENT = (
    "its units are recurrent (the kernel and recurrent kernel of every "
    "gate would have to be cut together); it is copied unchanged"
)
_ELEMENTWISE_LAYERS = (
    keras_layers.ReLU,
    keras_layers.LeakyReLU,
    keras_layers.ELU,
    keras_layers.SpatialDropout1D,
    keras_layers.SpatialDropout2D,
    keras_layers.SpatialDropout3D,
    keras_layers.GaussianNoise,
    keras_layers.GaussianDropout,
    keras_layers.AlphaDropout,
    keras_layers.ActivityRegularization,
    keras_layers.Identity,
    keras_layers.MaxPooling1D,
    keras_layers.MaxPooling2D,
    keras_layers.MaxPooling3D,
    keras_layers.AveragePooling1D,
    keras_layers.AveragePooling2D,
    keras_layers.AveragePooling3D,
    keras_layers.GlobalMaxPooling1D,
    keras_layers.GlobalMaxPooling2D,
    keras_layers.GlobalMaxPooling3D,
    keras_layers.GlobalAveragePooling1D,
    keras_layers.GlobalAveragePooling2D,
    keras_layers.GlobalAveragePooling3D,
    keras_layers.ZeroPadding1D,
    keras_layers.ZeroPadding2D,
    keras_layers.ZeroPadding3D,
    keras_layers.Cropping1D,
    keras_layers.Cropping2D,
    keras_layers.Cropping3D,
    keras_layers.UpSampling1D,
    keras_layers.UpSampling2D,
    keras_layers.UpSampling3D,
    # Preprocessing and augmentation: the same transform on every channel
    # (identity at inference for the random ones).
    keras_layers.RandomFlip,
    keras_layers.RandomRotation,
    keras_layers.RandomZoom,
    keras_layers.RandomTranslation,
    keras_layers.RandomCrop,
    keras_layers.Resizing,
    keras_layers.CenterCrop,
)
_MERGE_LAYERS = (
    keras_layers.Add,
    keras_layers.Subtract,
    keras_layers.Multiply,
    keras_layers.Average,
    keras_layers.Maximum,
    keras_layers.Minimum,
)

# Most specific class first: the first isinstance match wins.
_BUILTIN = [
    (
        keras_layers.Dense,
        _kernel_producer(
            "units",
            "dense",
            flops=_DENSE_FLOPS,
            latency="dense",
            linear_response=kernel_response,
            bias_at_zero=True,
        ),
    ),
    (
        keras_layers.EinsumDense,
        LayerRule(
            einsum_dense_rule,
            "producer",
            flops=_einsum_flops,
            check=_check_einsum,
            output_weights=einsum_outputs,
            input_weights=einsum_inputs,
            family=einsum_family,
            linear_response=einsum_response,
            note="it is copied unchanged",
        ),
    ),
    (
        keras_layers.Embedding,
        _kernel_producer(
            "output_dim",
            "embedding",
            flops=_embedding_flops,
            check=_check_embedding,
            note="it is copied unchanged",
            zero_when_masked=True,
        ),
    ),
    (
        keras_layers.Conv1DTranspose,
        _kernel_producer(
            "filters",
            "conv_transpose",
            flops=_TRANSPOSE_FLOPS,
            linear_response=kernel_response,
            bias_at_zero=True,
        ),
    ),
    (
        keras_layers.Conv2DTranspose,
        _kernel_producer(
            "filters",
            "conv_transpose",
            flops=_TRANSPOSE_FLOPS,
            linear_response=kernel_response,
            bias_at_zero=True,
        ),
    ),
    (
        keras_layers.Conv3DTranspose,
        _kernel_producer(
            "filters",
            "conv_transpose",
            flops=_TRANSPOSE_FLOPS,
            linear_response=kernel_response,
            bias_at_zero=True,
        ),
    ),
    (
        keras_layers.SeparableConv1D,
        _kernel_producer(
            "filters",
            "separable",
            flops=_SEPARABLE_FLOPS,
            linear_response=kernel_response,
            bias_at_zero=True,
        ),
    ),
    (
        keras_layers.SeparableConv2D,
        _kernel_producer(
            "filters",
            "separable",
            flops=_SEPARABLE_FLOPS,
            linear_response=kernel_response,
            bias_at_zero=True,
        ),
    ),
    (
        keras_layers.DepthwiseConv1D,
        LayerRule(
            depthwise_rule,
            "depthwise",
            flops=_CONV_FLOPS,
            **unit_axes("depthwise"),
            bias_at_zero=True,
        ),
    ),
    (
        keras_layers.DepthwiseConv2D,
        LayerRule(
            depthwise_rule,
            "depthwise",
            flops=_CONV_FLOPS,
            latency="depthwise",
            **unit_axes("depthwise"),
            bias_at_zero=True,
        ),
    ),
    (
        keras_layers.Conv1D,
        LayerRule(
            grouped_conv_rule,
            "producer",
            grouped=True,
            flops=_CONV_FLOPS,
            latency="conv",
            **unit_axes("conv"),
            linear_response=kernel_response,
            bias_at_zero=True,
        ),
    ),
    (
        keras_layers.Conv2D,
        LayerRule(
            grouped_conv_rule,
            "producer",
            grouped=True,
            flops=_CONV_FLOPS,
            latency="conv",
            **unit_axes("conv"),
            linear_response=kernel_response,
            bias_at_zero=True,
        ),
    ),
    (
        keras_layers.Conv3D,
        LayerRule(
            grouped_conv_rule,
            "producer",
            grouped=True,
            flops=_CONV_FLOPS,
            **unit_axes("conv"),
            linear_response=kernel_response,
            bias_at_zero=True,
        ),
    ),
    (
        keras_layers.BatchNormalization,
        LayerRule(
            channel_rule,
            "normalization",
            check=_check_normalization,
            **unit_axes("normalization"),
        ),
    ),
    (
        keras_layers.LayerNormalization,
        LayerRule(
            channel_rule,
            "normalization",
            check=_check_normalization,
            **unit_axes("normalization"),
            mixes_channels="normalizes over the channels",
        ),
    ),
    (keras_layers.PReLU, LayerRule(prelu_rule, "prelu")),
    (keras_layers.Activation, LayerRule(unchanged_rule, "activation")),
    (keras_layers.Softmax, LayerRule(unchanged_rule, "mixing")),
    (keras_layers.UnitNormalization, LayerRule(unchanged_rule, "mixing")),
    (keras_layers.Dropout, LayerRule(dropout_rule, "elementwise")),
    (
        _ELEMENTWISE_LAYERS,
        LayerRule(unchanged_rule, "elementwise", check=_check_channels_last),
    ),
    (
        # Pooling to a fixed output size: each channel pooled alone.
        tuple(
            getattr(keras_layers, f"Adaptive{pool}Pooling{rank}D")
            for pool in ("Average", "Max")
            for rank in (1, 2, 3)
            if hasattr(keras_layers, f"Adaptive{pool}Pooling{rank}D")
        ),
        LayerRule(unchanged_rule, "elementwise", check=_check_channels_last),
    ),
    (
        keras_layers.Rescaling,
        LayerRule(unchanged_rule, "elementwise", check=_check_rescaling),
    ),
    (keras_layers.Flatten, LayerRule(unchanged_rule, "reshape")),
    (
        keras_layers.Reshape,
        LayerRule(reshape_rule, "reshape", check=_check_reshape),
    ),
    (
        keras_layers.Permute,
        LayerRule(unchanged_rule, "elementwise", check=_check_permute),
    ),
    (keras_layers.Concatenate, LayerRule(unchanged_rule, "concatenate")),
    (_MERGE_LAYERS, LayerRule(unchanged_rule, "merge")),
    (
        keras_layers.MultiHeadAttention,
        LayerRule(
            attention_rule,
            "attention",
            flops=_attention_flops,
            check=_check_attention,
            note="its heads are unit groups, but its query, key and value "
            "channels and its output channels are kept",
        ),
    ),
    (
        keras_layers.LSTM,
        LayerRule(
            unchanged_rule, "keep", flops=_recurrent_flops, note=_KEEP_RECURRENT
        ),
    ),
    (
        keras_layers.GRU,
        LayerRule(
            unchanged_rule, "keep", flops=_recurrent_flops, note=_KEEP_RECURRENT
        ),
    ),
    (
        keras_layers.SimpleRNN,
        LayerRule(
            unchanged_rule, "keep", flops=_recurrent_flops, note=_KEEP_RECURRENT
        ),
    ),
    (
        keras_layers.Bidirectional,
        LayerRule(
            unchanged_rule,
            "keep",
            flops=_bidirectional_flops,
            note=_KEEP_RECURRENT,
        ),
    ),
    (
        keras_layers.TimeDistributed,
        LayerRule(
            unchanged_rule,
            "keep",
            flops=_time_distributed_flops,
            note="it applies its inner layer to every time step; it is "
            "copied unchanged",
        ),
    ),
    (
        keras_layers.GroupNormalization,
        LayerRule(
            group_normalization_rule,
            "normalization",
            flops=_no_flops,
            check=_check_group_normalization,
            **unit_axes("normalization"),
            note="it normalizes over groups of channels; it is copied "
            "unchanged",
        ),
    ),
    (
        keras_layers.Attention,
        _keep(
            "its output mixes the channels of its inputs; it is copied "
            "unchanged"
        ),
    ),
    (
        keras_layers.AdditiveAttention,
        _keep(
            "its output mixes the channels of its inputs; it is copied "
            "unchanged"
        ),
    ),
]


_RMS_NORM = LayerRule(
    unchanged_rule,
    "keep",
    flops=_no_flops,
    note="it normalizes over the channels (their root mean square), the "
    "hidden size of the residual stream; it is copied unchanged",
)
# keras-hub layers by class name (a class of a `keras_hub.` module, or a
# subclass of one): keras-hub is optional, so its classes are not imported.
# Its transformers' RMS norms and position embedding sit on the residual
# stream, whose channels stay; their FLOPs are channel-wise (not counted).
_KERAS_HUB_RULES = {
    name: _RMS_NORM
    for name in (
        "RMSNormalization",
        "LlamaLayerNorm",
        "MistralLayerNormalization",
        "MixtralLayerNormalization",
        "Phi3LayerNorm",
        "QwenLayerNorm",
        "Qwen3LayerNorm",
        "QwenMoeLayerNorm",
        "Qwen3MoeLayerNorm",
        "T5LayerNorm",
        "GptOssLayerNormalization",
    )
}
_KERAS_HUB_RULES["PositionEmbedding"] = LayerRule(
    unchanged_rule,
    "keep",
    flops=_no_flops,
    note="it adds a learned vector per position to the hidden size, whose "
    "channels stay; it is copied unchanged",
)
if hasattr(keras_layers, "RMSNormalization"):
    _BUILTIN.append((keras_layers.RMSNormalization, _RMS_NORM))


try:  # A private Keras class: the layer scale of keras.applications.ConvNeXt.
    from keras.src.applications.convnext import LayerScale as _LayerScale
except ImportError:  # pragma: no cover (another Keras layout)
    _LayerScale = None
if _LayerScale is not None:
    _BUILTIN.append(
        (
            _LayerScale,
            LayerRule(
                _layer_scale_rule,
                "elementwise",
                # Its one weight is unnamed ("variable" in Keras 3.15).
                output_weights=lambda layer: (
                    (_weights.weight_keys(layer)[0], 0),
                ),
            ),
        )
    )
