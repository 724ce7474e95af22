"""EfficientNetLite1: the keras.applications-style constructor of EfficientNet-Lite1."""

from calibkeras.models.efficientnet_lite.constructor import (
    build_efficientnet_lite,
    constructor_docstring,
)


def EfficientNetLite1(  # noqa: N802 (named like keras.applications constructors)
    include_top=True, weights="imagenet", input_shape=None, pooling=None, classes=1000,
    input_tensor=None, classifier_activation="softmax", name="efficientnet_lite1",
):
    return build_efficientnet_lite("efficientnet_lite1", include_top, weights, input_shape,
                                   pooling, classes, input_tensor, classifier_activation, name)


EfficientNetLite1.__doc__ = constructor_docstring("efficientnet_lite1")
