"""ServingSession: runs a SavedModel's signatures the way TF Serving loads them."""

from pathlib import Path

import numpy as np
import tensorflow as tf

#: The MetaGraph tag TF Serving loads.
SERVING_TAG = "serve"


def find_version_dir(export_dir):
    """Returns the SavedModel folder that ``export_dir`` names.

    Args:
        export_dir: a version folder (holds ``saved_model.pb``) or a model's base
            folder with numeric version folders, of which the highest is taken (as TF
            Serving does).

    Returns:
        ``pathlib.Path`` of the version folder.

    Raises:
        FileNotFoundError: when there is no SavedModel there.
    """
    path = Path(export_dir)
    if (path / "saved_model.pb").is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"`export_dir` {str(path)!r} does not exist")
    versions = [
        child
        for child in path.iterdir()
        if child.is_dir() and child.name.isdigit() and (child / "saved_model.pb").is_file()
    ]
    if not versions:
        raise FileNotFoundError(
            f"`export_dir` {str(path)!r} holds no SavedModel: neither a saved_model.pb nor "
            "numeric version folders (1/, 2/, ...) with one"
        )
    return max(versions, key=lambda child: int(child.name))


class ServingSession:
    """A SavedModel loaded with the TF1 loader that TF Serving uses, run by signature.

    Loads ``tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)`` into a
    ``tf.compat.v1.Session`` with its own graph, then feeds and fetches each signature's
    tensors by the names in its SignatureDef, exactly as TF Serving's predict API does.
    Use it as a context manager, or call :meth:`close`.

    Args:
        export_dir: a version folder or a base folder (highest version taken).

    Example:
        >>> with ServingSession("saved_models/food10") as session:
        ...     outputs = session.run("serving_default", images=batch)
        >>> outputs["probabilities"].shape
        (8, 10)
    """

    def __init__(self, export_dir):
        self.export_dir = export_dir
        self.path = find_version_dir(export_dir)
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")  # the TF1 loader is deprecated in Python, not in TF Serving
        try:
            with self._graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(
                    self._session, [SERVING_TAG], str(self.path)
                )
        except BaseException:
            self._session.close()
            raise
        finally:
            logger.setLevel(level)
        self.signature_defs = {
            name: signature
            for name, signature in meta_graph.signature_def.items()
            if not name.startswith("__")
        }

    @property
    def signature_names(self):
        """Sorted names of the serving signatures."""
        return sorted(self.signature_defs)

    def run(self, signature_name, **inputs):
        """Runs one signature.

        Args:
            signature_name: e.g. ``"serving_default"``.
            **inputs: one array per SignatureDef input, by input name.

        Returns:
            dict of NumPy arrays by output name (strings come back as ``bytes``).

        Raises:
            KeyError: an unknown signature, or missing / unexpected input names.
            tf.errors.InvalidArgumentError: what the graph rejects (bad requests).
        """
        if signature_name not in self.signature_defs:
            raise KeyError(
                f"the SavedModel at {self.path} has no signature {signature_name!r}; it has "
                f"{self.signature_names}"
            )
        signature = self.signature_defs[signature_name]
        if set(inputs) != set(signature.inputs):
            raise KeyError(
                f"signature {signature_name!r} takes inputs {sorted(signature.inputs)}, got "
                f"{sorted(inputs)}"
            )
        feed = {signature.inputs[name].name: np.asarray(value) for name, value in inputs.items()}
        fetches = {name: tensor.name for name, tensor in signature.outputs.items()}
        return self._session.run(fetches, feed_dict=feed)

    def close(self):
        """Closes the session."""
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
