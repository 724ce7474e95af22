"""CalibratedClassifier: backbone -> balanced logits -> calibration -> prior shift."""

import copy
import warnings

import keras
import numpy as np
from keras import ops
from scipy.special import softmax

from calibkeras.layers import LogitCalibration, PredictionSet, PriorShift, TemperatureScaling
from calibkeras.layers.prior_shift import check_data_classes
from calibkeras.priors import PRIOR_ALIASES, no_training_prior, resolve_prior
from calibkeras.utils.checks import check_positive_int


@keras.saving.register_keras_serializable(package="calibkeras")
class CalibratedClassifier(keras.Model):
    """An image classifier whose probabilities are calibrated and whose prior is explicit.

    A task model in the keras-hub style: a functional ``keras.Model`` that owns its
    parts as attributes, so training, calibration, export and reports reach them by
    attribute, never by layer name::

        images [B, H, W, 3], float32 RGB in 0..255 ("images")
          -> backbone: feature map; normalises its input itself; called with
             training=False, so BatchNorm stays in inference mode
          -> global average pooling ("avg_pool") -> dropout ("dropout")
          -> head, Dense in float32: balanced logits f(x) ("logits")
          -> calibration, LogitCalibration: a * f(x) + b ("calibration"; per-class
             scale and bias, the identity until fitted; not trained by model.fit)
          -> prior_shift, PriorShift: + log(prior) ("prior_shift")

    Beside the output, :attr:`prediction_set` (a :class:`calibkeras.layers.PredictionSet`
    on the calibrated logits, outside the functional graph) holds conformal prediction
    sets: fit them with :meth:`fit_prediction_sets`, read them with
    :meth:`prediction_sets`; the SavedModel serves them (``predict_set``).

    The output is the logits under the deployment prior; their softmax are the
    calibrated probabilities. Train with
    :class:`calibkeras.losses.LogitAdjustedCrossentropy` while the prior is uniform (the
    head then learns balanced logits), fit the calibration with :meth:`calibrate`
    (temperature, bias-corrected or vector scaling, chosen by cross-validation by
    default), and choose the deployment prior with :meth:`set_prior`. Logits,
    calibration and prior stay float32 whatever the dtype policy.
    :func:`calibkeras.models.build_classifier` builds one from a backbone name.

    Args:
        backbone: a ``keras.Model`` from ``(H, W, 3)`` images in 0..255 (static ``H``
            and ``W``) to a 4-D feature map (pooled by the model);
            :func:`calibkeras.models.build_backbone` makes one. Any functional
            ``keras.Model`` with one input of fixed shape and a 2-D ``(batch, features)``
            output works too (no pooling; e.g. features computed elsewhere), but only
            image classifiers export to TF Serving.
        num_classes: number of classes ``K`` (>= 2).
        dropout: dropout rate before the head, in [0, 1).
        class_counts: optional ``K`` training class counts (``"training"`` prior).
        class_names: optional ``K`` class names; they travel with the model and its
            SavedModel.
        prior: the starting deployment prior (default ``"uniform"``), any data-free
            specification of :func:`calibkeras.priors.resolve_prior`.
        calibration_method: the method the calibration weights came from (kept in
            the config; :meth:`calibrate` sets it).
        source_prior: the calibration's :attr:`source_prior` (kept in the config;
            :meth:`calibrate` sets it); default None: the training prior.
        prediction_set: the settings of :attr:`prediction_set` (a dict of its
            ``score``, ``alpha``, ``mode``, ``penalty``, ``k_reg``; kept in the config,
            :meth:`fit_prediction_sets` sets them); default: not fitted.
        **kwargs: ``keras.Model`` arguments (``name``).

    Example:
        >>> backbone = build_backbone("efficientnet_lite0", "imagenet", (160, 160, 3))
        >>> model = CalibratedClassifier(backbone, 10, class_counts=counts)
        >>> model.compile("adam", loss=LogitAdjustedCrossentropy(counts))
        >>> model.fit(train_ds, epochs=5)
        >>> model.calibrate(val_ds)   # temperature, bias-corrected or vector scaling
        >>> model.set_prior("estimate", data=deployment_ds)
    """

    def __init__(
        self,
        backbone,
        num_classes,
        *,
        dropout=0.2,
        class_counts=None,
        class_names=None,
        prior="uniform",
        calibration_method="none",
        source_prior=None,
        prediction_set=None,
        **kwargs,
    ):
        num_classes = check_num_classes(num_classes)
        if isinstance(dropout, bool) or not 0 <= float(dropout) < 1:
            raise ValueError(f"`dropout` must be a number in [0, 1), got {dropout!r}")
        input_shape, pooled = _backbone_shapes(backbone)
        kwargs.setdefault("name", "calibkeras_classifier")

        # === Layers ===
        self.backbone = backbone
        self.pooling = keras.layers.GlobalAveragePooling2D(name="avg_pool") if pooled else None
        self.head_dropout = keras.layers.Dropout(float(dropout), name="dropout")
        # float32 whatever the dtype policy: the balanced logits feed the calibration.
        self.head = keras.layers.Dense(num_classes, name="logits", dtype="float32")
        self.calibration = LogitCalibration(
            num_classes, method=calibration_method, source_prior=source_prior,
            name="calibration", trainable=False,
        )
        self.prior_shift = PriorShift(
            prior=prior, class_counts=class_counts, num_classes=num_classes,
            class_names=class_names, name="prior_shift",
        )
        self.prediction_set = PredictionSet(
            num_classes, **(prediction_set or {}), name="prediction_set", trainable=False
        )

        # === Functional model ===
        images = keras.Input(input_shape, name="images")
        logits = self._head_logits(images, training=None)
        super().__init__(images, self.prior_shift(self.calibration(logits)), **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.dropout = float(dropout)

    def _head_logits(self, images, training):
        features = self.backbone(images, training=False)
        if self.pooling is not None:
            features = self.pooling(features)
        return self.head(self.head_dropout(features, training=training))

    @property
    def image_size(self):
        """``(height, width)`` of the input images; ValueError if the input is no image."""
        shape = tuple(self.inputs[0].shape[1:])
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(
                f"{self.name!r} takes inputs of shape {shape}, not RGB images "
                "(height, width, 3); only image classifiers have an image size"
            )
        return shape[:2]

    @property
    def class_names(self):
        """The ``K`` class names (``"0"`` ... ``"K-1"`` when none were given)."""
        names = self.prior_shift.class_names
        return list(names) if names else [str(k) for k in range(self.num_classes)]

    @property
    def temperature(self):
        """The calibration's temperature ``1 / mean(scale)`` (float; T of a temperature fit)."""
        return self.calibration.temperature

    def balanced_logits(self, images):
        """Balanced logits ``f(x)`` of a batch of images (inference mode).

        Runs the backbone as it is: callers that may see an empty batch guard it (the
        export with ``tf.cond``, ``batch_predictor`` by padding), since oneDNN refuses
        zero-row inputs on AVX-512 CPUs.
        """
        return self._head_logits(images, training=False)

    def balanced_logits_model(self):
        """A ``keras.Model`` sharing these weights, from images to balanced logits ``f(x)``.

        For batched prediction (``predict``, a tf.distribute strategy); one pass through
        the backbone serves every calibration and prior afterwards
        (:meth:`probabilities`).
        """
        return keras.Model(self.inputs, self.head.output, name=f"{self.name}_balanced_logits")

    def predict_balanced_logits(self, data, progress=False, batch_size=32):
        """``(logits, labels)``: balanced logits and integer labels of labelled data.

        Args:
            data: a ``LabeledDataset``, a ``tf.data.Dataset`` of ``(images, labels)``
                batches or a tuple of arrays.
            progress: show a progress bar.
            batch_size: batch size for array input.

        Raises:
            ValueError: a ``LabeledDataset`` whose class list is not the model's.
        """
        from calibkeras.utils.batches import predict_with_labels

        check_data_classes(self, data, "data")
        return predict_with_labels(self.balanced_logits_model(), data, batch_size,
                                   progress=progress)

    def resolve_prior(self, prior, *, logits=None, labels=None, name="prior"):
        """The ``K`` probabilities of a prior specification, for this model.

        ``"training"`` is the model's training prior; ``"estimate"`` runs EM on the
        calibrated posteriors of ``logits`` (balanced logits) under the training prior;
        ``"labels"`` counts ``labels``; see :func:`calibkeras.priors.resolve_prior`.
        """
        if isinstance(prior, str) and prior == "estimate" and logits is not None:
            self._check_training_prior(prior, name)
            return self.estimate_prior(logits).prior
        return resolve_prior(
            prior, num_classes=self.num_classes, class_names=self.class_names,
            training_prior=self.prior_shift.training_prior, labels=labels, name=name,
        )

    def estimate_prior(self, logits, **options):
        """EM for the class prior of images from their balanced ``logits``.

        :func:`calibkeras.priors.estimate_prior` on the calibrated posteriors under the
        training prior; ``options`` are its keyword options (``dirichlet``,
        ``interval``, ...). Returns its :class:`calibkeras.priors.PriorEstimate`.
        """
        from calibkeras.priors import estimate_prior

        self._check_training_prior("estimate", "prior")
        training = self.prior_shift.training_prior
        return estimate_prior(self.probabilities(logits, training), training, **options)

    @property
    def source_prior(self):
        """The prior of "no label shift": the ``(K,)`` mean calibrated posterior of the
        calibration data (set by :meth:`calibrate`), else the training prior (None
        for a model without class counts)."""
        source = self.calibration.source_prior
        if source is not None:
            return np.asarray(source, dtype=np.float64)
        return self.prior_shift.training_prior

    def _check_training_prior(self, prior, name):
        if self.prior_shift.training_prior is None:
            raise no_training_prior(prior, name)

    def probabilities(self, logits, prior=None, *, calibrated=True):
        """``softmax(a * f + b + log(prior))`` of balanced logits, as float64 NumPy.

        Args:
            logits: ``(N, K)`` balanced logits (:meth:`predict_balanced_logits`).
            prior: a prior specification (default: the model's current prior).
            calibrated: apply the fitted calibration ``a * f + b`` (default True;
                False is the identity).
        """
        logits = ops.convert_to_tensor(np.asarray(logits, dtype="float32"))
        if calibrated:
            logits = self.calibration(logits)
        if prior is None:
            log_prior = self.prior_shift.log_prior.numpy().astype(np.float64)
        else:
            log_prior = np.log(self.resolve_prior(prior))
        return softmax(ops.convert_to_numpy(logits).astype(np.float64) + log_prior, axis=1)

    def set_prior(self, prior, *, data=None):
        """Sets the deployment prior; returns it as a ``(K,)`` float64 array.

        Args:
            prior: ``"uniform"``, ``"training"``, ``"estimate"`` (EM on ``data``,
                labels not needed), ``"labels"`` (the label frequencies of ``data``),
                ``{class name: probability}`` or ``K`` probabilities.
            data: for ``"estimate"`` images, with or without labels (an array, a
                ``tf.data.Dataset`` of batches, a ``LabeledDataset``); for ``"labels"``
                labelled data, as for :meth:`predict_balanced_logits`.
        """
        logits = labels = None
        named = PRIOR_ALIASES.get(prior, prior) if isinstance(prior, str) else None
        if named in ("estimate", "labels"):
            if data is None:
                raise ValueError(f"`prior` {prior!r} needs `data`: the images to use")
            if named == "estimate":
                from calibkeras.utils.batches import predict_inputs

                self._check_training_prior(prior, "prior")
                logits = predict_inputs(self.balanced_logits_model(), data)
            else:  # the labels alone: no pass through the network
                from calibkeras.utils.batches import labels_of

                check_data_classes(self, data, "data")
                labels = labels_of(data)
        vector = self.resolve_prior(prior, logits=logits, labels=labels)
        self.prior_shift.set_prior(vector)
        return vector

    def calibrate(self, data, *, method="auto", prior=None, batch_size=32, **options):
        """Fits the calibration on labelled validation data; returns the fit.

        The scale and bias of :func:`calibkeras.calibration.fit_calibration` on the
        balanced logits ``f(x)`` of ``data``: the exact minimiser of the NLL of
        ``softmax(a * f(x) + b + log(prior))``, fitted under the prior of the
        validation data, are written into :attr:`calibration`, with the bias made
        relative to the prior the fit implies for the validation data, their mean
        calibrated posterior ``s`` (Alexandari et al. 2020, section 3.2): the layer's
        bias is ``b + log(prior) - log(s)``, so the model under the prior ``s``
        reproduces the fit on the validation data, and under any other prior ``pi`` it
        gives the fit's posteriors re-weighted by ``pi / s``. With freely fitted biases
        ``s`` is the validation label frequencies under ``prior`` and nothing changes;
        for temperature scaling and shrunk biases it differs (BENCHMARKS.md, label-shift
        adaptation: on the four CIFAR records EM from ``s`` beats EM from the label
        frequencies after the default calibration). ``s`` is kept as
        :attr:`source_prior`.

        Args:
            data: labelled data, as for :meth:`predict_balanced_logits`.
            method: ``"auto"`` (default: chosen by cross-validated NLL, preferring the
                simpler within one standard error), ``"temperature"``,
                ``"bias_corrected"`` or ``"vector"``.
            prior: the prior of the validation data: None (default) the training
                prior (the current prior for a model without class counts);
                ``"labels"`` its label frequencies; or any other specification.
            batch_size: batch size for array input.
            **options: further options of ``fit_calibration`` (``n_folds``, ``l2``,
                ``seed``, ...).

        Returns:
            The :class:`calibkeras.calibration.CalibrationFit`.
        """
        from calibkeras.calibration import fit_calibration

        logits, labels = self.predict_balanced_logits(data, batch_size=batch_size)
        if prior is None:
            training = self.prior_shift.training_prior  # None without class counts
            fitting_prior = self.prior_shift.prior if training is None else training
        else:
            fitting_prior = self.resolve_prior(prior, logits=logits, labels=labels)
        fit = fit_calibration(logits, labels, method=method, prior=fitting_prior, **options)
        # Alexandari et al. (2020), section 3.2: the prior the calibrated model implies
        # for its validation data is their mean calibrated posterior. It equals the
        # fitting prior's label frequencies when the biases are fitted freely, not for
        # temperature scaling or shrunk biases; the bias is made relative to it, so
        # that every prior set later, and EM, adapt from the prior the fit implies.
        source = fit.posterior_mean
        self.calibration.set_calibration(
            fit.scale, fit.bias + np.log(fitting_prior) - np.log(source), fit.method,
            source_prior=source,
        )
        if self.prediction_set.fitted:
            warnings.warn(
                "the prediction sets were fitted on the previous calibration and are now "
                "reset (every class in every set); fit them again with "
                "model.fit_prediction_sets(calibration_data)",
                UserWarning, stacklevel=2,
            )
            self.prediction_set.reset()
        return fit

    def prediction_sets(self, logits):
        """``(N, K)`` booleans: the conformal prediction sets of balanced ``logits``.

        Computed by :attr:`prediction_set` on the calibrated logits, as served; every
        class is in every set until :meth:`fit_prediction_sets` has run.
        """
        logits = ops.convert_to_tensor(np.asarray(logits, dtype="float32"))
        return ops.convert_to_numpy(self.prediction_set(self.calibration(logits)))

    def fit_prediction_sets(self, data, *, alpha=0.1, by_class=True, score="lac",
                            prior=None, batch_size=32, **options):
        """Fits conformal prediction sets on labelled calibration data; returns the fit.

        :func:`calibkeras.conformal.fit_conformal` on the calibrated balanced
        posteriors (uniform prior) of ``data``, whose thresholds are written into
        :attr:`prediction_set`. Fit the calibration first (:meth:`calibrate`): the
        sets hold for the calibration they were fitted on, and a new calibration resets
        them. The data should be exchangeable with the deployment images (for the
        calibration and the sets together, held-out validation data; reusing the
        calibration's own data is the usual compromise with little data).

        Args:
            data: labelled data, as for :meth:`predict_balanced_logits`.
            alpha: miscoverage level in (0, 1) (default 0.1: 90 % coverage).
            by_class: class-conditional thresholds (default), valid for every class
                under any prior; False: one marginal threshold, weighted for ``prior``.
            score: ``"lac"`` (default), ``"aps"`` or ``"raps"``.
            prior: for ``by_class=False``, the deployment prior to weight for:
                ``"model"`` (the model's current deployment prior) or any
                specification of :meth:`resolve_prior` (``"uniform"``, a vector, ...);
                None: the calibration data's own frequencies.
            batch_size: batch size for array input.
            **options: ``penalty``, ``k_reg`` of ``fit_conformal`` (RAPS).

        Returns:
            The :class:`calibkeras.conformal.ConformalFit`.
        """
        from calibkeras.conformal import fit_conformal

        logits, labels = self.predict_balanced_logits(data, batch_size=batch_size)
        if isinstance(prior, str) and prior == "model":
            prior = self.prior_shift.prior
        elif prior is not None:
            prior = self.resolve_prior(prior, logits=logits, labels=labels)
        fit = fit_conformal(self.probabilities(logits, "uniform"), labels, alpha,
                            by_class=by_class, score=score, prior=prior, **options)
        self.prediction_set.set_fit(fit)
        return fit

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "class_counts": self.prior_shift.class_counts,
            "class_names": self.prior_shift.class_names,
            "prior": self.prior_shift.prior_argument,
            "calibration_method": self.calibration.method,
            "source_prior": self.calibration.source_prior,
            "prediction_set": {
                key: getattr(self.prediction_set, key)
                for key in ("score", "alpha", "mode", "penalty", "k_reg")
            },
        }

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    @classmethod
    def from_functional(cls, model):
        """The CalibratedClassifier of a plain functional classifier saved by calibkeras 0.1.

        calibkeras 0.1 saved ``keras.Model(images, logits)`` with top-level layers named
        ``backbone``, ``dropout``, ``logits``, ``temperature`` and ``prior_shift``; this
        builds the task model around the same backbone and copies the head,
        temperature and prior. :func:`calibkeras.models.load_classifier` calls it.

        Raises:
            ValueError: naming the missing layer when ``model`` has not that layout.
        """
        parts = {}
        for name, kind in (("backbone", keras.Model), ("dropout", keras.layers.Dropout),
                           ("logits", keras.layers.Dense), ("temperature", TemperatureScaling),
                           ("prior_shift", PriorShift)):
            try:
                parts[name] = model.get_layer(name)
            except ValueError:
                parts[name] = None
            if not isinstance(parts[name], kind):
                raise ValueError(
                    f"`model` {model.name!r} is not a calibkeras classifier: it needs a "
                    f"top-level {kind.__name__} layer named {name!r}; build one with "
                    "calibkeras.models.build_classifier"
                )
        shift = parts["prior_shift"]
        classifier = cls(
            parts["backbone"], shift.num_classes, dropout=parts["dropout"].rate,
            class_counts=shift.class_counts, class_names=shift.class_names,
            prior=shift.prior_argument, name=model.name,
        )
        classifier.head.set_weights(parts["logits"].get_weights())
        classifier.calibration.set_temperature(parts["temperature"].temperature)
        classifier.prior_shift.set_prior(shift.prior)
        return classifier


def check_calibrated_classifier(model, name="model"):
    """Returns ``model`` if it is a :class:`CalibratedClassifier`, else a ValueError."""
    if isinstance(model, CalibratedClassifier):
        return model
    raise ValueError(
        f"`{name}` must be a calibkeras CalibratedClassifier (from build_classifier or "
        f"load_classifier), got {type(model).__name__} {getattr(model, 'name', '')!r}; "
        "a model saved by calibkeras 0.1 becomes one with load_classifier(path) or "
        "CalibratedClassifier.from_functional(model)"
    )


def check_num_classes(num_classes):
    """``num_classes`` as an int >= 2, else a ValueError naming it."""
    num_classes = check_positive_int(num_classes, "num_classes")
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be at least 2, got {num_classes}")
    return num_classes


def _backbone_shapes(backbone):
    """``(input shape, pooled)`` of a backbone ``keras.Model``, checked.

    ``pooled`` is True for a 4-D feature map output (global average pooling follows),
    False for a 2-D ``(batch, features)`` output.
    """
    try:
        inputs, outputs = backbone.inputs, backbone.outputs
    except AttributeError:
        inputs = outputs = None
    if not isinstance(backbone, keras.Model) or not inputs or len(inputs) != 1:
        raise ValueError(
            "`backbone` must be a functional keras.Model with one input (see "
            f"calibkeras.models.build_backbone), got {type(backbone).__name__}"
        )
    shape = tuple(inputs[0].shape[1:])
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(
            f"`backbone` must take inputs of a fixed shape, such as images (height, width, "
            f"3) with a fixed height and width; got {shape}"
        )
    ranks = [len(output.shape) for output in outputs]
    if ranks not in ([4], [2]):
        raise ValueError(
            "`backbone` must have one output: a 4-D feature map (batch, height, width, "
            f"channels) or 2-D features (batch, features); got shapes "
            f"{[tuple(output.shape) for output in outputs]}"
        )
    return shape, ranks == [4]
