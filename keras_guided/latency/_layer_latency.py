"""`LayerLatency`: one layer's latency curve over its kept channel counts."""

import dataclasses

from keras_guided.latency import _interpolation
from keras_guided.latency._settings import STATISTICS as STATISTICS


@dataclasses.dataclass(frozen=True)
class LayerLatency:
    """The latency curve of one layer of a `LatencyTable`.

    Attributes:
        name: the layer's name (`"outer/inner"` inside a nested model).
        class_name: its class, e.g. `"Conv2D"`.
        kind: `"measured"` (timed in LiteRT) or `"estimated"` (FLOPs times
            the table's ms per FLOP).
        input_channels: the full input channel count (0 if estimated).
        output_channels: the full output channel count (0 if estimated).
        grids: one `(input samples, output samples, ms)` per call of the
            layer; `ms[i][j]` is the time at `input samples[i]` and
            `output samples[j]` (a depthwise layer has one output sample).
        flops: the layer's FLOPs at full width.
        ms_per_flop: the conversion used when estimated.
        ms_per_channel: the whole-model calibration: ms per kept output
            channel (per kept channel for depthwise) for what the layers
            alone do not explain; 0 without calibration.
        positions: output positions written per output channel, summed
            over the layer's calls (what the calibration spreads over).
        timed_as: how a measured layer is timed, its rule's `latency`
            (`"dense"`, `"conv"`, `"depthwise"`); `None` if estimated.
    """

    name: str
    class_name: str
    kind: str
    input_channels: int = 0
    output_channels: int = 0
    grids: tuple = ()
    flops: float = 0.0
    ms_per_flop: float = 0.0
    ms_per_channel: float = 0.0
    positions: float = 0.0
    timed_as: str = None

    def predict(self, input_channels=None, output_channels=None):
        """Latency in ms with the given kept channel counts (full width
        where `None`; a depthwise layer's outputs follow its inputs, so
        `output_channels` is ignored there); an estimated layer costs its
        full-width FLOPs times `ms_per_flop`."""
        if self.kind == "estimated":
            return self.flops * self.ms_per_flop
        cin, cout = self._kept(input_channels, output_channels)
        total = 0.0
        for ins, outs, ms in self.grids:
            rows = [_interpolation.interpolate(cout, outs, row) for row in ms]
            total += _interpolation.interpolate(cin, ins, rows)
        return max(total, 0.0) + self.ms_per_channel * self.written(
            input_channels, output_channels
        )

    def written(self, input_channels=None, output_channels=None):
        """The channels the layer writes at the kept counts (full width
        where `None`): its outputs; a depthwise layer's follow its inputs."""
        cin, cout = self._kept(input_channels, output_channels)
        return cin if self._depthwise else cout

    @property
    def _depthwise(self):
        return self.timed_as == "depthwise"

    def _kept(self, input_channels, output_channels):
        cin = self.input_channels if input_channels is None else input_channels
        cout = (
            self.output_channels
            if (output_channels is None or self._depthwise)
            else output_channels
        )
        return cin, cout
