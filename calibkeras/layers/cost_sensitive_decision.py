"""CostSensitiveDecision: the Bayes action (least expected cost) from probabilities."""

import keras
from keras import ops

from calibkeras.metrics.functional import action_expected_costs
from calibkeras.utils.checks import check_abstain_cost, check_cost_matrix

#: Name given to the abstain action in :attr:`CostSensitiveDecision.output_action_names`.
ABSTAIN_ACTION_NAME = "abstain"


@keras.saving.register_keras_serializable(package="calibkeras")
class CostSensitiveDecision(keras.layers.Layer):
    """Picks the action of least expected cost: ``argmin_a sum_y C[a, y] p(y | x)``.

    ``C`` is an ``(A, K)`` cost matrix: ``C[a, y]`` is the cost of action ``a`` when the
    true class is ``y``. The number of actions ``A`` may differ from the number of
    classes ``K`` (e.g. "accept", "send to a human", "reject"). With ``abstain_cost``
    the layer also offers an *abstain* action whose cost is ``abstain_cost`` whatever
    the class; it is row ``A`` of the extended cost matrix, so its id is ``A``. Ties go
    to the lowest action id (a class action wins a tie with abstaining).

    Per-class thresholds are special cases of this rule, with the thresholds set by the
    costs instead of tuned by hand:

    * Binary, actions (negative, positive), ``C = [[0, C_FN], [C_FP, 0]]``: the
      expected costs are ``p * C_FN`` and ``(1 - p) * C_FP`` for ``p = p(positive | x)``,
      so the layer predicts positive exactly when ``p > C_FP / (C_FP + C_FN)`` (at
      equality both cost the same and the tie goes to "negative"). ``C_FP = C_FN``
      gives the 0.5 threshold.
    * One-vs-rest with 0-1 costs (``C = 1 - I``): the expected cost of class ``a`` is
      ``1 - p_a``, so the decision is the argmax.
    * Abstain with 0-1 costs (Chow's rule): the least expected cost of a class action
      is ``1 - max_k p_k``, so the layer abstains when ``max_k p_k < 1 - abstain_cost``,
      i.e. whenever the least expected cost of every other action exceeds the abstain
      cost.

    The decision is only as good as the probabilities: feed calibrated probabilities
    under the deployment prior (``softmax`` of a model ending in ``TemperatureScaling``
    and ``PriorShift``).

    The cost matrix (and the abstain cost) are non-trainable weights, so they survive
    ``.keras`` save/load and SavedModel export; their values are also in the config.

    Args:
        cost_matrix: ``(A, K)`` finite, non-negative costs ``C[action, true_class]``,
            with ``A >= 2`` actions and ``K >= 2`` classes.
        abstain_cost: None (default, no abstain action) or a finite cost ``>= 0`` of
            the extra abstain action.
        action_names: optional ``A`` names of the actions (rows of ``cost_matrix``);
            the abstain action is named ``"abstain"``.
        **kwargs: base layer arguments (``name``, ``dtype``: default ``"float32"``
            whatever the global dtype policy).

    Input shape:
        ``(batch, K)`` probabilities (rows sum to 1).

    Returns:
        A dict with
        ``"decision"``: int32 ``(batch,)`` action ids in ``[0, A)``, or ``[0, A]`` with
        abstain (``A`` means abstain);
        ``"expected_cost"``: float ``(batch, A)``, or ``(batch, A + 1)`` with the
        abstain column last.
        In a functional model index the output: ``outputs["decision"]``.

    Example:
        >>> probs = keras.Input((2,))
        >>> decide = calibkeras.layers.CostSensitiveDecision(
        ...     [[0.0, 5.0], [1.0, 0.0]],   # a missed positive costs 5, a false alarm 1
        ...     abstain_cost=0.4, action_names=["negative", "positive"])
        >>> outputs = decide(probs)
        >>> model = keras.Model(probs, outputs["decision"])
        >>> model.predict(np.array([[0.95, 0.05], [0.8, 0.2], [0.3, 0.7]]), verbose=0)
        array([0, 2, 1], dtype=int32)
        >>> # expected costs (negative, positive, abstain): (0.25, 0.95, 0.4),
        >>> # (1.0, 0.8, 0.4), (3.5, 0.3, 0.4); positive iff p > 1 / (1 + 5)

    References:
        Elkan (2001), The foundations of cost-sensitive learning. IJCAI.
        Chow (1970), On optimum recognition error and reject tradeoff. IEEE Trans.
        Information Theory 16(1).
    """

    def __init__(self, cost_matrix, abstain_cost=None, action_names=None, **kwargs):
        # Calibration, priors and decisions compute in float32 whatever the dtype
        # policy: under mixed_float16 a 1e-12 clip is 0 and logits lose digits.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        matrix = check_cost_matrix(cost_matrix)
        self.cost_matrix_values = matrix.tolist()
        self.abstain_cost = check_abstain_cost(abstain_cost)
        if action_names is not None:
            if isinstance(action_names, str):
                action_names = [action_names]
            action_names = [str(name) for name in action_names]
            if len(action_names) != matrix.shape[0]:
                raise ValueError(
                    f"`action_names` must have {matrix.shape[0]} entries (one per row of "
                    f"`cost_matrix`), got {len(action_names)}: {action_names!r}"
                )
        self.action_names = action_names
        self.num_actions, self.num_classes = matrix.shape
        self.cost_matrix = self.add_weight(
            name="cost_matrix",
            shape=matrix.shape,
            initializer=keras.initializers.Constant(matrix),
            trainable=False,
        )
        self.abstain_cost_weight = None
        if self.abstain_cost is not None:
            self.abstain_cost_weight = self.add_weight(
                name="abstain_cost",
                shape=(),
                initializer=keras.initializers.Constant(self.abstain_cost),
                trainable=False,
            )
        self.built = True

    @property
    def output_action_names(self):
        """Names of all decision ids: the ``A`` action names (``"0"`` .. ``"A-1"`` when
        none were given), then ``"abstain"`` when there is an abstain action."""
        names = self.action_names or [str(a) for a in range(self.num_actions)]
        if self.abstain_cost is not None:
            names = names + [ABSTAIN_ACTION_NAME]
        return names

    def call(self, inputs):
        if inputs.shape[-1] is not None and inputs.shape[-1] != self.num_classes:
            raise ValueError(
                f"CostSensitiveDecision '{self.name}' has a cost matrix over "
                f"{self.num_classes} classes but its input has {inputs.shape[-1]} "
                f"probabilities (shape {inputs.shape})"
            )
        probs = ops.cast(inputs, self.compute_dtype)
        costs = action_expected_costs(probs, self.cost_matrix, self.abstain_cost_weight)
        decision = ops.cast(ops.argmin(costs, axis=-1), "int32")
        return {"decision": decision, "expected_cost": costs}

    def compute_output_shape(self, input_shape):
        batch_shape = tuple(input_shape[:-1])
        columns = self.num_actions + (self.abstain_cost is not None)
        return {"decision": batch_shape, "expected_cost": (*batch_shape, columns)}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cost_matrix": self.cost_matrix_values,
                "abstain_cost": self.abstain_cost,
                "action_names": self.action_names,
            }
        )
        return config
