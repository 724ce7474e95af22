"""verify_saved_model: checks an export through TF Serving's loader against Keras."""

import json

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from calibkeras.calibration.decisions import extended_cost_matrix
from calibkeras.conformal.scores import conformity_scores
from calibkeras.data.preprocessing import decode_images
from calibkeras.export.saved_model import SET_SEPARATOR, SIGNATURE_NAMES, variable_value
from calibkeras.export.serving_session import ServingSession, find_version_dir
from calibkeras.models.calibrated_classifier import check_calibrated_classifier
from calibkeras.priors import adjust_to_prior


class SavedModelVerificationError(AssertionError):
    """An export's signatures disagree with the reference; ``.report`` has the details."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


def _strings(values):
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.ravel(values)]


def _metadata_reader(path):
    """``value(name)``: the first variable of the export's metadata collection ``name``
    (None when the export has none), read from the SavedModel's checkpoint.

    The collections are attributes of the exported object; the checkpoint's object
    graph maps ``root.<name>[0]`` to its checkpoint key, so no function of the export
    is loaded (``tf.saved_model.load`` would rebuild every signature, seconds).
    """
    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))

    def child(node, name):
        return next((c.node_id for c in graph.nodes[node].children if c.local_name == name),
                    None)

    def value(name):
        collection = child(0, name)
        first = None if collection is None else child(collection, "0")
        if first is None:
            return None
        keys = [a.checkpoint_key for a in graph.nodes[first].attributes
                if a.name == "VARIABLE_VALUE"]
        return reader.get_tensor(keys[0]) if keys else None

    return value


def read_export_metadata(export_dir):
    """Reads the settings an export carries (from its checkpoint, in milliseconds).

    Args:
        export_dir: a version folder or a base folder (highest version taken).

    Returns:
        dict with ``class_names`` (list of K str), ``image_size`` ``(H, W)``,
        ``temperature`` (float), ``log_prior`` (float32 ``(K,)``, as exported),
        ``prior`` (float64 ``(K,)``, normalised), ``cost_matrix`` (float32 ``(A, K)``),
        ``abstain_cost`` (float or None), ``action_names`` (list of A(+1) str),
        ``max_image_pixels`` (int; None for exports of calibkeras 0.1, which have no
        limit), ``calibration_scale`` and ``calibration_bias`` (float32 ``(K,)``; for
        0.1 exports ``1 / T`` and 0), ``training_log_prior`` (float64 ``(K,)``) and
        ``estimate_dirichlet`` (float) of the ``estimate_prior`` signatures (None for
        exports without them), ``prediction_set_thresholds`` (float32 ``(K,)``) and
        ``prediction_set`` (dict: ``score``, ``alpha``, ``mode``, ``penalty``,
        ``k_reg``) of the ``predict_set`` signatures (None for exports without them)
        and ``path`` (str, the version folder).
    """
    path = find_version_dir(export_dir)
    value = _metadata_reader(path)

    log_prior = value("deployment_log_prior").astype(np.float32)
    prior = np.exp(log_prior.astype(np.float64) - log_prior.max())
    abstain_cost = value("abstain_cost")
    temperature = float(np.exp(value("log_temperature")))
    num_classes = log_prior.shape[0]
    scale = value("calibration_scale")
    bias = value("calibration_bias")
    training_log_prior = value("training_log_prior")
    dirichlet = value("estimate_dirichlet")
    set_thresholds = value("prediction_set_thresholds")
    set_config = value("prediction_set_config")
    return {
        "path": str(path),
        "class_names": _strings(value("class_names")),
        "image_size": tuple(int(v) for v in value("image_size")),
        "temperature": temperature,
        "calibration_scale": (np.full(num_classes, 1 / temperature, np.float32)
                              if scale is None else scale.astype(np.float32)),
        "calibration_bias": (np.zeros(num_classes, np.float32)
                             if bias is None else bias.astype(np.float32)),
        "training_log_prior": (None if training_log_prior is None
                               else training_log_prior.astype(np.float64)),
        "estimate_dirichlet": None if dirichlet is None else float(dirichlet),
        "prediction_set_thresholds": (None if set_thresholds is None
                                      else set_thresholds.astype(np.float32)),
        "prediction_set": (None if set_config is None
                           else json.loads(_strings(set_config)[0])),
        "log_prior": log_prior,
        "prior": prior / prior.sum(),
        "cost_matrix": value("cost_matrix").astype(np.float32),
        "abstain_cost": None if abstain_cost is None else float(abstain_cost),
        "action_names": _strings(value("action_names")),
        "max_image_pixels": (
            None if value("max_image_pixels") is None else int(value("max_image_pixels"))
        ),
    }


def _reference_estimate(probs, prior, metadata):
    """``(prior, probabilities)``: NumPy EM on the posteriors ``probs`` (under the
    exported deployment ``prior``), moved to the training prior first, with the export's
    Dirichlet concentration and stopping rule."""
    from calibkeras.export.saved_model import EM_MAX_ITER, EM_TOL
    from calibkeras.priors import adjust_to_prior, estimate_prior

    training_prior = np.exp(metadata["training_log_prior"])
    under_training = adjust_to_prior(probs, prior, training_prior)
    estimate = estimate_prior(under_training, training_prior,
                              dirichlet=metadata["estimate_dirichlet"], tol=EM_TOL,
                              max_iter=EM_MAX_ITER)
    return estimate.prior, adjust_to_prior(probs, prior, estimate.prior)


def _check_estimate(checker, outputs, prior, probabilities):
    checker.close("prior", outputs["prior"], prior)
    checker.close("probabilities", outputs["probabilities"], probabilities)
    checker.close("log_prior vs prior", np.exp(outputs["log_prior"]), outputs["prior"])
    if not bool(outputs["converged"]):
        checker.failures.append(f"EM did not converge in {int(outputs['iterations'])} steps")


def _check_sets(checker, served, balanced_probs, metadata):
    """The served sets against the exported thresholds applied to the balanced
    posteriors. An entry may go either way (float32 in the graph) when its score is
    within ``atol`` of its threshold, or, for the ranked scores (APS, RAPS), when
    another class's probability is within ``atol`` of its own: the two may then rank
    in either order, and the mass ranked above the class differs by a whole
    probability (ties of classes whose fitted scale is 0 are exact)."""
    settings = metadata["prediction_set"]
    scores = np.asarray(conformity_scores(
        balanced_probs, score=settings["score"], u=0.0, penalty=settings["penalty"],
        k_reg=settings["k_reg"],
    ))
    thresholds = metadata["prediction_set_thresholds"].astype(np.float64)
    in_set = np.asarray(served["in_set"]).astype(bool)
    if in_set.shape != scores.shape:
        checker.failures.append(f"in_set: shape {in_set.shape}, expected {scores.shape}")
        return
    with np.errstate(invalid="ignore"):  # inf - inf
        clear = ~(np.abs(scores - thresholds) <= checker.atol)
    if settings["score"] != "lac":
        probs = np.asarray(balanced_probs, dtype=np.float64)
        order = np.argsort(probs, axis=1)
        close = np.diff(np.take_along_axis(probs, order, axis=1), axis=1) <= checker.atol
        tied = np.zeros(probs.shape, dtype=bool)  # in sorted order: a neighbour is close
        tied[:, 1:] |= close
        tied[:, :-1] |= close
        np.put_along_axis(tied, order, tied.copy(), axis=1)
        clear &= ~tied
    wrong = np.argwhere(clear & (in_set != (scores <= thresholds)))
    if wrong.size:
        checker.failures.append(f"in_set: entries {wrong[:5].tolist()} differ from the "
                                "thresholds applied to the balanced posteriors")
    checker.equal("set_size", np.asarray(served["set_size"]).tolist(),
                  in_set.sum(axis=1).tolist())
    names = metadata["class_names"]
    checker.equal("set_names", _strings(served["set_names"]),
                  [SET_SEPARATOR.join(n for n, k in zip(names, row, strict=True) if k)
                   for row in in_set])


def _encode_png(images):
    pixels = np.clip(np.round(images), 0, 255).astype(np.uint8)
    return np.array([tf.io.encode_png(image).numpy() for image in pixels], dtype=object)


class _Checker:
    """Collects max-abs differences and failures of one signature."""

    def __init__(self, atol):
        self.atol = atol
        self.max_abs_diff = 0.0
        self.failures = []

    def close(self, what, served, reference):
        served = np.asarray(served, dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        if served.shape != reference.shape:
            self.failures.append(
                f"{what}: shape {served.shape}, expected {reference.shape}"
            )
            return
        diff = float(np.max(np.abs(served - reference))) if served.size else 0.0
        self.max_abs_diff = max(self.max_abs_diff, diff)
        if not diff <= self.atol:
            self.failures.append(f"{what}: max abs diff {diff:.3g} > atol {self.atol:g}")

    def optimal(self, what, chosen, scores, maximise):
        """Every chosen index is the best score, up to ties within atol."""
        chosen = np.asarray(chosen).astype(np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        if chosen.shape != scores.shape[:1] or np.any(chosen < 0) or np.any(
            chosen >= scores.shape[1]
        ):
            self.failures.append(f"{what}: ids {chosen.tolist()} do not fit {scores.shape}")
            return
        picked = scores[np.arange(len(chosen)), chosen]
        best = scores.max(axis=1) if maximise else scores.min(axis=1)
        gap = (best - picked) if maximise else (picked - best)
        wrong = np.flatnonzero(gap > self.atol)
        if wrong.size:
            self.failures.append(
                f"{what}: rows {wrong.tolist()} chose {chosen[wrong].tolist()}, not the best"
            )

    def equal(self, what, served, expected):
        if list(served) != list(expected):
            self.failures.append(f"{what}: {list(served)} != expected {list(expected)}")

    def report(self):
        return {"max_abs_diff": self.max_abs_diff, "ok": not self.failures,
                "failures": list(self.failures)}


def _check_class_outputs(checker, served, probs, class_names):
    checker.close("probabilities", served["probabilities"], probs)
    checker.close("confidence", served["confidence"], probs.max(axis=1))
    checker.optimal("classes", served["classes"], probs, maximise=True)
    classes = np.asarray(served["classes"]).astype(np.int64)
    if classes.size and classes.min() >= 0 and classes.max() < len(class_names):
        checker.equal("class_names", _strings(served["class_names"]),
                      [class_names[c] for c in classes])


def _check_decisions(checker, served, probs, costs, action_names=None):
    checker.close("probabilities", served["probabilities"], probs)
    expected_cost = probs @ np.asarray(costs, dtype=np.float64).T
    checker.close("expected_cost", served["expected_cost"], expected_cost)
    checker.optimal("decision", served["decision"], expected_cost, maximise=False)
    decisions = np.asarray(served["decision"]).astype(np.int64)
    if action_names is not None and decisions.size and decisions.max() < len(action_names):
        checker.equal("decision_names", _strings(served["decision_names"]),
                      [action_names[d] for d in decisions])


def verify_saved_model(export_dir, model=None, sample_images=None, atol=1e-5,
                       num_samples=4, seed=0):
    """Checks every signature of an export, loaded as TF Serving loads it.

    Loads the SavedModel with the TF1 loader (``tf.compat.v1.saved_model.loader.load``
    on tag ``"serve"`` in a ``tf.compat.v1.Session``, see :class:`ServingSession`),
    runs each signature by its SignatureDef tensor names on sample images, and compares
    the outputs with references computed in Keras:

    * ``serving_default``, ``decide``: ``softmax(a * f(x) + b + log(prior))`` from the
      model's calibrated logits and the deployment prior stored in the export;
      ``expected_cost`` = probabilities @ C.T with the stored costs; classes and
      decisions must be optimal (ties within ``atol`` accepted); names must match.
    * ``predict_image_bytes``: the sample images encoded as PNG, against the Keras
      model on :func:`calibkeras.data.preprocessing.decode_images` of the same bytes.
    * ``decide_with_costs``: with the model's *current* ``log_prior`` and the stored
      costs (abstain as an extra row) in the request, probabilities must equal
      the model's calibrated probabilities under its own current prior.

    Without ``model`` the signatures are checked against each other instead (the
    ``serving_default`` probabilities are the reference).

    Args:
        export_dir: a version folder, or a base folder (its highest version is taken).
        model: optional, the Keras classifier that was exported.
        sample_images: optional float32 ``(N, H, W, 3)`` images in 0..255; default
            ``num_samples`` uniform random images (seeded by ``seed``).
        atol: absolute tolerance on probabilities and expected costs (default 1e-5).
        num_samples: number of random images when ``sample_images`` is None.
        seed: seed of the random images.

    Returns:
        dict: ``path`` (the version folder), ``reference`` (``"keras model"`` or
        ``"self-consistency"``), ``num_samples``, ``ok`` (bool) and ``signatures``:
        ``{name: {"max_abs_diff": float, "ok": bool, "failures": [str]}}``; checks of
        the stored settings against the model are under ``"metadata"``.

    Raises:
        SavedModelVerificationError: (an ``AssertionError``) listing every failure; its
            ``report`` attribute holds the dict above.
        FileNotFoundError: no SavedModel at ``export_dir``.

    Example:
        >>> report = verify_saved_model("saved_models/food10", model)
        >>> report["signatures"]["decide"]["max_abs_diff"] < 1e-5
        True
    """
    metadata = read_export_metadata(export_dir)
    path = metadata["path"]
    height, width = metadata["image_size"]
    if sample_images is None:
        rng = np.random.default_rng(seed)
        images = rng.uniform(0, 255, size=(num_samples, height, width, 3)).astype(np.float32)
    else:
        images = np.asarray(sample_images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1:] != (height, width, 3) or not len(images):
            raise ValueError(
                f"`sample_images` must have shape (N, {height}, {width}, 3) with N >= 1 to "
                f"match the export, got {images.shape}"
            )
    encoded = _encode_png(images)
    decoded = decode_images(tf.constant(encoded), (height, width)).numpy()
    log_prior = metadata["log_prior"]
    costs = extended_cost_matrix(metadata["cost_matrix"], metadata["abstain_cost"])

    meta_checker = _Checker(atol)
    if model is not None:
        model = check_calibrated_classifier(model)
        meta_checker.equal("image_size", [model.image_size], [(height, width)])
        meta_checker.equal("class_names", metadata["class_names"], model.class_names)
        request_log_prior = variable_value(model.prior_shift.log_prior).astype(np.float32)
        meta_checker.close("temperature", [metadata["temperature"]], [model.temperature])
        meta_checker.close("calibration_scale", metadata["calibration_scale"],
                           variable_value(model.calibration.scale))
        meta_checker.close("calibration_bias", metadata["calibration_bias"],
                           variable_value(model.calibration.bias))
    else:
        request_log_prior = log_prior

    requests = {
        "serving_default": {"images": images},
        "predict_image_bytes": {"image_bytes": encoded},
        "decide": {"images": images},
        "decide_with_costs": {
            "images": images,
            "cost_matrix": costs.astype(np.float32),
            "log_prior": request_log_prior,
        },
        "estimate_prior": {"images": images},
        "estimate_prior_image_bytes": {"image_bytes": encoded},
        "predict_set": {"images": images},
        "predict_set_image_bytes": {"image_bytes": encoded},
    }
    served, run_failures = {}, {}
    with ServingSession(path) as session:
        for name, inputs in requests.items():
            try:
                served[name] = session.run(name, **inputs)
            except (KeyError, tf.errors.OpError) as error:
                run_failures[name] = f"did not run: {type(error).__name__}: {error}"
        if model is None and "serving_default" in served:
            served["serving_default@decoded"] = session.run("serving_default", images=decoded)

    # References (computed outside the TF1 session's graph).
    if model is not None:
        # One pass through the network per image set; the priors are applied after.
        logits = np.asarray(model.balanced_logits(images))
        probs = model.probabilities(logits, metadata["prior"])
        probs_decoded = model.probabilities(np.asarray(model.balanced_logits(decoded)),
                                            metadata["prior"])
        probs_request = model.probabilities(logits)  # the model's own current prior
    elif "serving_default" in served:
        probs = np.asarray(served["serving_default"]["probabilities"], dtype=np.float64)
        probs_decoded = np.asarray(
            served["serving_default@decoded"]["probabilities"], dtype=np.float64
        )
        probs_request = probs
    else:
        probs = probs_decoded = probs_request = None
    uniform = np.full(len(log_prior), 1.0 / len(log_prior))
    estimates = {}
    if probs is not None and metadata["training_log_prior"] is not None:
        estimates = {
            "estimate_prior": _reference_estimate(probs, metadata["prior"], metadata),
            "estimate_prior_image_bytes": _reference_estimate(probs_decoded,
                                                              metadata["prior"], metadata),
        }

    signatures = {}
    if meta_checker.failures or model is not None:
        signatures["metadata"] = meta_checker.report()
    for name in SIGNATURE_NAMES:
        checker = _Checker(atol)
        if name in run_failures:
            checker.failures.append(run_failures[name])
        elif probs is None:
            checker.failures.append("no reference: serving_default did not run")
        elif name == "serving_default":
            _check_class_outputs(checker, served[name], probs, metadata["class_names"])
        elif name == "predict_image_bytes":
            _check_class_outputs(checker, served[name], probs_decoded, metadata["class_names"])
        elif name == "decide":
            _check_decisions(checker, served[name], probs, costs, metadata["action_names"])
        elif name in ("estimate_prior", "estimate_prior_image_bytes"):
            _check_estimate(checker, served[name], *estimates[name])
        elif name in ("predict_set", "predict_set_image_bytes"):
            source = probs if name == "predict_set" else probs_decoded
            _check_sets(checker, served[name],
                        adjust_to_prior(source, metadata["prior"], uniform), metadata)
        else:
            _check_decisions(checker, served[name], probs_request, costs)
        signatures[name] = checker.report()

    report = {
        "path": path,
        "reference": "keras model" if model is not None else "self-consistency",
        "num_samples": int(len(images)),
        "ok": all(entry["ok"] for entry in signatures.values()),
        "signatures": signatures,
    }
    if not report["ok"]:
        lines = [
            f"  {name}: {failure}"
            for name, entry in signatures.items()
            for failure in entry["failures"]
        ]
        raise SavedModelVerificationError(
            f"SavedModel {path} failed verification ({report['reference']}, atol {atol:g}):\n"
            + "\n".join(lines),
            report,
        )
    return report
