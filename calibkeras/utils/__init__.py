"""Internal helpers shared across calibkeras: argument checks (``checks``), writing
files and folders without losing work (``staging``) and iterating labelled data in
batches (``batches``). Nothing here is public API."""

__all__ = []
