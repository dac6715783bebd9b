"""Fine-tuning by knowledge distillation: the pruned model learns from the
trained (unpruned) one.

A pruned model has lost capacity; its teacher still knows the answer on
every training sample, including how confident to be and which classes look
alike. Matching the teacher's softened outputs (Hinton et al., 2015) is the
standard way to recover accuracy after structured pruning, and it costs one
teacher forward pass per batch.

`Distiller` follows the Keras convention of the keras-io knowledge
distillation example: a `keras.Model` subclass whose `call` is the
student's and whose `compute_loss` adds the distillation term, so
`compile`, `fit`, `evaluate`, callbacks and distribution strategies work
as usual. Training the distiller trains the student in place: the model
you save afterwards is the student itself, a plain Keras model.

The teacher is never changed: `Distiller` runs a frozen copy of it (or the
teacher itself when it is already frozen), so the user's model keeps its
`trainable` flags and weights.

Why not `keras.distillation.Distiller`: Keras (>= 3.13) ships one, and
`GuidedPruning` works with it in its default (proximal) mode. This class is
kept because three of its behaviours are not available there:

- Keras' distiller sets `teacher.trainable = False` on the model it is
  given; this one freezes a copy, so the user's model is never changed.
- Keras' loss is the student loss plus the distillation terms only; the
  student's regularization losses (`model.losses`, where a
  `GuidedRegularizer` or `GuidedPruning(mode="penalty")` puts its group
  penalty) are left out, so a penalty would silently do nothing.
  `GuidedPruning(mode="penalty")` refuses that combination with an error.
- One `alpha` and one `temperature`, the two numbers a pruning user tunes,
  instead of a list of loss objects and weights; feature distillation is
  what `keras.distillation.FeatureDistillation` is for.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_guided")
class Distiller(keras.Model):
    """Trains `student` to match `teacher` (knowledge distillation).

    `loss = alpha * student_loss(y, s) + (1 - alpha) * T**2 *
    KL(softmax(t / T) || softmax(s / T))`, with `s` and `t` the student's
    and the teacher's logits and `T` the temperature. `student_loss` is the
    loss given to `compile` (plus the student's regularization losses); it
    is skipped when `alpha=0` or when `fit` gets no labels, so unlabeled
    data can be used too.

    Args:
        student: the `keras.Model` to train (for example the output of
            `keras_guided.prune_model`). It is trained in place.
        teacher: a `keras.Model` with the same inputs and outputs (for
            example the trained model before pruning). It is not changed.
        alpha: non-negative float in `[0, 1]`, weight of the supervised
            loss. Defaults to `0.1`.
        temperature: positive float, the softening temperature. Defaults
            to `4.0`.
        from_logits: whether both models output logits (`True`) or
            probabilities (`False`, e.g. a softmax output layer; their logs
            are used as logits). Defaults to `True`.

    Examples:
        >>> import keras, numpy as np, keras_guided
        >>> teacher = keras.Sequential([keras.Input((8,)),
        ...     keras.layers.Dense(16, activation="relu"),
        ...     keras.layers.Dense(3)])
        >>> student = keras.Sequential([keras.Input((8,)),
        ...     keras.layers.Dense(4, activation="relu"),
        ...     keras.layers.Dense(3)])
        >>> distiller = keras_guided.Distiller(student, teacher)
        >>> distiller.compile(
        ...     "adam",
        ...     keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ...     metrics=["accuracy"])
        >>> x, y = np.ones((16, 8)), np.zeros(16)
        >>> history = distiller.fit(x, y, epochs=1, verbose=0)
        >>> sorted(history.history)
        ['accuracy', 'loss']

    Raises:
        ValueError: for invalid arguments, or models whose outputs do not
            match.

    References:
        Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
        Network", 2015.
    """

    def __init__(
        self,
        student,
        teacher,
        alpha=0.1,
        temperature=4.0,
        from_logits=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, model in (("student", student), ("teacher", teacher)):
            if not isinstance(model, keras.Model):
                raise ValueError(
                    f"`{name}` must be a keras.Model. Received: "
                    f"{name}={type(model).__name__}"
                )
        if student is teacher:
            raise ValueError(
                "`student` and `teacher` must be different models. Pass the "
                "pruned model as student and the trained model as teacher."
            )
        if (
            isinstance(alpha, bool)
            or not isinstance(alpha, (int, float))
            or not 0 <= alpha <= 1
        ):
            raise ValueError(
                f"`alpha` must be a float in [0, 1]. Received: alpha={alpha!r}"
            )
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not temperature > 0
        ):
            raise ValueError(
                "`temperature` must be a positive float. "
                f"Received: temperature={temperature!r}"
            )
        if not isinstance(from_logits, bool):
            raise ValueError(
                "`from_logits` must be True or False. "
                f"Received: from_logits={from_logits!r}"
            )
        _check_outputs(student, teacher)
        self.student = student
        self.teacher = _frozen(teacher)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.from_logits = from_logits

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if y_pred is None:
            y_pred = self(x, training=training)
        teacher_pred = ops.stop_gradient(self.teacher(x, training=False))
        loss = self.temperature**2 * _soft_cross_entropy(
            teacher_pred,
            y_pred,
            self.temperature,
            self.from_logits,
            sample_weight,
        )
        loss = (1.0 - self.alpha) * loss
        if self.alpha > 0 and y is not None:
            supervised = super().compute_loss(
                x=x,
                y=y,
                y_pred=y_pred,
                sample_weight=sample_weight,
                training=training,
            )
            loss = loss + self.alpha * supervised
        return loss

    def get_config(self):
        # The distiller is a training wrapper: save `distiller.student`.
        raise NotImplementedError(
            "A Distiller is not saved: save its student "
            "(`distiller.student.save(...)`), a plain Keras model."
        )


def _soft_cross_entropy(
    teacher, student, temperature, from_logits, sample_weight
):
    """`KL(softmax(t/T) || softmax(s/T))` averaged over the batch (the
    teacher's entropy is a constant, so this is the cross-entropy up to a
    constant with the same gradient)."""
    teacher = ops.cast(teacher, "float32")
    student = ops.cast(student, "float32")
    if not from_logits:
        teacher = ops.log(ops.clip(teacher, 1e-7, 1.0))
        student = ops.log(ops.clip(student, 1e-7, 1.0))
    target = ops.softmax(teacher / temperature, axis=-1)
    log_student = ops.log_softmax(student / temperature, axis=-1)
    log_target = ops.log_softmax(teacher / temperature, axis=-1)
    per_sample = ops.sum(target * (log_target - log_student), axis=-1)
    if sample_weight is not None:
        weight = ops.cast(ops.reshape(sample_weight, (-1,)), "float32")
        per_sample = ops.reshape(per_sample, (-1,)) * weight
        return ops.sum(per_sample) / ops.maximum(ops.sum(weight), 1e-12)
    return ops.mean(per_sample)


def _check_outputs(student, teacher):
    """Same outputs, axis by axis, where both shapes are known: a sequence
    model's `(batch, sequence, vocabulary)` logits leave the sequence axis
    unknown (`None`), which matches any length."""

    def shapes(model):
        outputs = (
            model.outputs
            if getattr(model, "_functional", None)
            or isinstance(model, keras.Sequential)
            or isinstance(getattr(model, "outputs", None), list)
            else None
        )
        if not outputs:
            return None
        return [tuple(o.shape)[1:] for o in outputs]

    def same(a, b):
        return len(a) == len(b) and all(
            x is None or y is None or x == y for x, y in zip(a, b)
        )

    try:
        student_shapes, teacher_shapes = shapes(student), shapes(teacher)
    except (AttributeError, ValueError):
        return  # not built yet: checked when called
    if student_shapes is None or teacher_shapes is None:
        return
    if len(student_shapes) != len(teacher_shapes) or not all(
        same(a, b) for a, b in zip(student_shapes, teacher_shapes)
    ):
        raise ValueError(
            "`student` and `teacher` must have the same outputs (distillation "
            f"matches them). Received: student outputs {student_shapes}, "
            f"teacher outputs {teacher_shapes}."
        )


def _frozen(teacher):
    """A non-trainable copy of `teacher` (the teacher itself when it has no
    trainable weights), so the user's model is never changed.

    The copy is made with `keras.models.clone_model`; a model that clones
    into different weights (a keras-hub task such as `LlamaCausalLM`
    clones into a plain functional model with extra state) is rebuilt as
    its own class from its config instead."""
    if not teacher.trainable_weights:
        return teacher
    errors = []
    for copy_model in (keras.models.clone_model, _from_config):
        try:
            copy = copy_model(teacher)
            copy.set_weights(teacher.get_weights())
        except Exception as error:  # subclassed models cannot be cloned
            errors.append(f"{copy_model.__name__}: {error}")
            continue
        copy.trainable = False
        return copy
    raise ValueError(
        f"Could not copy the teacher '{teacher.name}' to freeze it "
        f"({'; '.join(errors)}). Pass a teacher with "
        "`teacher.trainable = False` (its weights are then used as they "
        "are)."
    ) from None


def _from_config(model):
    return type(model).from_config(model.get_config())


__all__ = ["Distiller"]
