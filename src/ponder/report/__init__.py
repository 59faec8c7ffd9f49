"""HTML reports with PNG plots."""

from ponder.report.html import build_report

__all__ = ["build_report"]
