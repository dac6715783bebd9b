"""B2: training overhead of GuidedPruning, GuidedRegularizer and Keras' L1.

Four LeNet-300-100 models are trained side by side, one epoch each in turn
(the order rotates every round), so machine load hits all of them alike:
plain `fit`, `fit` with `GuidedPruning(mode="proximal")`, `fit` with a
`GuidedRegularizer` on every Dense kernel, and `fit` with Keras' own
`keras.regularizers.L1` on every Dense kernel (the price of any
regularizer, for contrast). An epoch is at least `MIN_SAMPLES` samples (the
training split is tiled up to it, so per-epoch costs are not lost in
noise). The first round (compilation) is discarded; the ratio of a variant
is its fastest epoch over plain `fit`'s fastest epoch (the fastest epoch is
the one least disturbed by other load); medians are reported too.
"""

import time

import keras
import numpy as np

import keras_guided as kg
from benchmarks import common
from benchmarks import models as models_lib

MIN_SAMPLES = 30_000
CONFIGS = {
    "toy": {"rounds": 1, "batch_size": 64, "min_samples": 512},
    "quick": {"rounds": 3, "batch_size": 64, "min_samples": MIN_SAMPLES},
    "full": {"rounds": 9, "batch_size": 64, "min_samples": MIN_SAMPLES},
}
#: A ratio to plain fit, or `[other variant, margin]`: at most that
#: variant's ratio plus the margin (GuidedRegularizer vs Keras' own L1).
AIMS = {"callback_proximal": 1.10, "regularizer": ["keras_l1", 0.03]}


def _variants():
    variants = {"plain": (None, [])}
    skipped = {}
    reason = common.missing("GuidedPruning")
    if reason:
        skipped["callback_proximal"] = reason
    else:
        variants["callback_proximal"] = (
            None,
            [kg.GuidedPruning(strength=1e-4, mode="proximal")],
        )
    variants["regularizer"] = (
        lambda: kg.GuidedRegularizer(1e-4, norm="group", guidance="linear"),
        [],
    )
    variants["keras_l1"] = (lambda: keras.regularizers.L1(1e-4), [])
    return variants, skipped


def _epoch_data(data, min_samples):
    """The training split tiled to at least `min_samples` samples."""
    x, y = data["x_train"], data["y_train"]
    repeats = max(1, -(-min_samples // len(x)))
    return np.concatenate([x] * repeats), np.concatenate([y] * repeats)


def run(data, mode, log=print):
    cfg = CONFIGS[mode]
    variants, skipped = _variants()
    x, y = _epoch_data(data, cfg["min_samples"])
    models = {}
    for name, (regularizer, callbacks) in variants.items():
        keras.utils.set_random_seed(0)
        model = models_lib.build(
            "lenet300",
            x.shape[1:],
            regularizer=regularizer,
            regularize_output=True,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        models[name] = (model, callbacks)
    times = {name: [] for name in models}
    names = list(models)
    for round_index in range(cfg["rounds"] + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model, callbacks = models[name]
            start = time.perf_counter()
            model.fit(
                x,
                y,
                epochs=1,
                batch_size=cfg["batch_size"],
                verbose=0,
                callbacks=callbacks,
            )
            if round_index > 0:  # Round 0 compiles; discard it.
                times[name].append(time.perf_counter() - start)
    medians = {name: common.median(values) for name, values in times.items()}
    fastest = {name: float(min(values)) for name, values in times.items()}
    ratios = {
        name: fastest[name] / fastest["plain"]
        for name in fastest
        if name != "plain"
    }
    for name, ratio in ratios.items():
        log(
            f"B2 {name}: {ratio:.3f} x plain (fastest epoch "
            f"{fastest[name]:.3f} s, median {medians[name]:.3f} s)"
        )
    return {
        "config": cfg,
        "model": "lenet300",
        "train_samples": int(len(data["x_train"])),
        "samples_per_epoch": int(len(x)),
        "epoch_seconds": times,
        "fastest_seconds": fastest,
        "median_seconds": medians,
        "ratios": ratios,
        "ratio_of": "fastest epochs",
        "aims": AIMS,
        "skipped": skipped,
    }
