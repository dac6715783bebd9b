"""B6's protocol: methods, budgets, variants, the chosen variants and the
plan of cells (no Keras: the report reads it too).

A cell is `(budget, method, variant, seed, E)`. `E` extra epochs are
shared by a method's regularization phase (`regularization_epochs`) and
its fine-tuning. Variants are tried with role `tune` on `TUNE_SEEDS` and
compared on validation; role `test` runs, on the other seeds, only the
variant recorded in `CHOSEN` (or `default` until one is), so no test seed
takes part in any choice.

`QUEUE` is the order B6 spends compute in (`benchmarks/b6_queue.py` runs
it): the tuning seed's reference and a first look at the main arms,
tuning on the tuning seed (before the test seeds' references: no test
cell can run before the choices, and tuning is where the recipe is
improved), the test seeds' references, then (once `CHOSEN` holds the
choices) the test cells, most important first.
"""

import argparse
import contextlib
import datetime
import fcntl
import os
import time

ARCH = "resnet20"
REFERENCE_EPOCHS = 40
REFERENCE_LR = 0.1
# The references' weights, their training state while they train, and
# their curves, kept in the repository (a few MB per seed): a reference
# takes longer than one sitting on two cores, and a cache on one machine
# is lost with it, so a reference resumes, and a finished one is reused,
# wherever the repository is cloned.
REFERENCE_DIR = os.path.join(os.path.dirname(__file__), "b6_references")
BUDGETS = ("flops/2x", "flops/4x", "flops/3x")  # in the order they run
EXTRA_EPOCHS = (2, 8)
METHODS = ("guided", "l1_oneshot", "li_l1", "tp_magnitude", "tp_group_sl")
TORCH_METHODS = ("tp_magnitude", "tp_group_sl")
LR = 0.01
WEIGHT_DECAY = 5e-3  # decoupled, as the reference (b6_reference.py)
TUNE_SEEDS = (0,)
DESCRIPTIONS = {
    "guided": "GuidedPruning(target={'flops': f}) for p epochs, prune_model, "
    "then E - p epochs of distillation",
    "l1_oneshot": "prune_model(reference, target={'flops': f}): global, "
    "layer-normalized filter-norm ranking with a FLOPs-aware finish, then "
    "E epochs of distillation",
    "li_l1": "Li et al. (2017): each prunable layer keeps the same share of "
    "its largest-L1 filters (the largest share meeting the budget), then "
    "E epochs of distillation",
    "tp_magnitude": "Torch-Pruning MagnitudePruner (group L1, global) one "
    "shot to the MACs budget, then E epochs of distillation",
    "tp_group_sl": "Torch-Pruning GroupNormPruner sparsity learning for s "
    "epochs (weight decay 0, GroupMagnitudeImportance(p=2, "
    "normalizer='max')), global pruning to the MACs budget, then E - s "
    "epochs of distillation",
}
# Methods of B4 that B6 does not run, and why (the page says so).
LEFT_OUT = {
    "group_lasso": "a uniform group-norm penalty and a cut: Torch-Pruning's "
    "`group_sl` is that method run with its authors' recipe (weight decay "
    "0, `normalizer='max'`, a per-group strength 1 to 16 times larger "
    "for weaker groups), and it is tuned here; B4's plain group lasso "
    "collapsed to chance at every budget",
    "slimming": "network slimming (Liu et al., 2017) learns sparse "
    "BatchNormalization scales with an L1 penalty through a whole "
    "training from scratch (160 epochs); 2 or 8 extra epochs from a "
    "reference are outside its recipe (B4: 57 % at 4x after 5 epochs), "
    "and tuning it with the same effort as guided (four strengths per "
    "budget) costs as much as a test seed's cells, so it waits until the "
    "main arms' test cells are done",
}
# Variants per method, chosen on the tuning seed's validation images.
# `regularization_epochs` (the `p` of guided, the `s` of tp_group_sl):
# an int, or "most" for `E - 1`; absent, the default rule.
VARIANTS = {
    "guided": {
        "default": {},
        # The penalty epochs trained by distillation from the reference.
        "kd": {"distill": True},
        # One penalty epoch, or all but one, instead of `E // 2`.
        "p1": {"regularization_epochs": 1},
        "pmost": {"regularization_epochs": "most"},
        # Group norm over the layer's mean live norm instead of its rank:
        # lets the budget take more from weak layers.
        "relative": {"importance": "relative"},
        # Importance over the square root of the unit's marginal cost.
        "cost": {"cost_power": 0.5},
        "kd_relative": {"distill": True, "importance": "relative"},
        # The path ends halfway through the penalty epochs; the other
        # half trains the pruned widths (the cut's accuracy for more
        # epochs at the final widths).
        "half": {"target_epochs_share": 0.5},
        "kd_half": {"distill": True, "target_epochs_share": 0.5},
        # The fine-tuning starts at lr 0.003 instead of the common 0.01:
        # guided's cut keeps most of the reference's accuracy, which a
        # restart at 0.01 partly spends before it climbs again (a cut at
        # chance level needs the larger step; guided's may not).
        "ft_low": {"finetune_lr": 0.003},
        "relative_ft_low": {"importance": "relative", "finetune_lr": 0.003},
        # Both phases at lr 0.003: the penalty phase itself moves the
        # network less from the reference (the controller raises the
        # penalty's strength to keep the path on a smaller step).
        "lr_low": {"regularization_lr": 0.003, "finetune_lr": 0.003},
    },
    # TP's default reg is 5e-4 (for 100 epochs of sparsity learning); the
    # larger ones shrink the weakest groups within a few epochs.
    "tp_group_sl": {
        "default": {"reg": 5e-4},
        "reg2e-3": {"reg": 2e-3},
        "reg5e-3": {"reg": 5e-3},
        "reg1e-2": {"reg": 1e-2},
        "reg2e-2": {"reg": 2e-2},
        "reg5e-2": {"reg": 5e-2},
        # One epoch of sparsity learning and the rest fine-tuning at the
        # pruned widths, at the strengths chosen for one epoch (E=2): the
        # split guided's `p1` tries (at E=2 they are `reg2e-3`, `reg2e-2`).
        "reg2e-3_s1": {"reg": 2e-3, "regularization_epochs": 1},
        "reg2e-2_s1": {"reg": 2e-2, "regularization_epochs": 1},
    },
    "l1_oneshot": {"default": {}},
    "li_l1": {"default": {}},
    "tp_magnitude": {"default": {}},
}
# The variants chosen on the tuning seed's validation accuracy (fill from
# `--show-choices`): `"method|budget|E"` (e.g. `"guided|flops/2x|2"`),
# `"method|budget"` for both extra-epoch budgets, or `"method"` for every
# budget and `E`. Test cells run only these.
CHOSEN = {
    # Tuning seed 0, E=2, validation % (`--show-choices`); each choice
    # holds for both extra-epoch budgets.
    # default 84.70, kd 84.44, half 84.56, relative 84.92
    # E=8 (seed 0's second reference training): relative 86.54,
    # relative_ft_low 86.20, p1 85.84 (without XLA): the choice holds at
    # E=8.
    "guided|flops/2x": "relative",
    # default 79.02, kd 78.98, half 78.84, relative 78.46
    "guided|flops/4x": "default",
    # E=8 (seed 0's second reference training): default 82.36, ft_low
    # 81.88, p1 (one penalty epoch, seven at the final widths) 82.90. p1
    # ran without XLA (`benchmarks.cifar.jit_compile()`), the other two
    # with it: the same recipe on other kernels.
    "guided|flops/4x|8": "p1",
    # default 84.40, reg2e-3 84.96, reg5e-3 84.74, reg2e-2 82.16
    "tp_group_sl|flops/2x": "reg2e-3",
    # E=8 (seed 0's second reference training, 4 epochs of sparsity
    # learning): default (TP's 5e-4) 86.46, reg2e-3 86.14; one epoch of
    # it (reg2e-3_s1) 86.08.
    "tp_group_sl|flops/2x|8": "default",
    # default 75.24, reg2e-3 76.22, reg5e-3 76.34, reg2e-2 76.58,
    # reg5e-2 38.60
    "tp_group_sl|flops/4x": "reg2e-2",
    # E=8 (seed 0's second reference training, 4 epochs of sparsity
    # learning): reg5e-3 81.94, reg2e-3 81.54, reg2e-2 (E=2's choice)
    # 60.96 (cut to 55.32, 0.240 of the FLOPs kept). This tuning was
    # added after reg2e-2's seed-1 test cell (66.25 %) showed a strength
    # chosen over 1 epoch of sparsity learning too strong over 4; the
    # choice is made on seed 0's validation alone. One epoch of sparsity
    # learning at reg2e-2 and seven of fine-tuning (reg2e-2_s1, tried
    # after guided's p1 won its E=8 tuning at 4x): 82.66, the choice.
    "tp_group_sl|flops/4x|8": "reg2e-2_s1",
}
# B6's compute plan, in order: `("reference", seed)` or `("cells", role,
# seeds, extra epochs, budgets, methods)`. Variants are first tuned at the
# short extra-epoch budget (a tuning cell there costs about a quarter of
# one at E=8); a choice recorded in `CHOSEN` as `"method|budget"` holds
# for both extra-epoch budgets. The choices at 2x and 4x are made from the
# tuning steps before the test seeds' references. After the main test
# cells at E=2 comes E=8's own tuning for the two regularized arms (the
# current choice against the variants that change what E=8 makes
# different: guided's fine-tuning rate and its split of the epochs,
# group_sl's strength over 4 sparsity-learning epochs instead of 1); a
# choice they change is recorded as `"method|budget|8"`. Then the E=8
# test cells, the other variants at E=2 (tuning breadth), 3x (tuned
# before its test cells) and the cheap references.
GUIDED_TUNED = "guided,guided:kd,guided:half,guided:relative"
TP_TUNED = (
    "tp_group_sl,tp_group_sl:reg2e-3,tp_group_sl:reg5e-3,tp_group_sl:reg2e-2"
)
MAIN = "guided,l1_oneshot,tp_group_sl"
QUEUE = (
    ("reference", 0),
    ("cells", "tune", "0", "2", "4x,2x", "guided,l1_oneshot"),
    ("cells", "tune", "0", "2", "4x,2x", GUIDED_TUNED),
    ("cells", "tune", "0", "2", "4x,2x", TP_TUNED),
    ("reference", 1),
    ("reference", 2),
    ("reference", 3),
    ("cells", "test", "1,2,3", "2", "4x,2x", MAIN),
    # E=8 tuning before E=8 test cells: the choices made at E=2 hold
    # for E=8 only until E=8's own tuning confirms or replaces them (a
    # test cell run on a choice that tuning then replaces is spent).
    # (A variant changing only the fine-tuning starts from its twin's
    # stored cut when it runs in a later step than the twin:
    # `benchmarks/b6_cuts.py`.)
    ("cells", "tune", "0", "8", "2x", "guided:relative,guided:relative_ft_low"),
    (
        "cells",
        "tune",
        "0",
        "8",
        "4x",
        "guided,guided:ft_low,tp_group_sl:reg5e-3,tp_group_sl:reg2e-3",
    ),
    (
        "cells",
        "tune",
        "0",
        "8",
        "2x",
        "tp_group_sl:reg2e-3,tp_group_sl:default",
    ),
    ("cells", "tune", "0", "8", "2x,4x", "guided:p1"),
    ("cells", "tune", "0", "8", "4x", "tp_group_sl:reg2e-2"),
    # group_sl's split of E=8 as guided's p1 splits it (added after p1
    # won guided's E=8 tuning at 4x, for the same tuning effort).
    ("cells", "tune", "0", "8", "2x", "tp_group_sl:reg2e-3_s1"),
    ("cells", "tune", "0", "8", "4x", "tp_group_sl:reg2e-2_s1"),
    ("cells", "test", "1,2,3", "8", "2x,4x", MAIN),
    ("cells", "tune", "0", "2", "4x,2x", "guided:all,tp_group_sl:all"),
    ("cells", "tune", "0", "2", "3x", f"{GUIDED_TUNED},l1_oneshot,{TP_TUNED}"),
    ("cells", "test", "1,2,3", "2,8", "3x", MAIN),
    ("cells", "test", "1,2,3", "2,8", "2x,4x,3x", "li_l1,tp_magnitude"),
)
QUICK = {
    "train_images": 256,
    "eval_images": 200,
    "ref_epochs": 1,
    "ref_lr": 0.05,
    "extra_epochs": [2],
    "budgets": ["flops/2x"],
}


def csv(text, kind=str):
    """`"2x, 4x"` -> `["2x", "4x"]` (`kind` applied to each item)."""
    return [kind(t.strip()) for t in text.split(",") if t.strip()]


def reference_stem(arch, seed, epochs, lr):
    """The file name (without ending) of a B6 reference."""
    return f"{arch}_seed{seed}_e{epochs}_lr{lr}"


def reference_files(ref_dir, arch, seed, epochs, lr):
    """The weights and info files a finished reference leaves."""
    name = reference_stem(arch, seed, epochs, lr)
    return [
        os.path.join(ref_dir, name + ending)
        for ending in (".weights.h5", ".json")
    ]


def reference_lock(ref_dir, arch, seed, epochs, lr):
    """The lock file a process training that reference holds."""
    name = reference_stem(arch, seed, epochs, lr)
    return os.path.join(ref_dir, name + ".lock")


@contextlib.contextmanager
def exclusive(path):
    """Holds an exclusive lock on the file `path` (created) while the body
    runs and yields True; yields False, holding nothing, when another
    process holds it. The lock goes with the process that holds it."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def training_reference(ref_dir, arch, seed, epochs, lr):
    """Holds the reference's lock while its body trains it; yields False
    (and holds nothing) when another process holds it."""
    os.makedirs(ref_dir, exist_ok=True)
    with exclusive(reference_lock(ref_dir, arch, seed, epochs, lr)) as mine:
        yield mine


def reference_busy(ref_dir, arch, seed, epochs, lr):
    """Whether another process is training that reference now."""
    if not os.path.exists(reference_lock(ref_dir, arch, seed, epochs, lr)):
        return False
    with training_reference(ref_dir, arch, seed, epochs, lr) as mine:
        return not mine


def reference_finished(ref_dir, arch, seed, epochs, lr):
    return all(
        os.path.exists(f)
        for f in reference_files(ref_dir, arch, seed, epochs, lr)
    )


def unchosen(methods, budgets, extra_epochs):
    """`method|budget|E` of the test cells that would run `default` only
    because nothing was chosen yet, for methods that have variants."""
    missing = []
    for name in methods:
        method = name.partition(":")[0]
        if len(VARIANTS.get(method, ())) < 2:
            continue
        for epochs in extra_epochs:
            for budget in budgets:
                _, source = chosen_variant(method, budget, epochs)
                if source.startswith("default"):
                    missing.append(f"{method}|{budget}|{epochs}")
    return missing


def expand_methods(names):
    """`guided:all` -> every variant of `guided`, in `VARIANTS` order."""
    out = []
    for name in names:
        method, _, variant = name.partition(":")
        if variant == "all" and method in VARIANTS:
            out += [f"{method}:{v}" for v in VARIANTS[method]]
        else:
            out.append(name)
    return out


def regularization_epochs(extra_epochs, setting=None):
    """`p` (or `s`) of `E` extra epochs: `setting` (an int, or "most" for
    `E - 1`), by default `E // 2` when `E >= 4`, else 1."""
    if setting == "most":
        return max(1, extra_epochs - 1)
    if setting is not None:
        return min(int(setting), extra_epochs)
    return extra_epochs // 2 if extra_epochs >= 4 else 1


def effective(method, variant, extra_epochs):
    """The settings a cell runs with (regularization epochs resolved)."""
    settings = dict(VARIANTS[method][variant])
    if method in ("guided", "tp_group_sl"):
        settings["regularization_epochs"] = regularization_epochs(
            extra_epochs, settings.get("regularization_epochs")
        )
    else:
        settings["regularization_epochs"] = 0
    return settings


# The exit code of a step that stopped rather than start work it could not
# finish before `--until` (what it had finished is saved).
UNTIL_EXIT = 4


class Deadline(Exception):
    """Raised before work that would end after `--until`."""


def parse_until(text, now=None):
    """`--until`: 'HH:MM' (its next occurrence, local time) or an ISO date
    and time -> POSIX seconds; None for None."""
    if text is None:
        return None
    now = now or datetime.datetime.now()
    try:
        if len(text) <= 5 and ":" in text:
            hour, minute = (int(part) for part in text.split(":"))
            when = now.replace(
                hour=hour, minute=minute, second=0, microsecond=0
            )
            if when <= now:
                when += datetime.timedelta(days=1)
        else:
            when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "--until takes a time of day, 'HH:MM' (its next occurrence), "
            f"or an ISO date and time, '2026-12-07T05:50'. Received: {text!r}"
        ) from None
    return when.timestamp()


def until_argument(text):
    """`parse_until` as an argparse `type`: a bad value is the parser's
    error, with `parse_until`'s message."""
    try:
        return parse_until(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def check_until(until, seconds, what, now=None):
    """Raises `Deadline` when `what`, expected to take `seconds` (None:
    unknown, so it runs unless `until` has passed), would end after
    `until` (None: no limit)."""
    if until is None:
        return
    now = time.time() if now is None else now
    if now + (seconds or 0) > until:
        end = datetime.datetime.fromtimestamp(until).strftime("%H:%M")
        if seconds is None:
            raise Deadline(
                f"{what} has no timed run to estimate it from, and --until "
                f"({end}) passed {now - until:.0f} s ago; not started"
            )
        raise Deadline(
            f"{what} takes about {seconds:.0f} s and would end after "
            f"--until ({end}, {max(until - now, 0):.0f} s from now); not "
            "started"
        )


def chosen_key(method, budget, extra_epochs, chosen):
    """The key of `chosen` (a `CHOSEN`-shaped dict) that holds for the
    cell: `method|budget|E`, `method|budget` or `method`, the most
    specific first; None when none does."""
    for key in (
        f"{method}|{budget}|{extra_epochs}",
        f"{method}|{budget}",
        method,
    ):
        if key in chosen:
            return key
    return None


def chosen_variant(method, budget, extra_epochs):
    """`(variant, source)`: the `CHOSEN` variant for the cell, or
    `"default"` with a note that none was chosen yet."""
    key = chosen_key(method, budget, extra_epochs, CHOSEN)
    if key is not None:
        return CHOSEN[key], f"chosen on the tuning seed ({key})"
    return "default", "default: no variant chosen on the tuning seed yet"


def parse_budget(text):
    """'2x', 'flops/2x', '0.5' or '1/2' -> 'flops/2x'."""
    value = text.strip().removeprefix("flops/")
    try:
        if value.endswith("x"):
            fraction = _fraction(f"1/{value[:-1]}")
        else:
            fraction = _fraction(value)
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            "a budget is how many times fewer FLOPs (2x, 3x, 4x) or the "
            f"fraction kept (0.5, 1/3). Received: {text!r}"
        ) from None
    return _budget_key(fraction)


def budget_fraction(budget):
    """'flops/2x' -> 0.5."""
    return 1 / float(budget[len("flops/") : -1])


def plan_cells(methods, budgets, extra_epochs, seeds, role, log=print):
    """The cells to run, in order (seed, E, budget, method):
    `[(budget, method, variant, seed, E, variant_source)]`.

    Raises:
        ValueError: a test cell on a tuning seed, a tuning cell on another
            seed, an unknown variant, or a test cell of a variant that was
            not chosen.
    """
    if role not in ("tune", "test"):
        raise ValueError(f"role must be 'tune' or 'test'. Received: {role!r}")
    for seed in seeds:
        if role == "test" and seed in TUNE_SEEDS:
            raise ValueError(
                f"seed {seed} chooses the variants (TUNE_SEEDS={TUNE_SEEDS}); "
                "test cells run on other seeds. Pass --seeds 1,2,3."
            )
        if role == "tune" and seed not in TUNE_SEEDS:
            raise ValueError(
                f"tuning runs on TUNE_SEEDS={TUNE_SEEDS} only, so the other "
                f"seeds stay clean for testing. Received: seed {seed}. Pass "
                "--role test, or add the seed to TUNE_SEEDS before any test "
                "cell uses it."
            )
    cells = []
    for seed in seeds:
        for epochs in extra_epochs:
            for budget in budgets:
                for name in methods:
                    method, _, variant = name.partition(":")
                    if method not in VARIANTS:
                        raise ValueError(
                            f"--methods takes {METHODS}, optionally with "
                            f":variant. Received: {name!r}"
                        )
                    if variant and variant not in VARIANTS[method]:
                        raise ValueError(
                            f"{method} has the variants "
                            f"{sorted(VARIANTS[method])}. Received: {name!r}"
                        )
                    source = "asked for (tuning)"
                    if role == "test":
                        chosen, source = chosen_variant(method, budget, epochs)
                        if variant and variant != chosen:
                            raise ValueError(
                                f"a test cell runs only the variant chosen "
                                f"on the tuning seed: {method} at {budget}, "
                                f"E={epochs} runs {chosen!r} ({source}). "
                                f"Received: {name!r}. Pass --methods "
                                f"{method}, or run the variant with --role "
                                "tune on the tuning seed."
                            )
                        variant = chosen
                    variant = variant or "default"
                    twin = _same_as_earlier(method, variant, epochs)
                    if role == "tune" and twin:
                        log(
                            f"{method}:{variant} at E={epochs} is the same "
                            f"as {method}:{twin}; not run"
                        )
                        continue
                    cells.append(
                        (budget, method, variant, seed, epochs, source)
                    )
    return cells


def _same_as_earlier(method, variant, extra_epochs):
    """The first variant of `method` (in `VARIANTS`' order) before
    `variant` that runs with the same settings at `extra_epochs` (e.g.
    guided's `p1` and `default` at E=2, where both regularize one epoch),
    or None."""
    mine = effective(method, variant, extra_epochs)
    for other in VARIANTS[method]:
        if other == variant:
            return None
        if effective(method, other, extra_epochs) == mine:
            return other
    return None


def _fraction(text):
    """'0.5' or '1/3' -> a float in (0, 1]."""
    top, _, bottom = text.partition("/")
    value = float(top) / float(bottom or 1)
    if not 0 < value <= 1:
        raise ValueError(f"Received: {text!r}")
    return value


def _budget_key(fraction):
    """`flops/2x` for 1/2; `flops/2.12x` for a fraction that is not 1/n."""
    times = 1 / fraction
    if abs(times - round(times)) < 1e-3:
        return f"flops/{round(times)}x"
    return f"flops/{times:.2f}x"
