"""Distillation of a causal language model for a budget of tokens.

A pruned decoder (a keras-hub `LlamaCausalLM`, `GPT2CausalLM`, ...) is
recovered by distillation from the model it was cut from. Users of
language models count their training in tokens, not epochs, and a batch of
padded sequences holds fewer tokens than its shape says; so this loop
counts the target tokens that the padding mask keeps and stops at exactly
the budget (the last batch's surplus tokens get zero weight).

It is a small loop over `Distiller.train_on_batch`, not a callback inside
`fit`: `fit` prefetches batches and cannot stop in the middle of one, and
a callback does not see the batches. Each step is Keras' own compiled
train step, so `keras.distribution` (for example `DataParallel`) applies
as in `fit`. The student is trained in place and keeps its class, so
`generate()` and `save_to_preset` work on it afterwards.
"""

import dataclasses
import time

import keras
import numpy as np

from keras_guided.distill._distiller import Distiller


@dataclasses.dataclass(frozen=True)
class DistillReport:
    """What `distill_causal_lm` did.

    Attributes:
        tokens: int, the non-padding target tokens trained on (the budget,
            unless the data ran out first).
        steps: int, the optimizer steps taken.
        seconds: float, wall time of the training loop.
        losses: tuple of floats, the loss of every step (soft-target KL
            plus `alpha` times the language-model loss, both averaged over
            the step's non-padding tokens).
        step_tokens: tuple of ints, the tokens of every step.
    """

    tokens: int
    steps: int
    seconds: float
    losses: tuple
    step_tokens: tuple

    @property
    def tokens_per_second(self):
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def summary(self):
        last = f"{self.losses[-1]:.4f}" if self.losses else "n/a"
        return (
            f"distilled {self.tokens:,} tokens in {self.steps} steps, "
            f"{self.seconds:.1f} s ({self.tokens_per_second:,.0f} tokens/s), "
            f"last loss {last}"
        )


def distill_causal_lm(
    student,
    teacher,
    data,
    *,
    tokens,
    alpha=0.1,
    temperature=2.0,
    optimizer="adam",
    batch_size=8,
    log_every=10,
    verbose=1,
):
    """Trains a causal LM `student` to match `teacher` for `tokens` tokens.

    Per non-padding target token: `loss = alpha * CE(y, s) + (1 - alpha) *
    T**2 * KL(softmax(t / T) || softmax(s / T))` over the vocabulary, with
    `s` and `t` the student's and the teacher's logits, both of shape
    `(batch, sequence, vocabulary)`, averaged over the tokens the padding
    mask keeps (padded positions weigh zero). The loss is
    `keras_guided.Distiller`'s with the language-model loss given, so a
    `GuidedRegularizer` on the student still counts.

    Args:
        student: the keras-hub causal LM to train (for example the output
            of `keras_guided.prune_model(..., uniform_blocks=True)`),
            built with `preprocessor=None` or not: it is called on token
            ids. Trained in place; it keeps its class.
        teacher: the causal LM it was pruned from, with the same
            vocabulary. Not changed (a frozen copy is run, or the teacher
            itself when `teacher.trainable` is already `False`, which
            saves the copy's memory).
        data: token batches, one of:
            a dict `{"token_ids", "padding_mask"}` of arrays `(rows,
            length)`, cut into batches of `batch_size` rows; or an
            iterable (a list, a generator, a `tf.data.Dataset`) of batches,
            each a dict like that (the targets are the next tokens, so a
            batch of length `L` trains `L - 1` positions), or a tuple `(x,
            y)` or `(x, y, sample_weight)` as keras-hub's
            `CausalLMPreprocessor` makes them (`sample_weight` defaults to
            `x["padding_mask"]`). A re-iterable `data` is repeated until
            the budget is reached.
        tokens: positive int, the budget: training stops after this many
            non-padding target tokens.
        alpha: float in `[0, 1]`, weight of the language-model loss.
            Defaults to `0.1`.
        temperature: positive float. Defaults to `2.0`.
        optimizer: a Keras optimizer or its name. Defaults to `"adam"`.
        batch_size: positive int, rows per batch when `data` is a dict.
            Defaults to `8`.
        log_every: positive int, steps per progress line. Defaults to
            `10`.
        verbose: `0` (silent) or `1` (one line per `log_every` steps with
            the tokens seen, the loss and tokens per second). Defaults to
            `1`.

    Returns:
        A `DistillReport` (tokens, steps, seconds, per-step losses).

    Raises:
        ValueError: for invalid arguments, batches without token ids or
            a padding mask, or data with no tokens.

    Examples:
        >>> import keras_hub, numpy as np, keras_guided
        >>> def llama(ffn):
        ...     return keras_hub.models.LlamaCausalLM(
        ...         backbone=keras_hub.models.LlamaBackbone(
        ...             vocabulary_size=64, num_layers=1, num_query_heads=2,
        ...             num_key_value_heads=1, hidden_dim=8,
        ...             intermediate_dim=ffn), preprocessor=None)
        >>> ids = np.random.default_rng(0).integers(1, 64, (8, 9))
        >>> data = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
        >>> report = keras_guided.distill.distill_causal_lm(
        ...     llama(8), llama(16), data, tokens=100, verbose=0)
        >>> report.tokens
        100

    References:
        Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
        Network", 2015; Sreenivas et al., "LLM Pruning and Distillation in
        Practice: The Minitron Approach", 2024.
    """
    _check_int("tokens", tokens)
    _check_int("batch_size", batch_size)
    _check_int("log_every", log_every)
    if verbose not in (0, 1, True, False):
        raise ValueError(
            f"`verbose` must be 0 or 1. Received: verbose={verbose!r}"
        )
    distiller = Distiller(
        student, teacher, alpha=alpha, temperature=temperature
    )
    distiller.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
    )
    seen, losses, step_tokens = 0, [], []
    interval = {"loss": 0.0, "tokens": 0}
    start = time.perf_counter()
    for x, y, weight in _batches(data, batch_size):
        weight = _within_budget(weight, tokens - seen)
        count = int(np.count_nonzero(weight))
        if count == 0:
            continue
        loss = float(distiller.train_on_batch(x, y, sample_weight=weight))
        seen += count
        losses.append(loss)
        step_tokens.append(count)
        interval["loss"] += loss * count
        interval["tokens"] += count
        last = seen >= tokens
        if verbose and (len(losses) % log_every == 0 or last):
            elapsed = time.perf_counter() - start
            print(
                f"tokens {seen:,}/{tokens:,} - "
                f"loss {interval['loss'] / interval['tokens']:.4f} - "
                f"{seen / max(elapsed, 1e-9):,.0f} tokens/s",
                flush=True,
            )
            interval = {"loss": 0.0, "tokens": 0}
        if last:
            break
    if not losses:
        raise ValueError(
            "`data` holds no non-padding target tokens: pass batches whose "
            "`padding_mask` keeps at least two positions per row."
        )
    return DistillReport(
        tokens=seen,
        steps=len(losses),
        seconds=time.perf_counter() - start,
        losses=tuple(losses),
        step_tokens=tuple(step_tokens),
    )


def _check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive int. Received: {name}={value!r}"
        )


def _batches(data, batch_size):
    """`(x, y, sample_weight)` numpy batches, repeating `data` while its
    passes hold target tokens (a one-pass iterator ends after its pass)."""
    if isinstance(data, dict):
        rows = len(np.asarray(data["token_ids"]))
        data = [
            {k: np.asarray(v)[i : i + batch_size] for k, v in data.items()}
            for i in range(0, rows, batch_size)
        ]
    while True:
        empty = True  # a pass without target tokens ends the loop
        for batch in data:
            batch = _as_training_batch(batch)
            empty = empty and not np.any(batch[2])
            yield batch
        if empty or iter(data) is data:
            return


def _as_training_batch(batch):
    if isinstance(batch, dict):
        x = _token_inputs(batch)
        ids, mask = x["token_ids"], x["padding_mask"]
        return (
            {"token_ids": ids[:, :-1], "padding_mask": mask[:, :-1]},
            ids[:, 1:],
            mask[:, 1:].astype("float32"),
        )
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        x = _token_inputs(batch[0])
        y = np.asarray(batch[1])
        weight = batch[2] if len(batch) == 3 else x["padding_mask"]
        return x, y, np.asarray(weight).astype("float32")
    raise ValueError(
        "Each batch must be a dict {'token_ids', 'padding_mask'} or a tuple "
        f"(x, y) or (x, y, sample_weight). Received: {type(batch).__name__}"
    )


def _token_inputs(x):
    if not isinstance(x, dict) or not {"token_ids", "padding_mask"} <= set(x):
        keys = sorted(x) if isinstance(x, dict) else type(x).__name__
        raise ValueError(
            "A causal LM batch needs the inputs {'token_ids', "
            f"'padding_mask'}}. Received: {keys}. Build batches without a "
            "preprocessor, or with keras-hub's CausalLMPreprocessor."
        )
    return {
        "token_ids": np.asarray(x["token_ids"]).astype("int32"),
        "padding_mask": np.asarray(x["padding_mask"]).astype("int32"),
    }


def _within_budget(weight, remaining):
    """`weight` with every token after the first `remaining` kept ones (in
    row-major order) set to zero."""
    kept = weight != 0
    if kept.sum() <= remaining:
        return weight
    order = np.cumsum(kept.reshape(-1)).reshape(kept.shape)
    return np.where(kept & (order <= remaining), weight, 0.0).astype("float32")
