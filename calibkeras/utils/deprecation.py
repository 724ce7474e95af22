"""Names that moved or left a public namespace, served for a while with a warning."""

import importlib
import warnings


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
