"""Names that moved or left a public namespace, served for a while with a warning."""

import functools
import importlib
import warnings

import numpy as np


def deprecated_names(module_name, moved):
    """A module ``__getattr__`` (PEP 562) serving moved names with a DeprecationWarning.

    Args:
        module_name: the namespace the names left (``__name__`` of the package).
        moved: ``{old name: "new.module:attribute"}``; the attribute is imported only
            when the old name is used.

    Example:
        >>> __getattr__ = deprecated_names(
        ...     __name__, {"decode_rgb": "calibkeras.data.preprocessing:decode_rgb"})
    """

    def __getattr__(name):
        if name not in moved:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        module, attribute = moved[name].split(":")
        warnings.warn(
            f"{module_name}.{name} is deprecated and will be removed; use "
            f"{module}.{attribute}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), attribute)

    return __getattr__


def _label_shaped(value):
    shape = np.shape(value)
    return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)


def labels_first(position=0):
    """Decorator for functions that take ``(labels, probs)`` at ``position``.

    calibkeras 0.1 took ``(probs, labels)``; a call in that order (2-D probabilities
    before 1-D labels, which cannot be mistaken for the new order) still works for now,
    swapped, with a DeprecationWarning.
    """

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            first, second = position, position + 1
            if (len(args) > second and _label_shaped(args[second])
                    and not _label_shaped(args[first])):
                warnings.warn(
                    f"{function.__name__}(probs, labels) is calibkeras 0.1's argument order; "
                    f"pass (labels, probs), as scikit-learn and Keras do. The old order will "
                    "stop working",
                    DeprecationWarning,
                    stacklevel=2,
                )
                args = (*args[:first], args[second], args[first], *args[second + 1:])
            return function(*args, **kwargs)

        return wrapper

    return decorate
