"""The EfficientNet-Lite family for Keras 3 (Lite0, Lite1, Lite2), with offline ImageNet weights.

- :mod:`~calibkeras.models.efficientnet_lite.architecture`: the variants
  (:data:`~calibkeras.models.efficientnet_lite.architecture.VARIANTS`: width and depth
  coefficients, image size, dropout), the network of each
  (:func:`~calibkeras.models.efficientnet_lite.architecture.build_network`) and loading a
  ``.weights.h5`` file into it.
- :mod:`~calibkeras.models.efficientnet_lite.weights`: each variant's PyTorch weights
  (:data:`~calibkeras.models.efficientnet_lite.weights.TORCH_WEIGHTS`: package, file,
  SHA-256, cache file names), converting and caching them (it imports ``architecture``
  and ``torch_legacy_reader``).
- :mod:`~calibkeras.models.efficientnet_lite.torch_legacy_reader`: the torch-free reader
  of legacy PyTorch weights files.
- :mod:`~calibkeras.models.efficientnet_lite.constructor`: what the constructors share;
  one module a constructor: ``efficientnet_lite0`` (:func:`EfficientNetLite0`),
  ``efficientnet_lite1``, ``efficientnet_lite2``.

None of those modules imports this package's ``__init__``.
"""

from calibkeras.models.efficientnet_lite.architecture import VARIANTS, LiteVariant
from calibkeras.models.efficientnet_lite.efficientnet_lite0 import EfficientNetLite0
from calibkeras.models.efficientnet_lite.efficientnet_lite1 import EfficientNetLite1
from calibkeras.models.efficientnet_lite.efficientnet_lite2 import EfficientNetLite2
from calibkeras.models.efficientnet_lite.weights import (
    TORCH_WEIGHTS,
    MissingWeightsPackageError,
    TorchWeights,
    imagenet_weights_path,
)

__all__ = [
    "EfficientNetLite0",
    "EfficientNetLite1",
    "EfficientNetLite2",
    "LiteVariant",
    "MissingWeightsPackageError",
    "TORCH_WEIGHTS",
    "TorchWeights",
    "VARIANTS",
    "imagenet_weights_path",
]
