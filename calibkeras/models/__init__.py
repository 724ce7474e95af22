"""Models: the calibrated EfficientNet classifier, its backbones and training recipe."""

from calibkeras.models.backbones import BACKBONES, build_backbone
from calibkeras.models.calibrated_classifier import CalibratedClassifier
from calibkeras.models.classifier import (
    build_classifier,
    load_classifier,
    logits_model,  # noqa: F401  (deprecated; not in __all__)
    probabilities_model,
)
from calibkeras.models.efficientnet_lite import (
    EfficientNetLite0,
    EfficientNetLite1,
    EfficientNetLite2,
    imagenet_weights_path,
)
from calibkeras.models.inference import posterior_probabilities, predict_balanced_logits
from calibkeras.models.training import (
    CALIBRATIONS,
    LOSSES,
    fine_tune,
    fit_calibrated,
    make_loss,
    remove_training_prior,
    train_head,
    unfreeze_top,
)

__all__ = [
    "BACKBONES",
    "CALIBRATIONS",
    "CalibratedClassifier",
    "EfficientNetLite0",
    "EfficientNetLite1",
    "EfficientNetLite2",
    "LOSSES",
    "build_backbone",
    "build_classifier",
    "fine_tune",
    "fit_calibrated",
    "imagenet_weights_path",
    "load_classifier",
    "make_loss",
    "posterior_probabilities",
    "predict_balanced_logits",
    "probabilities_model",
    "remove_training_prior",
    "train_head",
    "unfreeze_top",
]
