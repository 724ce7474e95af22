"""export_saved_model: a TF Serving SavedModel with prediction and decision signatures."""

import json
import os
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from calibkeras.data.preprocessing import DEFAULT_MAX_IMAGE_PIXELS, decode_images
from calibkeras.layers.cost_sensitive_decision import CostSensitiveDecision
from calibkeras.metrics.functional import action_expected_costs
from calibkeras.models.calibrated_classifier import check_calibrated_classifier
from calibkeras.priors import DEFAULT_DIRICHLET, MIN_PRIOR, PriorEstimate
from calibkeras.utils.checks import (
    check_abstain_cost,
    check_cost_matrix,
    check_dirichlet,
    check_positive_int,
)
from calibkeras.utils.staging import check_output_dir, staged_directory

#: The signatures every export holds, in the order they are added.
SIGNATURE_NAMES = (
    "serving_default",
    "predict_image_bytes",
    "decide",
    "decide_with_costs",
    "estimate_prior",
    "estimate_prior_image_bytes",
    "predict_set",
    "predict_set_image_bytes",
)

#: EM in the ``estimate_prior`` signatures stops when no prior entry moves more than
#: this in a step, or after ``EM_MAX_ITER`` steps.
EM_TOL = 1e-10
EM_MAX_ITER = 10_000

#: Names of the variable collections that carry the export's settings (read them back
#: with :func:`calibkeras.export.read_export_metadata`).
METADATA_COLLECTIONS = (
    "class_names",
    "image_size",
    "log_temperature",
    "deployment_log_prior",
    "cost_matrix",
    "abstain_cost",
    "action_names",
    "max_image_pixels",
    "calibration_scale",
    "calibration_bias",
    "training_log_prior",
    "estimate_dirichlet",
    "prediction_set_thresholds",
    "prediction_set_config",
)

#: Separator of the class names in ``set_names`` (as the CLI's ``prediction_set``).
SET_SEPARATOR = "|"


def variable_value(variable):
    """A Keras (TensorFlow-backend) variable's value as a NumPy array.

    ``variable.value.numpy()`` rather than ``np.asarray(variable)``, which makes NumPy 2
    warn about Keras' ``__array__`` (no ``copy`` keyword).
    """
    return np.asarray(variable.value.numpy())


def _assert(condition, message, shape):
    """An assert op whose error reads ``message`` followed by the offending shape."""
    return tf.debugging.Assert(condition, [message, "got shape", shape], summarize=8)


def _checked(tensor, name, rank, fixed_dims, problems):
    """Checks rank and fixed sizes of a request tensor in the graph.

    Args:
        tensor: the request tensor (unknown rank in the signature).
        name: its input name, for the messages.
        rank: the rank it must have.
        fixed_dims: ``{axis: size}`` sizes it must have.
        problems: ``{axis: message}`` the message for each fixed axis.

    Returns:
        The tensor, with the checks as control dependencies and its static shape set.
    """
    shape = tf.shape(tensor, out_type=tf.int64)
    rank_ok = tf.equal(tf.size(shape), rank)
    # Padding keeps the indexing valid whatever rank arrives; a dim check only counts
    # when the rank is right, so a wrong rank gives the rank message alone.
    padded = tf.concat([shape, tf.fill([rank], tf.constant(-1, tf.int64))], axis=0)
    checks = [_assert(rank_ok, f"`{name}` must have rank {rank}: {problems['rank']}", shape)]
    for axis, size in fixed_dims.items():
        size_ok = tf.logical_or(tf.logical_not(rank_ok), tf.equal(padded[axis], size))
        checks.append(_assert(size_ok, f"`{name}` {problems[axis]}", shape))
    with tf.control_dependencies(checks):
        tensor = tf.identity(tensor)
    # set_shape only refines the static shape; the asserts above do the runtime check.
    # (tf.ensure_shape would not do: Grappler evaluates it while specialising the
    # function for the fed shapes, before the asserts run, so its terse message wins.)
    tensor.set_shape([fixed_dims.get(axis) for axis in range(rank)])
    return tensor


def _checked_images(images, image_size):
    """Checks shape and values of an ``images`` request: finite pixels in 0..255."""
    height, width = image_size
    expected = f"[batch, {height}, {width}, 3] (float32 RGB pixels in 0..255)"
    images = _checked(
        images,
        "images",
        4,
        {1: height, 2: width, 3: 3},
        {
            "rank": f"shape {expected}",
            1: f"must be {height}x{width} pixels (the input size of the model), shape {expected}; "
            "send encoded images to the predict_image_bytes signature to have them resized",
            2: f"must be {height}x{width} pixels (the input size of the model), shape {expected}; "
            "send encoded images to the predict_image_bytes signature to have them resized",
            3: f"must have 3 channels (RGB) in its last axis, shape {expected}",
        },
    )
    shape = tf.shape(images, out_type=tf.int64)
    finite = tf.math.is_finite(images)
    checks = [
        _assert(tf.reduce_all(finite), "`images` must be finite (no NaN or inf pixels)", shape),
        _assert(
            tf.reduce_all(tf.logical_or(tf.logical_and(images >= 0, images <= 255),
                                        tf.logical_not(finite))),
            "`images` must hold RGB pixels in 0..255 (not scaled to 0..1 or -1..1: the model "
            "rescales them itself)",
            shape,
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(images)


def _checked_image_bytes(image_bytes):
    return _checked(
        image_bytes,
        "image_bytes",
        1,
        {},
        {"rank": "a 1-D batch [batch] of encoded JPEG/PNG/GIF/BMP files (raw bytes)"},
    )


def _checked_cost_matrix(cost_matrix, num_classes):
    expected = f"[num_actions, {num_classes}] (num_actions >= 2, one column per class)"
    cost_matrix = _checked(
        cost_matrix,
        "cost_matrix",
        2,
        {1: num_classes},
        {"rank": f"shape {expected}", 1: f"must have {num_classes} columns, shape {expected}"},
    )
    shape = tf.shape(cost_matrix, out_type=tf.int64)
    finite = tf.math.is_finite(cost_matrix)
    checks = [
        _assert(
            tf.greater_equal(shape[0], 2),
            f"`cost_matrix` must have at least 2 rows (actions), shape {expected}",
            shape,
        ),
        _assert(tf.reduce_all(finite), "`cost_matrix` must be finite (no NaN or inf)", shape),
        _assert(
            tf.reduce_all(tf.logical_or(cost_matrix >= 0, tf.logical_not(finite))),
            "`cost_matrix` must be non-negative (costs, not gains)",
            shape,
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(cost_matrix)


def _checked_log_prior(log_prior, num_classes):
    expected = f"[{num_classes}] (the log of a class prior; a constant shift is ignored)"
    log_prior = _checked(
        log_prior,
        "log_prior",
        1,
        {0: num_classes},
        {"rank": f"shape {expected}", 0: f"must have {num_classes} entries, shape {expected}"},
    )
    check = _assert(
        tf.reduce_all(tf.math.is_finite(log_prior)),
        "`log_prior` must be finite (every class needs a positive prior)",
        tf.shape(log_prior, out_type=tf.int64),
    )
    with tf.control_dependencies([check]):
        return tf.identity(log_prior)


def em_prior(probs, train_prior, dirichlet, tol=EM_TOL, max_iter=EM_MAX_ITER):
    """EM for the class prior of ``probs`` inside a graph (float64; see estimate_prior).

    ``probs`` ``(N, K)`` are posteriors under ``train_prior`` ``(K,)``; the M-step is
    the MAP one under a symmetric Dirichlet(``dirichlet``) prior, as in
    :func:`calibkeras.priors.estimate_prior`, and the result is floored at
    ``MIN_PRIOR`` and renormalised the same way. Returns ``(prior, iterations,
    converged)``.
    """
    size = tf.cast(tf.shape(probs)[0], tf.float64)
    extra = tf.cast(dirichlet, tf.float64) - 1.0
    num_classes = tf.cast(tf.shape(probs)[1], tf.float64)

    def body(iteration, prior, _):
        ratio = prior / train_prior
        totals = tf.linalg.matvec(probs, ratio)
        counts = ratio * tf.linalg.matvec(probs, 1.0 / totals, transpose_a=True)
        new = (counts + extra) / (size + num_classes * extra)
        return iteration + 1, new, tf.reduce_max(tf.abs(new - prior))

    iterations, prior, change = tf.while_loop(
        lambda iteration, _, change: tf.logical_and(iteration < max_iter, change >= tol),
        body,
        (tf.constant(0), train_prior, tf.constant(np.inf, tf.float64)),
    )
    prior = tf.maximum(prior, MIN_PRIOR)
    return prior / tf.reduce_sum(prior), iterations, change < tol


def _deployment_log_prior(model, prior):
    """The ``(K,)`` float32 log prior the exported signatures predict under."""
    if prior is None:
        return variable_value(model.prior_shift.log_prior).astype(np.float32)
    if isinstance(prior, PriorEstimate):
        prior = prior.prior
    # Resolved, not set: the caller's model is untouched.
    return np.log(model.resolve_prior(prior)).astype(np.float32)


def export_saved_model(
    model,
    export_dir,
    version=1,
    cost_matrix=None,
    abstain_cost=None,
    prior=None,
    action_names=None,
    max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
    estimate_dirichlet=DEFAULT_DIRICHLET,
    overwrite=False,
    verbose=False,
):
    """Exports a calibkeras classifier as a SavedModel that TF Serving serves as it is.

    Writes ``export_dir/<version>/`` (TF Serving's layout: it serves the highest
    numeric version folder) with eight signatures. Every input has an unknown shape in
    the SignatureDef and is checked inside the graph, so a bad request fails with an
    ``InvalidArgumentError`` that says what is wrong, whichever client sends it.

    * ``serving_default``: ``images`` float32 ``[batch, H, W, 3]``, RGB pixels in
      0..255 -> ``probabilities`` float32 ``[batch, K]``, ``classes`` int32 ``[batch]``
      (argmax), ``class_names`` string ``[batch]``, ``confidence`` float32 ``[batch]``
      (the largest probability).
    * ``predict_image_bytes``: ``image_bytes`` string ``[batch]``, encoded
      JPEG/PNG/GIF/BMP files (TF Serving's REST API base64-decodes ``{"b64": ...}``
      itself) -> the same outputs. Images are decoded and resized by
      :func:`calibkeras.data.preprocessing.decode_images`, the function training uses.
    * ``decide``: ``images`` -> ``decision`` int32 ``[batch]``, ``decision_names``
      string ``[batch]``, ``expected_cost`` float32 ``[batch, A(+1)]`` and
      ``probabilities``, with the cost matrix, abstain cost and deployment prior fixed
      at export (see :class:`calibkeras.layers.CostSensitiveDecision`).
    * ``decide_with_costs``: ``images``, ``cost_matrix`` float32 ``[A, K]`` and
      ``log_prior`` float32 ``[K]`` from the request -> ``decision``,
      ``expected_cost`` ``[batch, A]``, ``probabilities`` =
      ``softmax(a * f(x) + b + log_prior)``: thresholds and prior change per request,
      without re-exporting. To abstain, add a row whose entries all equal the abstain
      cost. ``log_prior`` may be unnormalised (a constant shift changes nothing).
    * ``estimate_prior``: ``images`` (at least one; a window of deployment traffic) ->
      ``prior`` float32 ``[K]``, the class prior of those images estimated by EM in the
      graph (as :func:`calibkeras.priors.estimate_prior`: MAP under a symmetric
      Dirichlet(``estimate_dirichlet``), starting from the training prior, at most
      ``EM_MAX_ITER`` steps), ``log_prior`` (its log: pass it to
      ``decide_with_costs``), ``probabilities`` ``[batch, K]`` adapted to it,
      ``iterations`` int32 and ``converged`` bool.
    * ``estimate_prior_image_bytes``: ``image_bytes`` -> the same, decoded as in
      ``predict_image_bytes``.
    * ``predict_set``: ``images`` -> the conformal prediction sets of the model's
      ``prediction_set`` layer (fitted with ``model.fit_prediction_sets``): ``in_set``
      bool ``[batch, K]``, ``set_size`` int32 ``[batch]`` and ``set_names`` string
      ``[batch]``, the names of the classes in the set joined by ``"|"``. Computed from
      the calibrated balanced posteriors, so the deployment prior does not change them.
      A model whose sets were never fitted serves every class in every set.
    * ``predict_set_image_bytes``: ``image_bytes`` -> the same, decoded as in
      ``predict_image_bytes``.

    Requests are refused (``InvalidArgumentError``) when ``images`` hold NaN,
    infinite or out-of-range pixels (outside 0..255), and when an element of
    ``image_bytes`` is empty, of another format, truncated, corrupt, or declares more
    than ``max_image_pixels`` pixels in its header (read before anything is decoded);
    the message names the element ("image_bytes[2] could not be decoded: ..."). One
    bad element fails the whole request, as TF Serving does. An empty batch answers
    with empty outputs in the prediction, decision and set signatures and is refused by
    the two ``estimate_prior`` ones, in both cases without running the network.

    Probabilities of the first three signatures are
    ``softmax(a * f(x) + b + log(prior))`` with the per-class scale ``a`` and bias ``b``
    of the model's calibration and the deployment prior chosen by ``prior``. The class
    names, image size, calibration (and its temperature ``1 / mean(a)``), deployment
    prior, cost matrix, abstain cost and action names are stored in the SavedModel; read
    them with :func:`calibkeras.export.read_export_metadata`.

    The export is written to a hidden temporary folder in ``export_dir`` and renamed
    to ``<version>`` at the end, so TF Serving never sees a half-written version.

    Args:
        model: a :class:`calibkeras.models.CalibratedClassifier` (from
            ``build_classifier`` or ``load_classifier``).
        export_dir: the model's base folder (e.g. ``saved_models/food10``); created if
            missing.
        version: positive int, the version folder name (default 1).
        cost_matrix: ``(A, K)`` non-negative finite costs ``C[action, true_class]`` for
            ``decide``; default None, the 0-1 loss ``1 - I`` (``decision`` = argmax).
        abstain_cost: None (default) or a non-negative cost of an extra abstain action
            (decision id ``A``) in ``decide``.
        prior: the deployment prior of the exported signatures: None (default, the
            model's current prior), ``"uniform"``, ``"training"``,
            ``{class name: probability}``, a ``(K,)`` probability vector or a
            :class:`calibkeras.calibration.PriorEstimate`. Applied to the export only;
            the model is not changed.
        action_names: optional ``A`` names of the actions for ``decision_names``;
            default the class names with the default cost matrix, else ``"0"`` ..
            ``"A-1"``; the abstain action is ``"abstain"``.
        estimate_dirichlet: the Dirichlet concentration of the ``estimate_prior``
            signatures' MAP estimate (default ``DEFAULT_DIRICHLET``, as
            ``estimate_prior``); stored in the export.
        max_image_pixels: the largest image, height x width as its header declares
            it, that ``predict_image_bytes`` decodes (default
            ``DEFAULT_MAX_IMAGE_PIXELS``, 50 million); stored in the export.
        overwrite: replace an existing ``export_dir/<version>`` (default False: error);
            only a SavedModel version folder (one holding ``saved_model.pb``) is replaced,
            anything else is refused. The old version is served until the new one is in
            place (see ``calibkeras.utils.staging.staged_directory``).
        verbose: print the endpoints Keras writes (default False).

    Returns:
        str, the path of the version folder written.

    Raises:
        ValueError: a model that breaks the contract, a bad ``cost_matrix`` (NaN/inf,
            negative, not ``(A, K)`` with ``K`` classes), ``abstain_cost``, ``prior``,
            ``action_names`` or ``version``.
        FileExistsError: ``export_dir/<version>`` exists and ``overwrite`` is False, or
            it is not a SavedModel version folder.

    Warns:
        UserWarning: when the model's calibration was never fitted.

    Example:
        >>> path = export_saved_model(model, "saved_models/food10", version=1,
        ...                           cost_matrix=costs, abstain_cost=0.3)
        >>> verify_saved_model("saved_models/food10", model)["ok"]
        True

    References:
        TF Serving REST API: https://www.tensorflow.org/tfx/serving/api_rest
        Elkan (2001), The foundations of cost-sensitive learning. IJCAI.
    """
    model = check_calibrated_classifier(model)
    class_names = model.class_names
    num_classes = len(class_names)
    version = check_positive_int(version, "version")
    max_image_pixels = check_positive_int(max_image_pixels, "max_image_pixels")
    if cost_matrix is None:
        costs = 1.0 - np.eye(num_classes)
        if action_names is None:
            action_names = class_names
    else:
        costs = check_cost_matrix(cost_matrix, num_classes)
    abstain_cost = check_abstain_cost(abstain_cost)
    log_prior = _deployment_log_prior(model, prior)
    decision_layer = CostSensitiveDecision(
        costs, abstain_cost=abstain_cost, action_names=action_names, name="decision"
    )
    if model.calibration.method == "none":
        warnings.warn(
            f"the calibration of {model.name!r} was never fitted, so the exported "
            "probabilities are not calibrated. Fit it on validation data first "
            "(model.calibrate(val_data), or the TemperatureCalibration callback).",
            UserWarning,
            stacklevel=2,
        )
    final = Path(export_dir) / str(version)
    check_output_dir(final, overwrite, argument="export_dir/<version>", layout="saved_model")
    estimate_dirichlet = check_dirichlet(estimate_dirichlet, "estimate_dirichlet")
    archive = _build_archive(model, decision_layer, log_prior, max_image_pixels,
                             estimate_dirichlet)
    with staged_directory(final, overwrite, argument="export_dir/<version>",
                          layout="saved_model") as staging:
        archive.write_out(os.fspath(staging), verbose=verbose)
    return os.fspath(final)


def class_outputs(probabilities, class_names):
    """The outputs of ``serving_default``: probabilities, top class id, name, confidence."""
    classes = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return {
        "probabilities": probabilities,
        "classes": classes,
        "class_names": tf.gather(class_names, classes),
        "confidence": tf.reduce_max(probabilities, axis=-1),
    }


def _build_archive(model, decision_layer, log_prior, max_image_pixels, estimate_dirichlet):
    """The ExportArchive with the eight signatures and the metadata collections."""
    image_size = model.image_size
    num_classes = model.num_classes

    class_names = tf.Variable(model.class_names, dtype=tf.string, trainable=False)
    action_names = tf.Variable(decision_layer.output_action_names, dtype=tf.string,
                               trainable=False)
    deployment_log_prior = tf.Variable(log_prior, dtype=tf.float32, trainable=False)
    image_size_variable = tf.Variable(list(image_size), dtype=tf.int32, trainable=False)
    max_pixels_variable = tf.Variable(max_image_pixels, dtype=tf.int64, trainable=False)
    # Readers of calibkeras 0.1 exports find T here (1 / mean scale); the per-class
    # scale and bias are the calibration_scale and calibration_bias collections.
    log_temperature = tf.Variable(np.log(model.temperature), dtype=tf.float32,
                                  trainable=False)
    # EM starts from (and its posteriors are computed under) the training prior; a
    # model without class counts starts from the uniform prior, which gives the same
    # estimate (the likelihood of a prior does not depend on the reference prior).
    training_prior = model.prior_shift.training_prior
    if training_prior is None:
        training_prior = np.full(num_classes, 1.0 / num_classes)
    training_log_prior = tf.Variable(np.log(training_prior), dtype=tf.float64,
                                     trainable=False)
    dirichlet_variable = tf.Variable(estimate_dirichlet, dtype=tf.float64, trainable=False)
    layer = model.prediction_set
    prediction_set_config = tf.Variable(json.dumps({
        key: getattr(layer, key) for key in ("score", "alpha", "mode", "penalty", "k_reg")
    }), dtype=tf.string, trainable=False)

    # One traced function for the network, called by every signature (each would
    # otherwise trace, and the SavedModel hold, a copy of the whole network).
    @tf.function(input_signature=[tf.TensorSpec([None, *image_size, 3], tf.float32)])
    def calibrated_logits(images):
        return tf.cast(model.calibration(model.balanced_logits(images)), tf.float32)

    # The request checks and the decoding are traced functions too, shared by the
    # signatures that call them: traced once (twice: ExportArchive lists variables outside
    # the save context, which traces again) instead of once per signature.
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)], autograph=False)
    def scaled_logits(images):
        images = _checked_images(images, image_size)
        # The network never runs on an empty batch: oneDNN (TensorFlow's CPU path)
        # rejects zero-row inputs to some kernels on AVX-512 CPUs.
        return tf.cond(
            tf.shape(images)[0] > 0,
            lambda: calibrated_logits(images),
            lambda: tf.zeros([0, num_classes], tf.float32),
        )

    def serving_default(images):
        probabilities = tf.nn.softmax(scaled_logits(images) + deployment_log_prior)
        return class_outputs(probabilities, class_names)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.string)], autograph=False)
    def decoded(image_bytes):
        return decode_images(
            _checked_image_bytes(image_bytes), image_size, max_pixels=max_image_pixels
        )

    def predict_image_bytes(image_bytes):
        return serving_default(decoded(image_bytes))

    def decide(images):
        probabilities = tf.nn.softmax(scaled_logits(images) + deployment_log_prior)
        outputs = decision_layer(probabilities)
        return {
            "decision": outputs["decision"],
            "decision_names": tf.gather(action_names, outputs["decision"]),
            "expected_cost": outputs["expected_cost"],
            "probabilities": probabilities,
        }

    def decide_with_costs(images, cost_matrix, log_prior):
        cost_matrix = _checked_cost_matrix(cost_matrix, num_classes)
        log_prior = _checked_log_prior(log_prior, num_classes)
        probabilities = tf.nn.softmax(scaled_logits(images) + log_prior)
        costs = action_expected_costs(probabilities, cost_matrix)
        return {
            "decision": tf.argmin(costs, axis=-1, output_type=tf.int32),
            "expected_cost": costs,
            "probabilities": probabilities,
        }

    def estimate_prior(images):
        images = _checked_images(images, image_size)
        # Refused before the network runs: no images, no estimate.
        check = _assert(
            tf.shape(images)[0] > 0,
            "`images` must hold at least one image to estimate the prior from (a window "
            "of deployment traffic)",
            tf.shape(images, out_type=tf.int64),
        )
        with tf.control_dependencies([check]):
            logits = tf.cast(calibrated_logits(images), tf.float64)
        train_prior = tf.exp(training_log_prior)
        probs = tf.nn.softmax(logits + training_log_prior)
        prior, iterations, converged = em_prior(probs, train_prior, dirichlet_variable)
        log_prior = tf.math.log(prior)
        return {
            "prior": tf.cast(prior, tf.float32),
            "log_prior": tf.cast(log_prior, tf.float32),
            "probabilities": tf.cast(tf.nn.softmax(logits + log_prior), tf.float32),
            "iterations": iterations,
            "converged": converged,
        }

    def estimate_prior_image_bytes(image_bytes):
        return estimate_prior(decoded(image_bytes))

    def predict_set(images):
        in_set = model.prediction_set(scaled_logits(images))
        names = tf.ragged.boolean_mask(
            tf.broadcast_to(class_names, tf.shape(in_set)), in_set
        )
        return {
            "in_set": in_set,
            "set_size": tf.reduce_sum(tf.cast(in_set, tf.int32), axis=-1),
            "set_names": tf.strings.reduce_join(names, axis=-1, separator=SET_SEPARATOR),
        }

    def predict_set_image_bytes(image_bytes):
        return predict_set(decoded(image_bytes))

    images_spec = tf.TensorSpec(None, tf.float32, name="images")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(decision_layer)
    archive.add_endpoint("serving_default", serving_default, input_signature=[images_spec])
    archive.add_endpoint(
        "predict_image_bytes",
        predict_image_bytes,
        input_signature=[tf.TensorSpec(None, tf.string, name="image_bytes")],
    )
    archive.add_endpoint("decide", decide, input_signature=[images_spec])
    archive.add_endpoint(
        "decide_with_costs",
        decide_with_costs,
        input_signature=[
            images_spec,
            tf.TensorSpec(None, tf.float32, name="cost_matrix"),
            tf.TensorSpec(None, tf.float32, name="log_prior"),
        ],
    )
    archive.add_endpoint("estimate_prior", estimate_prior, input_signature=[images_spec])
    archive.add_endpoint(
        "estimate_prior_image_bytes",
        estimate_prior_image_bytes,
        input_signature=[tf.TensorSpec(None, tf.string, name="image_bytes")],
    )
    archive.add_endpoint("predict_set", predict_set, input_signature=[images_spec])
    archive.add_endpoint(
        "predict_set_image_bytes",
        predict_set_image_bytes,
        input_signature=[tf.TensorSpec(None, tf.string, name="image_bytes")],
    )
    abstain = [] if decision_layer.abstain_cost_weight is None else [
        decision_layer.abstain_cost_weight
    ]
    collections = {
        "class_names": [class_names],
        "image_size": [image_size_variable],
        "log_temperature": [log_temperature],
        "deployment_log_prior": [deployment_log_prior],
        "cost_matrix": [decision_layer.cost_matrix],
        "abstain_cost": abstain,
        "action_names": [action_names],
        "max_image_pixels": [max_pixels_variable],
        "calibration_scale": [model.calibration.scale],
        "calibration_bias": [model.calibration.bias],
        "training_log_prior": [training_log_prior],
        "estimate_dirichlet": [dirichlet_variable],
        "prediction_set_thresholds": [model.prediction_set.thresholds],
        "prediction_set_config": [prediction_set_config],
    }
    for name in METADATA_COLLECTIONS:
        variables = collections[name]
        archive.add_variable_collection(name, variables)
    return archive
