"""B2: training overhead of GuidedRegularizer and of GuidedPruning.

Three LeNet-300-100 models are trained side by side, one epoch each in
turn (the order rotates every round), so machine load hits all three
alike: plain `fit`, `fit` with a `GuidedRegularizer` on every Dense kernel,
and `fit` with `GuidedPruning(mode="proximal")`. The first epoch of each
(compilation) is discarded; ratios are of the median epoch times.
"""

import time

import keras

import keras_guided as kg
from benchmarks import common
from benchmarks import models as models_lib

CONFIGS = {
    "toy": {"rounds": 1, "batch_size": 64},
    "quick": {"rounds": 3, "batch_size": 64},
    "full": {"rounds": 9, "batch_size": 64},
}
AIMS = {"regularizer": 1.05, "callback_proximal": 1.10}


def _variants():
    variants = {
        "plain": (None, []),
        "regularizer": (
            lambda: kg.GuidedRegularizer(1e-4, norm="group",
                                         guidance="linear"),
            [],
        ),
    }
    skipped = {}
    reason = common.missing("GuidedPruning")
    if reason:
        skipped["callback_proximal"] = reason
    else:
        variants["callback_proximal"] = (
            None, [kg.GuidedPruning(strength=1e-4, mode="proximal")])
    return variants, skipped


def run(data, mode, log=print):
    cfg = CONFIGS[mode]
    variants, skipped = _variants()
    models = {}
    for name, (regularizer, callbacks) in variants.items():
        keras.utils.set_random_seed(0)
        model = models_lib.build("lenet300", data["x_train"].shape[1:],
                                 regularizer=regularizer,
                                 regularize_output=True)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        models[name] = (model, callbacks)
    times = {name: [] for name in models}
    names = list(models)
    for round_index in range(cfg["rounds"] + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model, callbacks = models[name]
            start = time.perf_counter()
            model.fit(data["x_train"], data["y_train"], epochs=1,
                      batch_size=cfg["batch_size"], verbose=0,
                      callbacks=callbacks)
            if round_index > 0:  # Round 0 compiles; discard it.
                times[name].append(time.perf_counter() - start)
    medians = {name: common.median(values) for name, values in times.items()}
    ratios = {name: medians[name] / medians["plain"] for name in medians
              if name != "plain"}
    for name, ratio in ratios.items():
        log(f"B2 {name}: {ratio:.3f} x plain ({medians[name]:.3f} s/epoch)")
    return {
        "config": cfg,
        "model": "lenet300",
        "train_samples": int(len(data["x_train"])),
        "epoch_seconds": times,
        "median_seconds": medians,
        "ratios": ratios,
        "aims": AIMS,
        "skipped": skipped,
    }
