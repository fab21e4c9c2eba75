"""The report's plots as PNG data (base64), drawn with matplotlib off-screen."""

from __future__ import annotations

import base64
import io
import numpy as np

from edgeresnet.schema import Report

SENSITIVITY_SHOWN = 15  # the most sensitive layers; the rest are in the folded layer table


def png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def class_labels(names: list[str], count: int) -> list[str]:
    return names if len(names) == count else [str(i) for i in range(count)]


def plots(report: Report, fp32_confusion=None, int8_confusion=None) -> dict[str, tuple[str, str]]:
    """name -> (caption, base64 PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = {}
    fp32_pc, int8_pc = report.fp32.per_class, report.int8.per_class
    if fp32_pc and int8_pc:
        labels = class_labels(report.class_names, len(fp32_pc))
        fig, ax = plt.subplots(figsize=(7, 3.6))
        x = np.arange(len(fp32_pc))
        fp32_bars, int8_bars = (np.array([np.nan if v is None else v for v in pc], float) for pc in (fp32_pc, int8_pc))
        ax.bar(x - 0.2, fp32_bars, 0.4, label="FP32")
        ax.bar(x + 0.2, int8_bars, 0.4, label="INT8 (shipped)")
        ax.set_xticks(x, labels, rotation=45 if len(x) <= 20 else 90, ha="right")
        ax.set_ylabel("top-1 accuracy (%)")
        lowest = np.nanmin(np.concatenate([fp32_bars, int8_bars])) if np.isfinite(fp32_bars).any() else 0.0
        ax.set_ylim(max(0, lowest - 5), 100)
        # Above the axes, so it covers no bar.
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
        drawn["per_class"] = ("Per-class top-1 accuracy, FP32 and INT8", png(fig))
    if fp32_confusion is not None and int8_confusion is not None:
        diff = np.asarray(int8_confusion) - np.asarray(fp32_confusion)
        labels = class_labels(report.class_names, diff.shape[0])
        bound = max(1, int(np.abs(diff).max()))
        fig, ax = plt.subplots(figsize=(6, 5.2))
        image = ax.imshow(diff, cmap="coolwarm", vmin=-bound, vmax=bound)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        fig.colorbar(image, ax=ax, label="images (INT8 minus FP32)")
        if diff.shape[0] <= 12:
            for (i, j), v in np.ndenumerate(diff):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
        drawn["confusion_diff"] = ("Where predictions moved: confusion matrix, INT8 minus FP32", png(fig))
    sensitivity = report.sensitivity
    if sensitivity:
        kept = set(report.fallback_layers)
        shown = sensitivity[:SENSITIVITY_SHOWN]
        fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(shown))))
        names = [s.layer for s in shown][::-1]
        values = [min(s.sqnr_db, 80.0) if s.sqnr_db is not None else 80.0 for s in shown][::-1]
        colors = ["tab:red" if s.layer in kept else "tab:blue" for s in shown][::-1]
        ax.barh(range(len(names)), values, color=colors)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("logit SQNR with only this layer in INT8 (dB; lower = more sensitive)")
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color="tab:red", label="kept in float by the budget"), Patch(color="tab:blue", label="INT8")],
                  loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, fontsize=8)
        caption = (f"The {len(shown)} most sensitive of {len(sensitivity)} layers"
                   + (f"; {len(kept)} kept in float" if kept else "; every layer ships in INT8"))
        drawn["sensitivity"] = (caption, png(fig))
    if report.layer_drift:
        from edgeresnet.drift import plot_layer_drift

        drawn["layer_drift"] = ("Where the drift starts: output SQNR by depth and the dB each layer loses itself",
                                png(plot_layer_drift(report.layer_drift)))
    return drawn
