"""report.json (versioned schema) and a self-contained report.html with its plots embedded.

Reports hold no timestamps or durations, so two builds from the same inputs
give byte-identical reports; timings go to the manifest's unhashed `build` field.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import numpy as np


def calibration_summary(report: dict[str, Any]) -> str:
    """'percentile (percentile 99.999, num_bins 2048), 512 samples; scales moved <= 7.2% from the first 256'."""
    calibration = report.get("calibration", {})
    options = ", ".join(f"{k} {v}" for k, v in calibration.items() if k in ("percentile", "num_bins", "num_quantized_bins"))
    text = f"{report['method']}{f' ({options})' if options else ''}, {report['samples']} samples"
    stability = calibration.get("stability")
    if stability and stability.get("max_scale_change") is not None:
        text += f"; scales moved <= {stability['max_scale_change']:.1%} from the first {stability['first_half_samples']}"
    return text


def twin_statement(shipped: dict[str, Any]) -> str:
    """Why a host build's figure is the shipped library's: their logits were compared bit for bit."""
    return (f"the same integer program: its logits equal those of {shipped['runtime']} bit for bit "
            f"on all {shipped['samples']} images run there")


def summary_lines(report: dict[str, Any]) -> list[str]:
    fp32, int8, gate = report["fp32"], report["int8"], report["gate"]
    lines = [
        f"model {report['model']} -> target {report['target']} ({report['method']} calibration, {report['samples']} samples)",
        f"calibration: {calibration_summary(report)}",
    ]
    if fp32.get("top1") is not None:
        checked = fp32.get("pytorch_agreement")
        against_pytorch = (f"; PyTorch's logits within {checked['max_abs_diff']:.1g} on {checked['images']} images"
                           if checked else "")
        lines.append(f"FP32 top-1 {fp32['top1']:.2f}%  [{fp32['runtime']}{against_pytorch}]")
        lines.append(f"INT8 top-1 {int8['top1']:.2f}%  [{int8['runtime']}, {int8['arch']}]  drop {report['drop_pts']:+.2f} pts")
    if int8.get("bit_identical_to"):
        lines.append(f"  stands for the shipped files: {twin_statement(int8['bit_identical_to'])}")
    lines.append(f"top-1 agreement with FP32 {report['agreement'] * 100:.2f}%, logit SQNR {_db(report['drift']['sqnr_db'], '.1f')}, on {int8['samples']} images")
    for extra in report.get("extra_measurements", []):
        # Unlabelled data has no top-1, and its drop is the share of changed predictions: agreement says it all.
        scored = (f"top-1 {extra['top1']:.2f}%, drop {extra['drop_pts']:+.2f} pts, " if extra.get("top1") is not None else "")
        lines.append(f"also measured: {extra['runtime']} on {extra['samples']} images: {scored}"
                     f"agreement {extra['agreement'] * 100:.2f}%")
    if report["fallback_layers"]:
        lines.append(f"kept in float: {', '.join(report['fallback_layers'])}")
    if gate["max_drop"] is not None:
        lines.append(f"gate: drop <= {gate['max_drop']} pts: {'PASSED' if gate['passed'] else 'FAILED'}")
    for note in report["not_measured"]:
        lines.append(f"not measured: {note}")
    lines.extend(device_lines(report))
    return lines


def _db(value: float | None, spec: str = "") -> str:
    """An SQNR in dB; None is unbounded (identical logits)."""
    return "unbounded (identical logits)" if value is None else f"{value:{spec}} dB"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def device_lines(report: dict[str, Any]) -> list[str]:
    """One line per device measurement folded in by `edgeresnet report --device`."""
    lines = []
    for device in report.get("devices", []):
        top1 = device["int8"].get("top1")
        lines.append(f"on the device: {device['label']}: {device['samples']} inputs ({device.get('source', '?')})"
                     + (f", top-1 {top1:.2f}%" if top1 is not None else "")
                     + (f", drop {device['drop_pts']:+.2f} pts" if device.get("drop_pts") is not None else "")
                     + (f", agreement with the host INT8 {_pct(device.get('host_agreement'))}" if "host_agreement" in device else "")
                     + f": {device.get('verdict', 'PASS' if device['passed'] else 'DRIFT')}")
    return lines


def _top1_beside_host(device: dict[str, Any]) -> str:
    """The device's top-1, with the host's INT8 and FP32 top-1 on the very same inputs (the golden sample)."""
    top1 = device["int8"].get("top1")
    host, fp32 = (device.get("host_int8") or {}).get("top1"), (device.get("fp32") or {}).get("top1")
    if top1 is None or host is None:
        return "" if top1 is None else f"{top1}"
    return f"{top1} (same inputs: host INT8 {host}, FP32 {fp32})"


def _device_table(report: dict[str, Any]) -> str:
    """The host's measurement and each device's, side by side, each labelled with what ran where."""
    devices = report.get("devices", [])
    if not devices:
        return ""
    esc = html.escape
    int8 = report["int8"]
    header = ("what ran where", "inputs", "top-1", "drop vs FP32", "agreement with FP32", "agreement with host INT8",
              "cosine with host INT8", "max / mean |&Delta; logit| vs host INT8", "latency p50 (batch)", "verdict")
    host_row = (f"host: {int8['runtime']}, {int8['arch']}", int8["samples"], int8.get("top1"), report["drop_pts"],
                _pct(report["agreement"]), "(reference)", "", "", "", "gate " + ("passed" if report["gate"]["passed"] else "FAILED"))
    rows = [host_row]
    for d in devices:
        host_drift = d.get("host_drift") or {}
        latency = d.get("latency_ms") or {}
        rows.append((
            f"device: {d['label']}", d["samples"], _top1_beside_host(d), d.get("drop_pts", ""), _pct((d.get("drift") or {}).get("agreement")),
            _pct(d.get("host_agreement")), host_drift.get("cosine", ""),
            f"{host_drift['max_abs_diff']:.4g} / {host_drift['mean_abs_diff']:.4g}" if host_drift else "",
            f"{latency['p50']:.3f} ms ({latency['batch']})" if latency else "",
            d.get("verdict", "") + (": " + "; ".join(d["reasons"]) if d.get("reasons") else ""),
        ))
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    notes = "".join(f"<li>{esc(d['label'])}: {esc(d['device'].get('machine', '?'))}, {esc(str(d['device'].get('cpu_model', '?')))}"
                    f"{', ' + esc(d['device']['board']) if d['device'].get('board') else ''}; runtime "
                    f"{esc(json.dumps(d['device'].get('runtime', {})))}; data: {esc(str(d.get('source', '?')))}</li>" for d in devices)
    return (f"<h2>Measured on the device</h2><p>The host row is the measurement above; each device row is that "
            f"device's own run (<code>run.py --check</code> or <code>edgeresnet-run --check</code>) of the golden vectors "
            f"or the user's labelled images, compared with the host's FP32 and INT8 logits of the same inputs.</p>"
            f"<table><tr>{head}</tr>{body}</table><ul>{notes}</ul>")


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(report: dict[str, Any], fp32_confusion, int8_confusion) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = {}
    classes = report["class_names"]
    fp32_pc, int8_pc = report["fp32"].get("per_class"), report["int8"].get("per_class")
    if fp32_pc and int8_pc:
        fig, ax = plt.subplots(figsize=(9, 3.6))
        x = np.arange(len(fp32_pc))
        ax.bar(x - 0.2, fp32_pc, 0.4, label="FP32")
        ax.bar(x + 0.2, int8_pc, 0.4, label="INT8 (shipped artifact)")
        ax.set_xticks(x, classes if len(classes) == len(x) else x, rotation=45 if len(x) <= 20 else 90, ha="right")
        ax.set_ylabel("top-1 accuracy (%)")
        low = min(min(fp32_pc), min(int8_pc))
        ax.set_ylim(max(0, low - 5), 100)
        ax.legend(loc="lower right")
        ax.set_title("Per-class accuracy")
        plots["per_class"] = _png(fig)
    if fp32_confusion is not None and int8_confusion is not None:
        diff = np.asarray(int8_confusion) - np.asarray(fp32_confusion)
        bound = max(1, int(np.abs(diff).max()))
        fig, ax = plt.subplots(figsize=(5.5, 4.8))
        image = ax.imshow(diff, cmap="coolwarm", vmin=-bound, vmax=bound)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title("Confusion matrix, INT8 minus FP32")
        fig.colorbar(image, ax=ax, label="images")
        if diff.shape[0] <= 12:
            for (i, j), v in np.ndenumerate(diff):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
        plots["confusion_diff"] = _png(fig)
    sens = report["sensitivity"]
    if sens:
        fig, ax = plt.subplots(figsize=(9, max(3, 0.22 * len(sens))))
        names = [s["layer"] for s in sens][::-1]
        values = [80.0 if s["sqnr_db"] is None else min(s["sqnr_db"], 80.0) for s in sens][::-1]  # None: unchanged logits
        colors = ["tab:red" if s["layer"] in report["fallback_layers"] else "tab:blue" for s in sens][::-1]
        ax.barh(range(len(names)), values, color=colors)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("logit SQNR vs FP32 with only this layer quantized (dB; lower = more sensitive)")
        ax.set_title("Per-layer sensitivity (red: kept in float)")
        plots["sensitivity"] = _png(fig)
    return plots


def render_html(report: dict[str, Any], fp32_confusion=None, int8_confusion=None) -> str:
    plots = _plots(report, fp32_confusion, int8_confusion)
    esc = html.escape
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>"
        for k, v in (
            ("model", report["model"]), ("target", report["target"]), ("calibration", calibration_summary(report)),
            ("FP32 top-1 / top-5", f"{report['fp32'].get('top1')} / {report['fp32'].get('top5')} ({report['fp32']['runtime']})"),
            ("INT8 top-1 / top-5", f"{report['int8'].get('top1')} / {report['int8'].get('top5')} ({report['int8']['runtime']}, {report['int8']['arch']})"),
            *((("stands for the shipped files", twin_statement(report["int8"]["bit_identical_to"])),)
              if report["int8"].get("bit_identical_to") else ()),
            ("drop (points)", report["drop_pts"]), ("top-1 agreement", report["agreement"]),
            ("logit cosine / SQNR", f"{report['drift']['cosine']} / {_db(report['drift']['sqnr_db'])}"),
            *((f"also measured ({m['runtime']}, {m['arch']})",
               f"top-1 {m.get('top1')} on {m['samples']} images, drop {m['drop_pts']}, agreement {m['agreement']}")
              for m in report["extra_measurements"]),
            ("gate", f"max drop {report['gate']['max_drop']}: {'passed' if report['gate']['passed'] else 'FAILED'}"),
            ("kept in float", ", ".join(report["fallback_layers"]) or "none"),
        )
    )
    not_measured = "".join(f"<li>{esc(n)}</li>" for n in report["not_measured"]) or "<li>nothing: every number above was measured on the shipped files</li>"
    figures = "".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}"><figcaption>{esc(name.replace("_", " "))}</figcaption></figure>'
        for name, data in plots.items()
    )
    steps = "".join(
        f"<tr><td>{esc(s['layer'])}</td><td>{s['drop_pts']}</td><td>{s['gain_pts']}</td></tr>" for s in report["fallback_steps"]
    )
    fallback = f"<h2>Fallback steps</h2><table><tr><th>layer kept in float</th><th>drop after</th><th>gain</th></tr>{steps}</table>" if steps else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgeresnet report: {esc(report['model'])} on {esc(report['target'])}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:4px 8px;text-align:left}}figure{{margin:1.5em 0}}img{{max-width:100%}}
.fail{{color:#b00}}.pass{{color:#070}}</style></head><body>
<h1>{esc(report['model'])} &rarr; {esc(report['target'])}</h1>
<p class="{'pass' if report['gate']['passed'] else 'fail'}">Accuracy drop {report['drop_pts']:+.3f} points; gate {'passed' if report['gate']['passed'] else 'FAILED'}.</p>
<table>{rows}</table>
<h2>Not measured here</h2><ul>{not_measured}</ul>
{_device_table(report)}
{fallback}
<h2>Plots</h2>{figures}
<h2>report.json</h2><pre>{esc(json.dumps(report, indent=2))}</pre>
</body></html>
"""
