"""keras_guided: train Keras 3 networks to be cut, then cut them.

Guided regularization (Rafid & Sandu, arXiv:2305.18448) penalizes whole
units, scaled by per-unit guidance coefficients, so that entire neurons and
filters reach zero and can be removed from the model.
"""

from keras_guided import _quiet

# Only in a `keras-guided` process: quiet environment defaults for
# TensorFlow's C++ logging. The command imports Keras and TensorFlow only
# when a subcommand needs them (inside its muted block), so `--help` and a
# malformed command line are answered without loading them.
_quiet.quiet_start_if_command()
_COMMAND = _quiet.started_as_command()


from keras_guided.version import __version__


# Where each public class and function lives (public modules are
# `keras_guided.<name>`); the command process loads the face from it on
# first use. `tests/cli/test_cli.py` checks it gives what the imports below
# do.
_DEFINED_IN = {
    "UnitGroup": "keras_guided.graph",
    "UnitSlice": "keras_guided.graph",
    "find_unit_groups": "keras_guided.graph",
    "register_rule": "keras_guided.rules",
    "PruneReport": "keras_guided.surgery",
    "prune_model": "keras_guided.surgery",
    "GuidedPruning": "keras_guided.callbacks",
    "Distiller": "keras_guided.distill",
    "LatencyTable": "keras_guided.latency",
    "build_latency_table": "keras_guided.latency",
    "ExportReport": "keras_guided.export",
    "export_tflite": "keras_guided.export",
    "ExplicitGuidance": "keras_guided.guidance",
    "ExponentialGuidance": "keras_guided.guidance",
    "Guidance": "keras_guided.guidance",
    "LinearGuidance": "keras_guided.guidance",
    "ScoreGuidance": "keras_guided.guidance",
    "UniformGuidance": "keras_guided.guidance",
    "GuidedRegularizer": "keras_guided.regularizers",
}


# The order the package imports its parts in (dependencies first).
_LOAD_ORDER = (
    "guidance",
    "plots",
    "regularizers",
    "graph",
    "rules",
    "scoring",
    "surgery",
    "callbacks",
    "budget",
    "distill",
    "stats",
    "trace",
    "latency",
    "units",
    "validation",
    "export",
)


def _import_public_api():
    """Imports every public module and name of `__all__` into the
    package's namespace (which also registers its serializable classes
    with Keras); returns them as a dict."""
    import importlib

    for module in _LOAD_ORDER:
        importlib.import_module(f"keras_guided.{module}")
    names = {}
    for name in __all__:
        if name == "__version__":
            continue
        module = _DEFINED_IN.get(name)
        if module is None:
            names[name] = importlib.import_module(f"keras_guided.{name}")
        else:
            names[name] = getattr(importlib.import_module(module), name)
    globals().update(names)
    return names


__all__ = [
    "UnitGroup",
    "UnitSlice",
    "find_unit_groups",
    "graph",
    "register_rule",
    "PruneReport",
    "prune_model",
    "scoring",
    "surgery",
    "rules",
    "trace",
    "Distiller",
    "budget",
    "distill",
    "ExplicitGuidance",
    "ExponentialGuidance",
    "ExportReport",
    "Guidance",
    "GuidedPruning",
    "GuidedRegularizer",
    "LinearGuidance",
    "ScoreGuidance",
    "UniformGuidance",
    "__version__",
    "export_tflite",
    "guidance",
    "plots",
    "regularizers",
    "stats",
    "latency",
    "LatencyTable",
    "build_latency_table",
    "units",
    "validation",
]


_LOADING = []  # Non-empty while the lazy face loads (no re-entry).

if _COMMAND:

    def __getattr__(name):
        """In the command process the face loads on first use."""
        if name in __all__ and not _LOADING:
            _LOADING.append(name)
            try:
                _import_public_api()
            finally:
                _LOADING.clear()
            return globals()[name]
        raise AttributeError(f"module 'keras_guided' has no attribute {name!r}")

else:
    from keras_guided import guidance
    from keras_guided import plots
    from keras_guided import regularizers
    from keras_guided import graph
    from keras_guided import rules
    from keras_guided.graph import UnitGroup
    from keras_guided.graph import UnitSlice
    from keras_guided.graph import find_unit_groups
    from keras_guided.rules import register_rule
    from keras_guided import scoring
    from keras_guided import surgery
    from keras_guided.surgery import PruneReport
    from keras_guided.surgery import prune_model
    from keras_guided.callbacks import GuidedPruning
    from keras_guided import budget
    from keras_guided import distill
    from keras_guided.distill import Distiller
    from keras_guided import stats
    from keras_guided import trace
    from keras_guided import latency
    from keras_guided.latency import LatencyTable
    from keras_guided.latency import build_latency_table
    from keras_guided import units
    from keras_guided import validation
    from keras_guided.export import ExportReport
    from keras_guided.export import export_tflite
    from keras_guided.guidance import ExplicitGuidance
    from keras_guided.guidance import ExponentialGuidance
    from keras_guided.guidance import Guidance
    from keras_guided.guidance import LinearGuidance
    from keras_guided.guidance import ScoreGuidance
    from keras_guided.guidance import UniformGuidance
    from keras_guided.regularizers import GuidedRegularizer
