"""EfficientNet-Lite0 under its earlier module name: the Lite0 names of the family.

``calibkeras.models.efficientnet_lite0`` was the package of EfficientNet-Lite0 alone; the
network, its weights and the torch-free reader now serve the whole family in
:mod:`calibkeras.models.efficientnet_lite`. This module keeps the names it had, bound
to Lite0: the same constants, and the same functions without a ``variant`` argument.
"""

import functools

from calibkeras.models.efficientnet_lite import architecture
from calibkeras.models.efficientnet_lite.architecture import (
    BN_EPSILON,
    DROP_CONNECT_RATE,
    MIN_SIZE,
    NUM_IMAGENET_CLASSES,
    STEM_FILTERS,
    TOP_FILTERS,
)
from calibkeras.models.efficientnet_lite.efficientnet_lite0 import EfficientNetLite0
from calibkeras.models.efficientnet_lite.weights import imagenet_weights_path

_LITE0 = "efficientnet_lite0"

BLOCKS_ARGS = architecture.blocks_args(_LITE0)
DEFAULT_SIZE = architecture.VARIANTS[_LITE0].default_size
DROPOUT_RATE = architecture.VARIANTS[_LITE0].dropout_rate
block_names = functools.partial(architecture.block_names, _LITE0)
has_only_own_weighted_layers = functools.partial(architecture.has_only_own_weighted_layers,
                                                 _LITE0)
load_weights_by_name = functools.partial(architecture.load_weights_by_name, _LITE0)
weighted_layer_names = functools.partial(architecture.weighted_layer_names, _LITE0)

__all__ = [
    "BLOCKS_ARGS",
    "BN_EPSILON",
    "DEFAULT_SIZE",
    "DROPOUT_RATE",
    "DROP_CONNECT_RATE",
    "EfficientNetLite0",
    "MIN_SIZE",
    "NUM_IMAGENET_CLASSES",
    "STEM_FILTERS",
    "TOP_FILTERS",
    "block_names",
    "has_only_own_weighted_layers",
    "imagenet_weights_path",
    "load_weights_by_name",
    "weighted_layer_names",
]
