"""Evaluation reports: summary table, reliability diagrams and other plots, HTML/JSON report.

The plots return ``matplotlib.figure.Figure`` objects built without ``pyplot``, so they
are safe on headless machines and leave the user's matplotlib backend alone.
"""

from calibkeras.reports.classwise_reliability import (
    classwise_reliability_curve,
    plot_classwise_reliability,
)
from calibkeras.reports.confusion_matrix import plot_confusion_matrix
from calibkeras.reports.cost_vs_abstain import cost_vs_abstain, plot_cost_vs_abstain
from calibkeras.reports.evaluation import evaluation_summary, format_summary_table
from calibkeras.reports.html_report import write_report
from calibkeras.reports.prediction_sets import plot_set_coverage
from calibkeras.reports.recall_by_class import plot_recall_by_class
from calibkeras.reports.reliability_diagram import plot_reliability_diagram

__all__ = [
    "classwise_reliability_curve",
    "cost_vs_abstain",
    "evaluation_summary",
    "format_summary_table",
    "plot_classwise_reliability",
    "plot_confusion_matrix",
    "plot_cost_vs_abstain",
    "plot_recall_by_class",
    "plot_reliability_diagram",
    "plot_set_coverage",
    "write_report",
]
