"""Bundled data sets: food10 (ten Food-101 classes, long-tailed train/val, balanced test)."""

from calibkeras.datasets.food10 import (
    FOOD10_CLASS_NAMES,
    FOOD10_OPTIONS,
    FOOD10_SPLITS,
    food10_csv,
    food10_dir,
    load_food10,
)

__all__ = [
    "FOOD10_CLASS_NAMES",
    "FOOD10_OPTIONS",
    "FOOD10_SPLITS",
    "food10_csv",
    "food10_dir",
    "load_food10",
]
