"""report.json (versioned schema), report.html for one artifact, and the page comparing several.

Reports hold no timestamps or durations, so two builds from the same inputs
give byte-identical reports; timings go to the manifest's unhashed `build` field.
"""

from .page import render_html
from .summary import calibration_summary, device_lines, summary_lines, twin_statement

REPORT_SCHEMA = "edgeresnet.report/1"

__all__ = ["REPORT_SCHEMA", "calibration_summary", "device_lines", "render_html", "summary_lines", "twin_statement"]
