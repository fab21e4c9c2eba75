"""report.html for one artifact, the page comparing several, and the summary lines `compile` prints.

The pages hold no timestamps or durations, so two builds from the same inputs give
byte-identical reports; timings go to the manifest's unhashed `build` field.
"""

from .page import render_html
from .summary import calibration_summary, device_lines, summary_lines, twin_statement

__all__ = ["calibration_summary", "device_lines", "render_html", "summary_lines", "twin_statement"]
