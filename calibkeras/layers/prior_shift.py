"""PriorShift: adds the log of an explicit, adjustable class prior to balanced logits."""

import keras
import numpy as np
from keras import ops

from calibkeras.priors import prior_from_counts, resolve_prior
from calibkeras.utils.checks import _show, check_class_counts, check_positive_int, check_prior


@keras.saving.register_keras_serializable(package="calibkeras")
class PriorShift(keras.layers.Layer):
    """Adds ``log(prior)`` to balanced logits: ``outputs = logits + log(prior)``.

    A classifier's *balanced* logits ``f(x)`` are those for which
    ``softmax(f(x) + log(pi))`` is the posterior under class prior ``pi``. This layer
    holds ``log(pi)`` as a non-trainable weight, so the prior a model predicts under is
    an explicit number that survives saving and export, and can be changed after
    training without rebuilding the model: to ``"uniform"`` (every class equally
    likely: balanced decisions), back to the ``"training"`` prior, or to a prior
    estimated on deployment data (:func:`calibkeras.calibration.estimate_prior`).

    Args:
        prior: the prior to start with: ``"uniform"`` (default), ``"training"`` (needs
            ``class_counts``), or a sequence of ``K`` positive probabilities summing to 1.
        class_counts: optional sequence of ``K`` positive training class counts; the
            training prior is ``class_counts / sum(class_counts)``.
        num_classes: number of classes ``K``; needed only when neither ``prior`` nor
            ``class_counts`` nor ``class_names`` gives it.
        class_names: optional sequence of ``K`` class names (kept in the config so they
            travel with the model).
        **kwargs: base layer arguments (``name``, ``dtype``: default ``"float32"``
            whatever the global dtype policy).

    Input shape:
        ``(..., K)`` balanced logits.

    Output shape:
        Same as the input.

    Example:
        >>> shift = calibkeras.layers.PriorShift(class_counts=[300, 120, 15])
        >>> shift.set_prior("training")     # posteriors under the training prior
        >>> shift.set_prior([0.2, 0.3, 0.5])  # or a known deployment prior

    References:
        Menon et al. (2021), Long-tail learning via logit adjustment.
        Saerens et al. (2002), Adjusting the outputs of a classifier to new a priori
        probabilities.
    """

    def __init__(
        self, prior="uniform", class_counts=None, num_classes=None, class_names=None, **kwargs
    ):
        # Calibration, priors and decisions compute in float32 whatever the dtype
        # policy: under mixed_float16 a 1e-12 clip is 0 and logits lose digits.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        sizes = {}
        if class_counts is not None:
            class_counts = check_class_counts(class_counts).tolist()
            sizes["class_counts"] = len(class_counts)
        if class_names is not None:
            class_names = [str(name) for name in class_names]
            sizes["class_names"] = len(class_names)
        if num_classes is not None:
            sizes["num_classes"] = check_positive_int(num_classes, "num_classes")
        if not isinstance(prior, str) and not isinstance(prior, dict):
            prior = check_prior(prior).tolist()
            sizes["prior"] = len(prior)
        if len(set(sizes.values())) > 1:
            raise ValueError(
                "PriorShift arguments disagree on the number of classes: "
                + ", ".join(f"`{k}` gives {v}" for k, v in sizes.items())
            )
        if not sizes:
            raise ValueError(
                "PriorShift needs the number of classes: pass `class_counts`, a `prior` "
                "vector, `class_names` or `num_classes`"
            )
        self.prior_argument = prior
        self.class_counts = class_counts
        self.class_names = class_names
        self.num_classes = next(iter(sizes.values()))
        self.log_prior = self.add_weight(
            name="log_prior",
            shape=(self.num_classes,),
            initializer=keras.initializers.Constant(np.log(self._resolve(prior))),
            trainable=False,
        )
        self.built = True

    @property
    def training_prior(self):
        """The training prior (from ``class_counts``) as a NumPy array, or None."""
        if self.class_counts is None:
            return None
        return prior_from_counts(self.class_counts)

    @property
    def prior(self):
        """The current prior as a NumPy float64 array of shape ``(K,)``."""
        log_prior = self.log_prior.numpy().astype(np.float64)
        prior = np.exp(log_prior)
        return prior / prior.sum()

    def _resolve(self, prior):
        return resolve_prior(
            prior, num_classes=self.num_classes, class_names=self.class_names,
            training_prior=self.training_prior,
        )

    def set_prior(self, prior):
        """Sets the prior: ``"uniform"``, ``"training"``, ``{class name: p}`` or ``K`` numbers.

        Any specification of :func:`calibkeras.priors.resolve_prior` that needs no data
        (``"labels"`` and ``"estimate"`` need data: use
        :meth:`calibkeras.models.CalibratedClassifier.set_prior`).

        Works on a built, trained model; nothing is rebuilt and no weight other than
        ``log_prior`` changes.
        """
        self.log_prior.assign(np.log(self._resolve(prior)).astype(self.log_prior.dtype))

    def call(self, inputs):
        if inputs.shape[-1] is not None and inputs.shape[-1] != self.num_classes:
            raise ValueError(
                f"PriorShift '{self.name}' holds a prior over {self.num_classes} classes but "
                f"its input has {inputs.shape[-1]} logits (shape {inputs.shape})"
            )
        return inputs + ops.cast(self.log_prior, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "prior": self.prior_argument,
                "class_counts": self.class_counts,
                "num_classes": self.num_classes,
                "class_names": self.class_names,
            }
        )
        return config


def check_data_classes(model, data, name):
    """Refuses data whose classes are not the model's, in the model's order.

    Label id ``k`` of a ``LabeledDataset`` means ``data.class_names[k]``; output ``k``
    of the model means the ``k``-th class of its PriorShift layer (``class_names``,
    kept from ``build_classifier(class_names=...)``). Every function that combines a
    model with labelled data (the training recipe, the callbacks, the inference
    helpers, the command line) calls this first, so that a validation or test set
    loaded with another class list stops with an error instead of fitting or scoring
    against the wrong classes.

    Data without ``class_names`` (a ``tf.data.Dataset``, arrays) and a model without a
    ``prior_shift`` attribute (not a ``CalibratedClassifier``) cannot be compared and
    pass. A PriorShift layer without
    class names is compared by the number of classes only.

    Args:
        model: a Keras model, normally from ``build_classifier``.
        data: the labelled data (a ``LabeledDataset``), or anything else.
        name: the argument's name, for messages.

    Raises:
        ValueError: naming both class lists (each cut to about 120 characters) when
            they differ in names, order or number.
    """
    data_names = getattr(data, "class_names", None)
    if data_names is None or isinstance(data_names, str):
        return
    shift = getattr(model, "prior_shift", None)
    if not isinstance(shift, PriorShift):
        return
    data_names = [str(class_name) for class_name in data_names]
    fix = (
        "Load the data with the model's classes, e.g. `dataset_from_csv(..., class_names="
        "model.class_names)`, so that label ids mean the same classes"
    )
    if shift.class_names is None:
        if len(data_names) != shift.num_classes:
            raise ValueError(
                f"`{name}` has {len(data_names)} classes {_show(data_names, 120)} but the "
                f"model predicts {shift.num_classes}. {fix}"
            )
        return
    model_names = list(shift.class_names)
    if data_names == model_names:
        return
    if sorted(data_names) == sorted(model_names):
        how = "the same names in another order"
    elif len(data_names) != len(model_names):
        how = f"{len(data_names)} classes against {len(model_names)}"
    else:
        how = "other names"
    shorter = min(len(data_names), len(model_names))
    position = next(
        (k for k in range(shorter) if data_names[k] != model_names[k]), shorter
    )

    def at(names):
        return _show(names[position]) if position < len(names) else "absent"

    first = f"id {position} is {at(data_names)} in `{name}` and {at(model_names)} in the model"
    raise ValueError(
        f"`{name}` has the classes {_show(data_names, 120)} but the model's classes are "
        f"{_show(model_names, 120)} ({how}; {first}). {fix}"
    )
