"""tf.distribute strategies for calibkeras, and strategy-aware inference on batches.

- :mod:`calibkeras.distribute.cluster`: the ``TF_CONFIG`` of a multi-worker run
  (:func:`validate_tf_config`, :func:`is_chief`, :func:`wait_for_workers`); no
  TensorFlow needed.
- :mod:`calibkeras.distribute.strategies`: :func:`make_strategy`, the strategy
  ``calibkeras train --strategy`` names (``"default"``, ``"mirrored"``,
  ``"multi_worker"``).
- :mod:`calibkeras.distribute.replicas`: one batch split across the replicas and
  gathered back in order (:func:`batch_predictor`).

Under any strategy the model's batch size is the *global* batch: each batch of a
``tf.data`` pipeline is split across the replicas. :func:`batch_predictor` runs a
model on one batch in the same way (split, run on every replica, gather in order),
which is what the calibkeras callbacks use; ``model.predict_on_batch`` is not safe
there (under a strategy with several replicas every replica would run the whole
batch and the outputs would come back duplicated).
"""

from calibkeras.distribute.cluster import (
    DEFAULT_TIMEOUT_SECONDS,
    is_chief,
    validate_tf_config,
    wait_for_workers,
)

# pad_weighted_rows and split_across_replicas are not in __all__: re-exported only for
# calibkeras.callbacks, which imports them from here.
from calibkeras.distribute.replicas import (  # noqa: F401
    batch_predictor,
    pad_weighted_rows,
    split_across_replicas,
)
from calibkeras.distribute.strategies import STRATEGIES, describe_strategy, make_strategy

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "STRATEGIES",
    "batch_predictor",
    "describe_strategy",
    "is_chief",
    "make_strategy",
    "validate_tf_config",
    "wait_for_workers",
]
