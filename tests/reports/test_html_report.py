import base64
import json
from html.parser import HTMLParser

import matplotlib.image
import numpy as np
import pytest

from calibkeras.calibration import adjust_to_prior
from calibkeras.reports import evaluation_summary, write_report
from calibkeras.reports._figures import PNG_SIGNATURE


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        assert not (tag == "link" or (tag == "script" and "src" in attrs)), "external resource"


@pytest.fixture
def report_inputs(cifar):
    probs, labels, names, uncalibrated = cifar
    summary = evaluation_summary(labels, probs, names, uncalibrated_probs=uncalibrated,
                                 temperature=1.7, n_resamples=50)
    counts = np.array([50, 40, 30, 20, 10, 10, 8, 6, 4, 2])
    training = adjust_to_prior(probs, np.full(10, 0.1), counts / counts.sum())
    return summary, probs, labels, names, uncalibrated, {"training prior": training,
                                                         "uniform prior": probs}, counts


def test_write_report_writes_pngs_json_and_self_contained_html(report_inputs, tmp_path):
    summary, probs, labels, names, uncalibrated, by_prior, counts = report_inputs
    output = tmp_path / "nested" / "report"
    paths = write_report(output, summary, labels, probs, names, uncalibrated_probs=uncalibrated,
                         probs_by_prior=by_prior, class_counts=counts)
    pngs = ["reliability.png", "reliability_uncalibrated.png", "classwise_reliability.png",
            "confusion_matrix.png", "recall_by_class.png", "cost_vs_abstain.png"]
    assert list(paths) == pngs + ["summary.json", "report.html"]
    assert sorted(p.name for p in output.iterdir()) == sorted(paths)
    assert [p.name for p in output.parent.iterdir()] == ["report"]  # no temp folder left
    for name in pngs:
        data = paths[name].read_bytes()
        assert data[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(paths[name])
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert json.loads(paths["summary.json"].read_text()) == summary

    page = paths["report.html"].read_text(encoding="utf-8")
    parser = ImageSources()
    parser.feed(page)
    parser.close()
    assert {"html", "head", "body", "table"} <= set(parser.tags)
    assert len(parser.sources) == len(pngs)
    embedded = []
    for source in parser.sources:
        prefix, data = source.split(",", 1)
        assert prefix == "data:image/png;base64"
        embedded.append(base64.b64decode(data))
    assert embedded == [paths[name].read_bytes() for name in pngs]
    assert "perfectly calibrated at this size" in page
    assert f"{summary['nll']:.4f}" in page and "How to read" in page


def test_refuses_a_non_empty_folder_unless_overwrite(report_inputs, tmp_path):
    summary, probs, labels, names, *_ = report_inputs
    output = tmp_path / "report"
    output.mkdir()
    (output / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError, match=r"exists and is not empty; .* overwrite=True"):
        write_report(output, summary, labels, probs, names)
    # Not a report folder (no report.html and summary.json): overwrite refuses it too.
    with pytest.raises(FileExistsError, match=r"is not a report folder .*, so overwrite=True"):
        write_report(output, summary, labels, probs, names, overwrite=True)
    assert (output / "keep.txt").read_text() == "old"
    (output / "report.html").write_text("an earlier report")
    (output / "summary.json").write_text("{}")
    paths = write_report(output, summary, labels, probs, names, overwrite=True)
    assert sorted(p.name for p in output.iterdir()) == sorted(paths)
    assert "reliability_uncalibrated.png" not in paths and "recall_by_class.png" not in paths
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_a_failing_plot_leaves_nothing_behind(report_inputs, tmp_path):
    summary, probs, labels, names, *_ = report_inputs
    output = tmp_path / "report"
    with pytest.raises(ValueError, match=r"`probs_by_setting\['bad'\]`"):
        write_report(output, summary, labels, probs, names, probs_by_prior={"bad": probs * 2})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"`summary` describes 2000 samples but `labels` has 10"):
        write_report(output, summary, labels[:10], probs[:10], names)
