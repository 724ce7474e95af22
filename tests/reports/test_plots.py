import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, recall_score

from calibkeras.calibration import calibration_errors, calibration_test, reliability_curve
from calibkeras.reports import (
    classwise_reliability_curve,
    cost_vs_abstain,
    plot_classwise_reliability,
    plot_confusion_matrix,
    plot_cost_vs_abstain,
    plot_recall_by_class,
    plot_reliability_diagram,
)
from calibkeras.reports.reliability_diagram import ACCURACY_LABEL


def bar_heights(ax, label):
    container = next(c for c in ax.containers if c.get_label() == label)
    return np.array([patch.get_height() for patch in container.patches])


def check_figure(figure, num_axes):
    assert isinstance(figure, Figure)
    assert len(figure.axes) == num_axes
    assert figure.canvas.manager is None  # never registered with pyplot


def test_reliability_diagram_bars_are_the_reliability_curve(cifar):
    probs, labels, _, _ = cifar
    reference = calibration_test(labels, probs, n_resamples=50, seed=0)
    figure = plot_reliability_diagram(labels, probs, title="test", reference=reference)
    check_figure(figure, 2)
    curve = reliability_curve(labels, probs)
    filled = curve["count"] > 0
    np.testing.assert_allclose(
        bar_heights(figure.axes[0], ACCURACY_LABEL), curve["accuracy"][filled], atol=1e-12
    )
    bottom_bars = figure.axes[1].containers[0].patches
    np.testing.assert_allclose(
        [p.get_height() for p in bottom_bars], curve["count"] / len(labels), atol=1e-12
    )
    text = "\n".join(t.get_text() for t in figure.axes[0].texts)
    assert f"ECE  {calibration_errors(labels, probs)['ece']:.4f}" in text
    assert f"mean {reference['ece_perfect_mean']:.4f}" in text
    assert "p = " in text or "p < " in text


def test_reliability_diagram_other_bins_and_no_reference(cifar):
    probs, labels, _, _ = cifar
    figure = plot_reliability_diagram(labels, probs, num_bins=5)
    curve = reliability_curve(labels, probs, num_bins=5)
    np.testing.assert_allclose(
        bar_heights(figure.axes[0], ACCURACY_LABEL), curve["accuracy"][curve["count"] > 0]
    )
    reference = calibration_test(labels, probs, n_resamples=10, seed=0)
    with pytest.raises(ValueError, match=r"`reference` was computed with num_bins=15"):
        plot_reliability_diagram(labels, probs, num_bins=5, reference=reference)


def test_classwise_curve_against_a_numpy_loop(cifar):
    probs, labels, _, _ = cifar
    curve = classwise_reliability_curve(labels, probs, num_bins=10)
    assert curve["frequency"].shape == (10, 10)
    for k in (0, 3):
        # Bin b holds p in (b/10, (b+1)/10]; 0 goes to the first bin.
        bins = np.clip(np.ceil(probs[:, k] * 10).astype(int) - 1, 0, 9)
        for b in range(10):
            members = bins == b
            assert curve["count"][k, b] == members.sum()
            if members.any():
                assert curve["frequency"][k, b] == pytest.approx((labels[members] == k).mean())
                assert curve["confidence"][k, b] == pytest.approx(probs[members, k].mean())
            else:
                assert np.isnan(curve["frequency"][k, b])
    expected = calibration_errors(labels, probs, num_bins=10)["classwise_ece"]
    assert curve["ece"].mean() == pytest.approx(expected, rel=1e-9)


def test_classwise_reliability_has_one_axes_per_class(cifar):
    probs, labels, names, _ = cifar
    check_figure(plot_classwise_reliability(labels, probs, names), 10)
    # 7 classes in a 5-wide grid: the 3 unused cells are removed.
    rng = np.random.default_rng(0)
    probs7 = rng.dirichlet(np.ones(7), size=300)
    labels7 = rng.integers(0, 7, 300)
    figure = plot_classwise_reliability(labels7, probs7, list("abcdefg"))
    check_figure(figure, 7)
    assert [ax.get_title().split("\n")[0] for ax in figure.axes] == list("abcdefg")
    with pytest.raises(ValueError, match=r"`class_names` must have 7 entries"):
        plot_classwise_reliability(labels7, probs7, ["a", "b"])


def test_confusion_matrix(cifar):
    probs, labels, names, _ = cifar
    figure = plot_confusion_matrix(labels, probs, names)
    check_figure(figure, 2)
    ax = figure.axes[0]
    expected = confusion_matrix(labels, probs.argmax(1), normalize="true")
    np.testing.assert_allclose(ax.images[0].get_array(), expected)
    assert len(ax.texts) == 100
    assert [t.get_text() for t in ax.get_xticklabels()] == names


def test_recall_by_class_orders_by_counts(cifar):
    probs, labels, names, uncalibrated = cifar
    counts = np.arange(10, 0, -1)[::-1] * 10  # class 9 most frequent
    settings = {"training prior": uncalibrated, "uniform prior": probs}
    figure = plot_recall_by_class(labels, settings, names, class_counts=counts)
    check_figure(figure, 1)
    ax = figure.axes[0]
    order = np.argsort(-counts, kind="stable")
    for container, p in zip(ax.containers, settings.values(), strict=True):
        expected = recall_score(labels, p.argmax(1), average=None)[order]
        np.testing.assert_allclose([r.get_height() for r in container.patches], expected)
    first_tick = ax.get_xticklabels()[0].get_text()
    assert first_tick.startswith("truck") and "n=100" in first_tick
    assert "balanced accuracy" in ax.containers[0].get_label()
    with pytest.raises(ValueError, match=r"`probs_by_setting` must be a non-empty dict"):
        plot_recall_by_class(labels, {}, names)


def test_cost_vs_abstain_against_the_zero_one_rule():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(4, 0.6), size=500)
    labels = np.array([rng.choice(4, p=p) for p in probs])
    costs = np.linspace(0, 1, 11)
    curve = cost_vs_abstain(labels, probs, abstain_costs=costs)
    # Under the 0-1 cost, abstaining at cost c wins exactly when 1 - max p > c.
    confidence = probs.max(1)
    for i, c in enumerate(costs):
        abstain = 1 - confidence > c
        wrong = probs.argmax(1) != labels
        assert curve["abstention_rate"][i] == pytest.approx(abstain.mean())
        assert curve["realized_cost"][i] == pytest.approx(np.where(abstain, c, wrong).mean())
        assert curve["expected_cost"][i] == pytest.approx(
            np.where(abstain, c, 1 - confidence).mean()
        )
    assert curve["no_abstain_cost"] == pytest.approx(wrong.mean())
    figure = plot_cost_vs_abstain(labels, probs)
    check_figure(figure, 2)
    assert len(figure.axes[0].lines[0].get_xdata()) == 41
    with pytest.raises(ValueError, match=r"`abstain_costs` must be finite and non-negative"):
        cost_vs_abstain(labels, probs, abstain_costs=[-1.0])
    with pytest.raises(ValueError, match=r"`cost_matrix` must have 4 columns"):
        cost_vs_abstain(labels, probs, cost_matrix=np.ones((2, 3)))
