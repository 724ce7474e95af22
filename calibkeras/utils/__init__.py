"""Internal helpers shared across calibkeras: argument checks (``checks``), writing
files and folders without losing work (``staging``), iterating labelled data in
batches (``batches``) and cache-sized row blocks of large matrices (``blocks``).
Nothing here is public API."""

__all__ = []
