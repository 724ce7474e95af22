"""The calibkeras version (one place; setup.cfg reads it)."""

__version__ = "0.2.0.dev0"
