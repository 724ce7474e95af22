"""PriorShift: adds the log of an explicit, adjustable class prior to balanced logits."""

import keras
import numpy as np
from keras import ops

from calibkeras._checks import check_class_counts, check_positive_int, check_prior
from calibkeras.priors import prior_from_counts

#: The named priors that :meth:`PriorShift.set_prior` accepts besides a vector.
NAMED_PRIORS = ("uniform", "training")


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
        **kwargs: base layer arguments (``name``, ``dtype``).

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
        if not isinstance(prior, str):
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
        log_prior = ops.convert_to_numpy(self.log_prior).astype(np.float64)
        prior = np.exp(log_prior)
        return prior / prior.sum()

    def _resolve(self, prior):
        if isinstance(prior, str):
            if prior == "uniform":
                return np.full(self.num_classes, 1.0 / self.num_classes)
            if prior == "training":
                if self.class_counts is None:
                    raise ValueError(
                        "`prior` 'training' needs the training class counts: build the "
                        "layer with `class_counts=`"
                    )
                return self.training_prior
            raise ValueError(
                f"`prior` must be 'uniform', 'training' or a vector of {self.num_classes} "
                f"probabilities, got {prior!r}"
            )
        return check_prior(prior, self.num_classes)

    def set_prior(self, prior):
        """Sets the prior: ``"uniform"``, ``"training"`` or ``K`` probabilities.

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
