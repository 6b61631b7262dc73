"""One self-contained ``report.html`` for a run, rendered from its ``results.json``.

The page needs no network: figures are inline SVG drawn here from the results (not pictures of
them), the styles and the few lines of script are inline, and no font is fetched. The script
adds what a static page cannot do: hover a point of a curve to read its values, click a column
head to sort a table. Without script the page still shows every number (each point carries an
SVG ``<title>``).

Why no plotting library: the figures are a handful of line charts and histograms; drawing them
as SVG takes a few hundred lines, while a library that exports standalone interactive HTML
(plotly, bokeh) would add a dependency and 1-4 MB of embedded JavaScript to every report.

:func:`render_report` turns a results dict (``zero-weights`` or ``compress``) into the HTML text;
:func:`write_report` reads a run folder's ``results.json`` and writes ``report.html`` beside it.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from netsqueeze.errors import FormatError
from netsqueeze.experiments.report import per_layer_answer

__all__ = ["REPORT_NAME", "figure_ids", "render_report", "write_report"]

REPORT_NAME = "report.html"

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f", "#d62728")
RED = "#d62728"
ORANGE = "#ff7f0e"
GRAY = "#777777"


def esc(v) -> str:
    return html.escape(str(v), quote=True)


# ------------------------------------------------------------------------------------------
# numbers
# ------------------------------------------------------------------------------------------


def _pct(x, digits: int = 1) -> str:
    return "-" if x is None else f"{100.0 * x:.{digits}f} %"


def _acc(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _int(x) -> str:
    return "-" if x is None else f"{int(x):,}"


def _bytes(n) -> str:
    if n is None:
        return "-"
    if n >= 1 << 20:
        return f"{n:,.0f} B ({n / (1 << 20):.2f} MiB)"
    if n >= 1 << 10:
        return f"{n:,.0f} B ({n / 1024:.1f} KiB)"
    return f"{n:,.0f} B"


def _num(x, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if math.isfinite(x) else str(x)
    return str(x)


def _vs_trained(drop_pp: float) -> str:
    if abs(drop_pp) < 0.005:
        return "equal to the trained model"
    side = "below" if drop_pp > 0 else "above"
    return f"{abs(drop_pp):.2f} pp {side} the trained model"


def _nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _tick_label(v: float, ticks: Sequence[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(v) or 1.0
    digits = max(0, min(6, -math.floor(math.log10(step)) + (0 if step >= 1 else 1))) \
        if step > 0 else 2
    if step >= 1 and float(step).is_integer() and float(v).is_integer():
        digits = 0
    return f"{v:.{digits}f}"


# ------------------------------------------------------------------------------------------
# SVG charts
# ------------------------------------------------------------------------------------------


class _Frame:
    """Maps data coordinates to the pixel box of a chart."""

    def __init__(self, x0, x1, y0, y1, width, height, left=70, right=20, top=36, bottom=56):
        if x1 <= x0:
            x0, x1 = x0 - 0.5, x1 + 0.5
        if y1 <= y0:
            y0, y1 = y0 - 0.5, y1 + 0.5
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1
        self.w, self.h = width, height
        self.l, self.r, self.t, self.b = left, width - right, top, height - bottom

    def px(self, x: float) -> float:
        return self.l + (x - self.x0) / (self.x1 - self.x0) * (self.r - self.l)

    def py(self, y: float) -> float:
        return self.b - (y - self.y0) / (self.y1 - self.y0) * (self.b - self.t)


def _axes(f: _Frame, title: str, xlabel: str, ylabel: str, xticks=None, yticks=None,
          xtick_rotate: bool = False) -> list[str]:
    out = [f'<text class="ttl" x="{f.w / 2:.1f}" y="20" text-anchor="middle">{esc(title)}</text>']
    yt = yticks if yticks is not None else _nice_ticks(f.y0, f.y1)
    for v in yt:
        y = f.py(v)
        out.append(f'<line class="grid" x1="{f.l}" x2="{f.r}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{f.l - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f"{esc(_tick_label(v, yt))}</text>")
    xt = xticks if xticks is not None else [(v, _tick_label(v, _nice_ticks(f.x0, f.x1)))
                                            for v in _nice_ticks(f.x0, f.x1)]
    for v, label in xt:
        x = f.px(v)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{f.t}" y2="{f.b}"/>')
        if xtick_rotate:
            out.append(f'<text class="tick" transform="translate({x:.1f},{f.b + 10}) '
                       f'rotate(-50)" text-anchor="end">{esc(label)}</text>')
        else:
            out.append(f'<text class="tick" x="{x:.1f}" y="{f.b + 16}" text-anchor="middle">'
                       f"{esc(label)}</text>")
    out.append(f'<rect class="box" x="{f.l}" y="{f.t}" width="{f.r - f.l}" '
               f'height="{f.b - f.t}"/>')
    out.append(f'<text class="lbl" x="{(f.l + f.r) / 2:.1f}" y="{f.h - 6}" '
               f'text-anchor="middle">{esc(xlabel)}</text>')
    out.append(f'<text class="lbl" transform="translate(16,{(f.t + f.b) / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{esc(ylabel)}</text>')
    return out


def _point(x, y, tip: str, color: str, r: float = 3.5, cls: str = "pt", fill=None) -> str:
    fill = color if fill is None else fill
    return (f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}" '
            f'stroke="{color}" data-tip="{esc(tip)}"><title>{esc(tip)}</title></circle>')


def _legend(items: list[tuple[str, str, str]]) -> str:
    """HTML legend under a chart: (label, colour, style) with style line / dash / dot / ring."""
    spans = []
    for label, color, style in items:
        spans.append(f'<span class="key {style}" style="--c:{color}"></span>{esc(label)}')
    return '<div class="legend">' + " &nbsp; ".join(spans) + "</div>"


def line_chart(fig_id: str, title: str, series: list[dict], *, xlabel: str, ylabel: str,
               hlines: Sequence[tuple[float, str, str]] = (),
               marks: Sequence[dict] = (), vlines: Sequence[float] = (),
               xticks=None, ylim=None, xtick_rotate=False, caption: str = "",
               width: int = 760, height: int = 430) -> str:
    """A ``<figure>`` with an SVG line chart; every point has a hover text.

    ``series``: dicts with ``name``, ``x``, ``y``, ``tips`` (one text per point), optional
    ``color`` and ``dash``. ``hlines``: (y, label, colour). ``marks``: chosen points, dicts with
    ``x``, ``y``, ``label``, ``color``, optional ``shape`` ("ring" or "square").
    """
    xs = [x for s in series for x in s["x"]] + [m["x"] for m in marks] + list(vlines)
    ys = [y for s in series for y in s["y"]] + [m["y"] for m in marks] + [h[0] for h in hlines]
    xs = [v for v in xs if v is not None and math.isfinite(v)] or [0.0, 1.0]
    ys = [v for v in ys if v is not None and math.isfinite(v)] or [0.0, 1.0]
    if ylim is not None:
        y0, y1 = ylim
    else:
        pad = (max(ys) - min(ys)) * 0.08 or 0.01
        y0, y1 = min(ys) - pad, max(ys) + pad
    xpad = (max(xs) - min(xs)) * 0.03 or 0.5
    bottom = 80 if xtick_rotate else 56
    f = _Frame(min(xs) - xpad, max(xs) + xpad, y0, y1, width, height, bottom=bottom)
    body = _axes(f, title, xlabel, ylabel, xticks=xticks, xtick_rotate=xtick_rotate)
    legend = []
    for x in vlines:
        body.append(f'<line class="ref" x1="{f.px(x):.1f}" x2="{f.px(x):.1f}" y1="{f.t}" '
                    f'y2="{f.b}" stroke="{RED}" stroke-dasharray="2,3"/>')
    for y, label, color in hlines:
        body.append(f'<line class="ref" x1="{f.l}" x2="{f.r}" y1="{f.py(y):.1f}" '
                    f'y2="{f.py(y):.1f}" stroke="{color}" stroke-dasharray="6,4">'
                    f"<title>{esc(label)}</title></line>")
        legend.append((label, color, "dash"))
    for i, s in enumerate(series):
        color = s.get("color") or PALETTE[i % len(PALETTE)]
        pts = [(x, y, t) for x, y, t in zip(s["x"], s["y"], s["tips"], strict=True)
               if y is not None]
        if not pts:
            continue
        d = " ".join(f"{'M' if j == 0 else 'L'}{f.px(x):.1f},{f.py(y):.1f}"
                     for j, (x, y, _) in enumerate(pts))
        dash = ' stroke-dasharray="7,4"' if s.get("dash") else ""
        width_attr = ' stroke-width="2.5"' if s.get("dash") else ""
        body.append(f'<path class="line" d="{d}" stroke="{color}"{dash}{width_attr}/>')
        if s.get("points", True):
            body.extend(_point(f.px(x), f.py(y), t, color) for x, y, t in pts)
        legend.append((s["name"], color, "dash" if s.get("dash") else "line"))
    for m in marks:
        shape = m.get("shape", "ring")
        x, y = f.px(m["x"]), f.py(m["y"])
        if shape == "square":
            body.append(f'<rect class="pt mark" x="{x - 7:.1f}" y="{y - 7:.1f}" width="14" '
                        f'height="14" fill="none" stroke="{m["color"]}" stroke-width="2.5" '
                        f'data-tip="{esc(m["label"])}"><title>{esc(m["label"])}</title></rect>')
        else:
            body.append(_point(x, y, m["label"], m["color"], r=8, cls="pt mark", fill="none"))
        legend.append((m["label"], m["color"], "ring" if shape == "ring" else "square"))
    svg = (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{esc(title)}">' + "".join(body) + "</svg>")
    return (f'<figure class="fig" id="{esc(fig_id)}" data-figure="{esc(fig_id)}">{svg}'
            f"{_legend(legend)}<figcaption>{esc(caption)}</figcaption></figure>")


def _histogram_cell(d: dict, title: str, width=250, height=150, spikes=False) -> str:
    lo, hi = d["edges"]
    f = _Frame(lo, hi, 0, 1, width, height, left=8, right=8, top=22, bottom=22)
    out = [f'<text class="tick" x="{width / 2}" y="14" text-anchor="middle">{esc(title)}</text>']
    out.append(f'<rect class="box" x="{f.l}" y="{f.t}" width="{f.r - f.l}" '
               f'height="{f.b - f.t}"/>')
    if spikes and "values" in d:
        top = max(d["counts"]) or 1
        for v, c in zip(d["values"], d["counts"], strict=True):
            x = f.px(v)
            tip = f"value {v:.5g}: {c:,} weights"
            out.append(f'<line class="pt spike" x1="{x:.1f}" x2="{x:.1f}" y1="{f.b}" '
                       f'y2="{f.py(c / top):.1f}" data-tip="{esc(tip)}"><title>{esc(tip)}'
                       f"</title></line>")
    else:
        hist = d["hist"]
        top = max(hist) or 1
        step = (hi - lo) / max(1, len(hist))
        for i, c in enumerate(hist):
            if not c:
                continue
            a, b = lo + i * step, lo + (i + 1) * step
            x0, x1 = f.px(a), f.px(b)
            y = f.py(c / top)
            tip = f"[{a:.4g}, {b:.4g}): {c:,} weights"
            out.append(f'<rect class="pt bar" x="{x0:.2f}" y="{y:.1f}" '
                       f'width="{max(0.5, x1 - x0):.2f}" height="{f.b - y:.1f}" '
                       f'data-tip="{esc(tip)}"><title>{esc(tip)}</title></rect>')
    out.append(f'<text class="tick" x="{f.l}" y="{height - 6}">{lo:.3g}</text>')
    out.append(f'<text class="tick" x="{f.r}" y="{height - 6}" text-anchor="end">{hi:.3g}'
               "</text>")
    out.append(f'<text class="tick" x="{f.r - 2}" y="{f.t + 12}" text-anchor="end">'
               f'{d["nonzero"]:,} non-zero</text>')
    return (f'<svg class="hist" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}">' + "".join(out) + "</svg>")


# ------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------


def _sort_key(v) -> str:
    if isinstance(v, bool) or v is None:
        return ""
    if isinstance(v, int | float) and math.isfinite(v):
        return repr(float(v))
    return ""


def table(headers: Sequence[str], rows: Iterable[Sequence], *, sortable: bool = False,
          table_id: str = "", total: Sequence | None = None, left: int = 1) -> str:
    """An HTML table. A cell is text, or ``(text, number)`` where the number sorts the column."""
    cls = "data sortable" if sortable else "data"
    tid = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(
        f'<th class="{"l" if i < left else "r"}"'
        + (' title="click to sort"' if sortable else "") + f">{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    out = [f'<table class="{cls}"{tid}><thead><tr>{head}</tr></thead><tbody>']

    def cells(row) -> str:
        parts = []
        for i, c in enumerate(row):
            text, key = (c if isinstance(c, tuple) else (c, c))
            sk = _sort_key(key)
            attr = f' data-v="{sk}"' if sk else ""
            parts.append(f'<td class="{"l" if i < left else "r"}"{attr}>{esc(text)}</td>')
        return "".join(parts)

    for row in rows:
        out.append(f"<tr>{cells(row)}</tr>")
    out.append("</tbody>")
    if total is not None:
        out.append(f'<tfoot><tr class="total">{cells(total)}</tr></tfoot>')
    out.append("</table>")
    return "".join(out)


def _flat(d, prefix: str = "") -> list[tuple[str, str]]:
    """``{"a": {"b": 1}}`` -> ``[("a.b", "1")]`` for settings tables."""
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v and not all(not isinstance(x, dict) for x in v.values()):
                out += _flat(v, key)
            elif isinstance(v, dict):
                out.append((key, ", ".join(f"{a}={b}" for a, b in v.items()) or "{}"))
            else:
                out.append((key, json.dumps(v) if isinstance(v, list | bool) or v is None
                            else str(v)))
    return out


def _kv_table(d: dict, prefix: str = "") -> str:
    return table(["setting", "value"], _flat(d, prefix), left=2)


# ------------------------------------------------------------------------------------------
# page
# ------------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0 auto;max-width:1100px;padding:1.2em 2em 4em;color:#222;background:#fff}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;
 padding-bottom:.2em}.sub{color:#555;margin:0 0 1em}
ul.answers li{margin:.35em 0}.answers b{color:#000}
table.data{border-collapse:collapse;margin:.6em 0 1em;font-size:13.5px}
table.data th,table.data td{border-bottom:1px solid #e3e3e3;padding:3px 9px}
table.data th{background:#f4f4f4;position:sticky;top:0}
.l{text-align:left}.r{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th.asc::after{content:" \\25B2";font-size:.7em}
table.sortable th.desc::after{content:" \\25BC";font-size:.7em}
tr.total td{font-weight:600;border-top:2px solid #bbb}
figure.fig{margin:1em 0 2em}figcaption{color:#555;font-size:13px;max-width:760px}
svg.chart,svg.hist{max-width:100%;height:auto;background:#fff}
svg text{font:11px system-ui,sans-serif;fill:#333}svg text.ttl{font-size:14px;font-weight:600}
svg text.lbl{font-size:12px}.grid{stroke:#eee}.box{fill:none;stroke:#999}
.line{fill:none;stroke-width:1.8}.pt{cursor:crosshair}.pt:hover{stroke-width:3}
.bar{fill:#4a7fb5}.spike{stroke:#4a7fb5;stroke-width:1.6}
.legend{font-size:12.5px;margin:.2em 0 .4em 70px}
.key{display:inline-block;width:22px;height:0;border-top:2px solid var(--c);
 vertical-align:middle;margin-right:5px}.key.dash{border-top-style:dashed}
.key.ring{width:10px;height:10px;border:2px solid var(--c);border-radius:50%}
.key.square{width:10px;height:10px;border:2px solid var(--c)}
.grid-hists{display:grid;gap:4px 10px;align-items:center}
.grid-hists .rowname{font-weight:600;font-size:13px}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;padding:4px 8px;
 border-radius:4px;font-size:12.5px;display:none;z-index:10;white-space:pre}
details{margin:.5em 0 1em}summary{cursor:pointer;color:#245}
code{background:#f4f4f4;padding:0 .25em;border-radius:3px}
footer{margin-top:3em;color:#666;font-size:13px}
"""

# Hover values on chart points and sortable tables. ``data-ready`` on <body> says the script
# ran to its end; ``data-errors`` collects any script error (the browser test reads both).
_JS = """
(function(){
var errs=[];window.addEventListener('error',function(e){errs.push(String(e.message));
 document.body.setAttribute('data-errors',errs.join(' | '));});
var tip=document.getElementById('tip');
document.querySelectorAll('.pt').forEach(function(el){
 el.addEventListener('mousemove',function(e){tip.textContent=el.getAttribute('data-tip');
  tip.style.display='block';tip.style.left=(e.clientX+14)+'px';tip.style.top=(e.clientY+10)+'px';});
 el.addEventListener('mouseleave',function(){tip.style.display='none';});
});
document.querySelectorAll('table.sortable').forEach(function(t){
 var ths=t.tHead.rows[0].cells;
 Array.prototype.forEach.call(ths,function(th,col){
  th.addEventListener('click',function(){
   var asc=!th.classList.contains('asc');
   Array.prototype.forEach.call(ths,function(h){h.classList.remove('asc','desc');});
   th.classList.add(asc?'asc':'desc');
   var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
   rows.sort(function(a,b){
    var x=a.cells[col],y=b.cells[col],vx=x.getAttribute('data-v'),vy=y.getAttribute('data-v');
    var c=(vx!==null&&vy!==null)?parseFloat(vx)-parseFloat(vy)
      :x.textContent.localeCompare(y.textContent);
    return asc?c:-c;});
   rows.forEach(function(r){body.appendChild(r);});
  });
 });
});
document.body.setAttribute('data-ready','1');
})();
"""


def _page(title: str, subtitle: str, sections: list[str], footer: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1><p class=\"sub\">{subtitle}</p>"
        + "".join(sections)
        + f"<footer>{footer}</footer><div id=\"tip\"></div><script>{_JS}</script>"
        "</body></html>\n"
    )


def _section(title: str, *parts: str, sid: str = "") -> str:
    idattr = f' id="{esc(sid)}"' if sid else ""
    return f"<section{idattr}><h2>{esc(title)}</h2>" + "".join(parts) + "</section>"


def _data_section(results: dict) -> str:
    ds = results.get("dataset") or {}
    rows = [
        ("dataset", ds.get("name", "-")),
        ("source", ds.get("source", "-")),
        ("images", f"{_int(ds.get('n_train'))} train / {_int(ds.get('n_test'))} test, "  # noqa: ISC004
                   f"{'x'.join(str(v) for v in ds.get('image_shape', []))}"),
        ("classes", _int(ds.get("n_classes"))),
        ("fingerprint (blake2b of the four arrays)", ds.get("fingerprint", "-")),
        ("test images used for every accuracy", _int(results.get("n_test_images"))),
        ("seed", str(results.get("seed", "-"))),
    ]
    if ds.get("note"):
        rows.append(("note", ds["note"]))
    return _section("Data", table(["", ""], rows, left=2), sid="data")


def _environment_section(results: dict) -> str:
    parts = []
    versions = results.get("versions")
    if versions:
        parts.append(table(["package", "version"], sorted(versions.items()), left=2))
    else:
        parts.append("<p>This results file records no versions (written by an older "
                     "netsqueeze).</p>")
    rows = [("device", results.get("device", "-")),
            ("torch threads", str(results.get("torch_threads", "-")))]
    if results.get("peak_rss_mb") is not None:
        rows.append(("peak memory (RSS)", f"{results['peak_rss_mb']:.0f} MiB"))
    parts.append(table(["", ""], rows, left=2))
    wt = results.get("wall_times") or {}
    if wt:
        parts.append("<h3>Wall times</h3>")
        parts.append(table(["stage", "seconds"], [(k, (f"{v:.1f}", v)) for k, v in wt.items()]))
    return _section("Versions and machine", *parts, sid="versions")


# ------------------------------------------------------------------------------------------
# zero-weights
# ------------------------------------------------------------------------------------------


def _zero_weights_answers(r: dict) -> str:
    a = r["answers"]
    n_w = r["model"]["weights"]
    tol = a["tolerance_pp"]
    thr = r["threshold_sweep"]
    items = []
    z = a.get("zero")
    if z:
        items.append(
            f"<b>{_pct(z['zero_fraction'])} of the weights can be zeroed for &le; {tol:g} pp "
            f"accuracy</b> (threshold {z['threshold']:.4f}: accuracy {z['accuracy']:.4f}, "
            f"{esc(_vs_trained(z['drop_pp']))})."
        )
    else:
        items.append(f"No threshold keeps accuracy within {tol:g} pp of the trained model.")
    zl = a.get("zero_lossless")
    if zl:
        items.append(f"Without any loss of accuracy: {_pct(zl['zero_fraction'])} "
                     f"(threshold {zl['threshold']:.4f}).")
    else:
        items.append(f"No threshold keeps the trained accuracy exactly (the smallest, "
                     f"{thr['thresholds'][0]:.4f}, gives {thr['accuracy'][0]:.4f}).")
    per_layer = per_layer_answer(a)
    if per_layer:
        items.append(esc(per_layer.replace("**", "")))
    c = a.get("clusters_within_tolerance")
    if c:
        items.append(
            f"<b>{c['distinct_weights']:,} distinct values instead of {n_w:,} "
            f"({c['reduction']:.0f}x fewer)</b> for &le; {tol:g} pp: clusters per layer "
            f"{esc(c['clusters'])} (step {c['step']}), accuracy {c['accuracy']:.4f} "
            f"({esc(_vs_trained(c['drop_pp']))})."
        )
    else:
        items.append(f"No cluster step keeps accuracy within {tol:g} pp of the trained model.")
    nb = a.get("clusters_notebook_rule")
    if nb:
        items.append(
            f"The notebook's rule (last step before a drop of more than {nb['max_drop']:g}) "
            f"picks step {nb['step']}: {nb['distinct_weights']:,} distinct values "
            f"({nb['reduction']:.0f}x fewer), accuracy {nb['accuracy']:.4f}."
        )
    for key, label in (("threshold", "at the chosen threshold"),
                       ("clusters", "at the chosen cluster step")):
        ch = (r.get("chosen_files") or {}).get(key)
        if ch:
            items.append(
                f"<code>{esc(ch['path'])}</code> holds the model {label}: "
                f"<b>{ch['bytes']:,} bytes</b> ({ch['ratio_to_dense']:.1f}x smaller than "
                f"dense float32), decoded accuracy {ch['accuracy']:.4f} (the sweep measured "
                f"{ch['sweep_accuracy']:.4f})."
            )
    return "<ul class=\"answers\">" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _zero_weights_figures(r: dict) -> list[str]:
    thr, clu, a = r["threshold_sweep"], r["cluster_sweep"], r["answers"]
    tol = a["tolerance_pp"]
    n_test = r["n_test_images"]
    ts = thr["thresholds"]
    z = a.get("zero")
    figs = []
    series = []
    for name in thr["layers"]:
        zf = thr["zero_fraction"][name]
        series.append({"name": name, "x": ts, "y": zf,
                       "tips": [f"{name}: t={t:.4f}, {100 * v:.1f} % zero"
                                for t, v in zip(ts, zf, strict=True)]})
    series.append({"name": "all weights", "x": ts, "y": thr["overall_zero_fraction"],
                   "color": "#000", "dash": True,
                   "tips": [f"all weights: t={t:.4f}, {100 * v:.1f} % zero, accuracy {acc:.4f}"
                            for t, v, acc in zip(ts, thr["overall_zero_fraction"],
                                                 thr["accuracy"], strict=True)]})
    marks = []
    if z:
        marks.append({"x": z["threshold"], "y": z["zero_fraction"], "color": RED,
                      "label": f"chosen: {100 * z['zero_fraction']:.1f} % zero (<= {tol:g} pp)"})
    figs.append(line_chart(
        "fig-zero-fraction", "Zero weights per layer", series, marks=marks,
        vlines=[z["threshold"]] if z else [], ylim=(0, 1),
        xlabel="threshold t (|w| < t set to 0)", ylabel="fraction of weights that are zero",
        caption="Fraction of each layer's weights below the threshold (biases not counted).",
    ))
    base = thr["baseline_accuracy"]
    marks = []
    if z:
        marks.append({"x": z["threshold"], "y": z["accuracy"], "color": RED,
                      "label": f"chosen: t={z['threshold']:.4f}, "
                               f"{100 * z['zero_fraction']:.1f} % zero"})
    figs.append(line_chart(
        "fig-threshold-accuracy", "Accuracy vs threshold",
        [{"name": "pruned model", "x": ts, "y": thr["accuracy"],
          "tips": [f"t={t:.4f}: accuracy {acc:.4f}, {100 * zf:.1f} % of weights zero"
                   for t, acc, zf in zip(ts, thr["accuracy"], thr["overall_zero_fraction"],
                                         strict=True)]}],
        hlines=[(base, f"trained: {base:.4f}", GRAY),
                (base - tol / 100, f"trained - {tol:g} pp", "#bbbbbb")],
        marks=marks, xlabel="threshold t", ylabel=f"test accuracy ({n_test:,} images)",
        caption="Every weight (and bias, when the run zeroed them) with |w| < t set to 0; "
                "accuracy on the whole test set.",
    ))
    steps = list(range(1, len(clu["accuracy"]) + 1))
    marks = []
    for key, color, shape, label in (
        ("clusters_notebook_rule", ORANGE, "square", "notebook rule"),
        ("clusters_within_tolerance", RED, "ring", f"fewest values within {tol:g} pp"),
    ):
        c = a.get(key)
        if c:
            marks.append({"x": c["step"], "y": c["accuracy"], "color": color, "shape": shape,
                          "label": f"{label}: {c['distinct_weights']} values {c['clusters']}"})
    base = clu["baseline_accuracy"]
    figs.append(line_chart(
        "fig-cluster-accuracy", "Accuracy vs number of clusters",
        [{"name": "clustered model", "x": steps, "y": clu["accuracy"],
          "tips": [f"step {s}: clusters {k}, {d:,} distinct values, accuracy {acc:.4f}"
                   for s, k, d, acc in zip(steps, clu["clusters"], clu["distinct_weights"],
                                           clu["accuracy"], strict=True)]}],
        hlines=[(base, f"trained: {base:.4f}", GRAY),
                (base - tol / 100, f"trained - {tol:g} pp", "#bbbbbb")],
        marks=marks, xticks=[(s, str(d)) for s, d in zip(steps, clu["distinct_weights"],
                                                          strict=True)],
        xtick_rotate=True,
        xlabel="cluster step (tick: distinct weight values, summed over layers)",
        ylabel=f"test accuracy ({n_test:,} images)",
        caption="Each layer's weights replaced by k-means centres; the schedule shrinks the "
                "number of clusters step by step.",
    ))
    return figs


def _file_layers_table(layers: dict | list, table_id: str) -> str:
    """The per-layer breakdown of a .nsq file (from compressed_report or results['file'])."""
    items = layers.items() if isinstance(layers, dict) else [(x["name"], x) for x in layers]
    rows = []
    for name, x in items:
        k = x.get("codebook_size") if x.get("values") == "codebook" else None
        rows.append([
            name or "(model)", x.get("kind") or "-",
            (_int(x.get("weights")), x.get("weights")),
            (_pct(x.get("kept")), x.get("kept")),
            (_int(k) if k is not None else "raw", k if k is not None else -1),
            (_num(x.get("index_bits")), x.get("index_bits")),
            (_num(x.get("gap_bits")), x.get("gap_bits")),
            (_num(x.get("bits_per_weight")), x.get("bits_per_weight")),
            (_pct(x.get("huffman_saving")), x.get("huffman_saving")),
            (_int(x.get("bytes")), x.get("bytes")),
            (_int(x.get("dense_bytes")), x.get("dense_bytes")),
            (f"{x['ratio']:.1f}x" if x.get("ratio") else "-", x.get("ratio")),
        ])
    return table(["layer", "kind", "weights", "kept", "k", "bits/index", "bits/gap",
                  "bits/weight", "Huffman saving", "bytes", "dense bytes", "vs dense"], rows,
                 sortable=True, table_id=table_id, left=2)


def _zero_weights_tables(r: dict) -> list[str]:
    a, thr, clu = r["answers"], r["threshold_sweep"], r["cluster_sweep"]
    n_test = r["n_test_images"]
    tol = a["tolerance_pp"]
    out = []
    by_tol = a.get("zero_by_tolerance") or []
    if by_tol:
        out.append("<h3>How much can be zeroed for a given loss</h3>")
        out.append(table(["accuracy loss", "weights zeroed", "threshold", "accuracy"], [
            [f"<= {x['tolerance_pp']:g} pp",
             ("none" if x["zero_fraction"] is None else _pct(x["zero_fraction"]),
              x["zero_fraction"]),
             "" if x["threshold"] is None else f"{x['threshold']:.4f}", _acc(x["accuracy"])]
            for x in by_tol]))
        out.append(f"<p>One test image is {100 / n_test:g} pp of accuracy.</p>")
    z = a.get("zero")
    if z:
        out.append("<h3>Zero fraction per layer at the chosen threshold</h3>")
        rows = [[name, (f"{w:,}", w), (_pct(z["zero_fraction_per_layer"][name]),
                                      z["zero_fraction_per_layer"][name])]
                for name, w in zip(thr["layers"], thr["layer_weights"], strict=True)]
        out.append(table(["layer", "weights", "zeroed"], rows, sortable=True,
                         table_id="tbl-zero-per-layer",
                         total=["all", f"{r['model']['weights']:,}",
                                _pct(z["zero_fraction"])]))
    out.append("<h3>Cluster sweep</h3>")
    nb, c = a.get("clusters_notebook_rule"), a.get("clusters_within_tolerance")
    rows = []
    for i, (ks, d, acc) in enumerate(zip(clu["clusters"], clu["distinct_weights"],
                                         clu["accuracy"], strict=True)):
        mark = []
        if nb and nb["index"] == i:
            mark.append("notebook rule")
        if c and c["index"] == i:
            mark.append(f"within {tol:g} pp")
        rows.append([(str(i + 1), i + 1), str(ks), (f"{d:,}", d),
                     (_int(clu["distinct_biases"][i]), clu["distinct_biases"][i]),
                     (_acc(acc), acc), ", ".join(mark)])
    out.append(table(["step", "clusters per layer", "distinct weights", "distinct biases",
                      "accuracy", "chosen"], rows, sortable=True, table_id="tbl-cluster-sweep"))
    out.append("<details><summary>Threshold sweep: every point</summary>")
    rows = []
    for i, t in enumerate(thr["thresholds"]):
        rows.append([(f"{t:.4f}", t)]
                    + [(_pct(thr["zero_fraction"][n][i]), thr["zero_fraction"][n][i])
                       for n in thr["layers"]]
                    + [(_pct(thr["overall_zero_fraction"][i]), thr["overall_zero_fraction"][i]),
                       (_acc(thr["accuracy"][i]), thr["accuracy"][i])])
    out.append(table(["threshold", *thr["layers"], "all weights", "accuracy"], rows,
                     sortable=True, table_id="tbl-threshold-sweep"))
    out.append("</details>")
    chosen = r.get("chosen_files") or {}
    if chosen:
        out.append("<h3>The chosen points as files</h3>")
        rows = []
        for key, ch in chosen.items():
            rows.append([ch["path"], key, ch.get("setting", ""), (f"{ch['bytes']:,}", ch["bytes"]),
                         (f"{ch['ratio_to_dense']:.1f}x", ch["ratio_to_dense"]),
                         (_acc(ch["accuracy"]), ch["accuracy"]),
                         (_acc(ch["sweep_accuracy"]), ch["sweep_accuracy"])])
        out.append(table(["file", "point", "setting", "bytes", "vs dense",
                          "accuracy (decoded file)", "accuracy (sweep)"], rows, left=3))
        for key, ch in chosen.items():
            if ch.get("layers"):
                out.append(f"<h4>Per layer: {esc(ch['path'])}</h4>")
                out.append(_file_layers_table(ch["layers"], f"tbl-file-{key}"))
    return out


def _render_zero_weights(r: dict) -> str:
    ds = r["dataset"]
    title = f"How many weights can we zero? {r['model']['name']} on {ds['name']}"
    sub = (f"Trained test accuracy <b>{r['train']['accuracy']:.4f}</b> on the whole test set "
           f"({r['n_test_images']:,} images), seed {esc(r['seed'])}, "
           f"{_int(r['train']['log'].get('iterations', 0))} iterations.")
    layers = r["model"]["layers"]
    model_tbl = table(["layer", "kind", "shape", "weights"],
                      [[x["name"], x["kind"], "x".join(map(str, x["shape"])),
                        (f"{x['weights']:,}", x["weights"])] for x in layers],
                      total=["all", "", "", f"{r['model']['weights']:,}"], left=3)
    sections = [
        _section("Answers", _zero_weights_answers(r), sid="answers"),
        _section("Figures", *_zero_weights_figures(r), sid="figures"),
        _section("Tables", *_zero_weights_tables(r), sid="tables"),
        _section("Model", model_tbl, sid="model"),
        _section("Settings", _kv_table(r["spec"]), sid="settings"),
        _data_section(r),
        _environment_section(r),
    ]
    return _page(title, sub, sections, _footer(r))


# ------------------------------------------------------------------------------------------
# compress
# ------------------------------------------------------------------------------------------


def _compress_answers(r: dict) -> str:
    s = r["summary"]
    items = [
        f"<b>Top-1 error {s['trained_error_pct']:.2f} % &rarr; {s['final_error_pct']:.2f} %</b> "  # noqa: ISC004
        f"({-s['drop_pp']:+.2f} pp accuracy) with <b>{_pct(s['kept_fraction'])} of the "
        f"weights kept</b> ({s['kept']:,} of {s['weights']:,})."
    ]
    f = r.get("file")
    if f:
        t = f["totals"]
        items.append(
            f"<b>model.nsq: {t['file_bytes']:,} bytes, {t['ratio_to_dense']:.1f}x smaller than "
            f"the dense float32 model</b> ({t['dense_bytes']:,} bytes); "
            f"{_num(t.get('bits_per_weight'))} bits per stored weight."
        )
        b = f.get("baseline") or {}
        if b.get("gzip_bytes"):
            items.append(f"torch.save + gzip -9 of the same compressed model: "
                         f"{b['gzip_bytes']:,} bytes (model.nsq is "
                         f"{b['gzip_bytes'] / t['file_bytes']:.1f}x smaller).")
        if t.get("entropy_overhead") is not None:
            items.append(f"Huffman coding saves {_pct(t.get('huffman_saving') or 0)} over "
                         f"fixed-width codes; the coded streams are "
                         f"{_pct(t['entropy_overhead'], 2)} above their entropy bound.")
    last = r["stages"][-1]
    items.append(f"{last['distinct_nonzero']:,} distinct non-zero values remain.")
    ov = (r.get("spec") or {}).get("overrides")
    if ov:
        items.append("Recipe overridden on the command line: "
                     + esc(", ".join(f"--{k} {v}" for k, v in ov.items())) + ".")
    return "<ul class=\"answers\">" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _compress_figures(r: dict) -> list[str]:
    stages = r["stages"]
    n_test = r["n_test_images"]
    xs = list(range(1, len(stages) + 1))
    err = [100 * (1 - s["accuracy"]) for s in stages]
    series = [{"name": "after the stage", "x": xs, "y": err,
               "tips": [f"{s['stage']}: top-1 error {e:.2f} %, {100 * s['kept']:.1f} % kept, "
                        f"{s['distinct_nonzero']:,} distinct values"
                        for s, e in zip(stages, err, strict=True)]}]
    before = [(i + 1, 100 * (1 - s["accuracy_before_retrain"]), s["stage"])
              for i, s in enumerate(stages) if s.get("accuracy_before_retrain") is not None]
    if before:
        series.append({"name": "pruned, before retraining", "x": [b[0] for b in before],
                       "y": [b[1] for b in before], "color": RED,
                       "tips": [f"{b[2]} before retraining: top-1 error {b[1]:.2f} %"
                                for b in before]})
    figs = [line_chart(
        "fig-stages", "Error through the pipeline", series,
        xticks=[(x, s["stage"]) for x, s in zip(xs, stages, strict=True)], xtick_rotate=True,
        xlabel="stage", ylabel=f"top-1 error, % ({n_test:,} test images)",
        caption="Top-1 error on the whole test set after every stage (red: right after a "
                "pruning round, before retraining).",
    )]
    dists = r.get("distributions") or {}
    snaps = list(dists)
    layers = list(dists[snaps[0]]) if snaps else []
    if layers:
        cells = [f'<div class="grid-hists" style="grid-template-columns:70px '  # noqa: ISC004
                 f'repeat({len(snaps)},1fr)"><div></div>']
        cells += [f'<div class="rowname">{esc(s)}</div>' for s in snaps]
        for layer in layers:
            cells.append(f'<div class="rowname">{esc(layer)}</div>')
            for snap in snaps:
                d = dists[snap].get(layer)
                if d is None:
                    cells.append("<div></div>")
                    continue
                spikes = "values" in d and len(d["values"]) <= 256 and snap.startswith("shared")
                cells.append("<div>" + _histogram_cell(d, f"{layer}, {snap}", spikes=spikes)
                             + "</div>")
        cells.append("</div>")
        figs.append(
            '<figure class="fig" id="fig-weight-distribution" '
            'data-figure="fig-weight-distribution"><div class="ttl"><b>Weight distribution '
            "per layer (zeros not drawn)</b></div>" + "".join(cells)
            + "<figcaption>Histogram of each layer's non-zero weights; after sharing, one "
            "line per shared value (its height: how many weights use it).</figcaption>"
            "</figure>")
    return figs


def _compress_tables(r: dict) -> list[str]:
    out = ["<h3>Stages</h3>"]
    rows = []
    for st in r["stages"]:
        before = st.get("accuracy_before_retrain")
        rows.append([st["stage"], (_acc(st["accuracy"]), st["accuracy"]),
                     (f"{100 * (1 - st['accuracy']):.2f} %", 1 - st["accuracy"]),
                     ("" if before is None else _acc(before), before),
                     (_pct(st["kept"]), st["kept"]),
                     (f"{st['distinct_nonzero']:,}", st["distinct_nonzero"]),
                     (f"{st['seconds']:.0f}", st["seconds"])])
    out.append(table(["stage", "accuracy", "top-1 error", "before retraining", "weights kept",
                      "distinct non-zero", "seconds"], rows, table_id="tbl-stages"))
    s = r["summary"]
    out.append("<h3>Per layer (the paper's format)</h3>")
    rows = []
    has_file = any("file_bytes" in x for x in r["table"])
    for x in r["table"]:
        row = [x["layer"], (f"{x['weights']:,}", x["weights"]),
               (_pct(x["kept_fraction"]), x["kept_fraction"]), (str(x["bits"]), x["bits"]),
               (str(x["gap_bits"]), x["gap_bits"]), (f"{x['fillers']:,}", x["fillers"]),
               (f"{x['estimated_bytes']:,.0f}", x["estimated_bytes"]),
               (f"{x['ratio']:.1f}x", x["ratio"])]
        if has_file:
            fb = x.get("file_bytes")
            row += [(_int(fb), fb),
                    ("-" if fb is None else f"{x['file_ratio']:.1f}x", x.get("file_ratio"))]
        rows.append(row)
    headers = ["layer", "weights", "kept (P)", "weight bits (P+Q)", "index bits",
               "filler zeros", "paper formula, bytes", "vs dense"]
    total = ["total", f"{s['weights']:,}", _pct(s["kept_fraction"]), "", "", "",
             f"{s['estimated_bytes']:,.0f}", f"{s['estimated_ratio']:.1f}x"]
    if has_file:
        rb = sum(x.get("file_bytes", 0) for x in r["table"])
        headers += ["in the file (P+Q+H), bytes", "vs dense"]
        total += [f"{rb:,}", f"{s['dense_bytes'] / rb:.1f}x" if rb else "-"]
    out.append(table(headers, rows, sortable=True, table_id="tbl-paper", total=total))
    out.append("<p>Paper formula: each stored entry (kept weights and filler zeros) costs "
               "weight bits + index bits, plus a 32-bit codebook entry per shared value. 'In "
               "the file' is what model.nsq spends on the layer's weight and bias records.</p>")
    f = r.get("file")
    if f:
        out.append("<h3>Per layer: where the bytes of model.nsq go</h3>")
        out.append(_file_layers_table(f["layers"], "tbl-file"))
        t = f["totals"]
        rows = [("file", _bytes(t["file_bytes"])),
                ("records / header and framing", f"{t['records_bytes']:,} / "  # noqa: ISC004
                                                  f"{t['overhead_bytes']:,} B"),
                ("dense float32", _bytes(t["dense_bytes"])),
                ("ratio to dense", f"{t['ratio_to_dense']:.2f}x")]
        if t.get("entropy_bytes"):
            rows.append(("symbol streams / entropy bound",
                         f"{t['stream_bytes']:,} / {t['entropy_bytes']:,.0f} B"))
        if t.get("paper_bytes"):
            rows.append(("paper's formula", f"{t['paper_bytes']:,.0f} B "  # noqa: ISC004
                                            f"({t['paper_vs_actual']:.2f}x of written)"))
        b = f.get("baseline") or {}
        if b.get("gzip_bytes"):
            rows.append(("torch.save + gzip -9", _bytes(b["gzip_bytes"])))
        out.append(table(["totals", ""], rows, left=2))
    return out


def _render_compress(r: dict) -> str:
    spec = r["spec"]
    title = f"Deep Compression of {spec['model']} on {r['dataset']['name']}"
    recipe = r["recipe"]
    sub = (f"Recipe <code>{esc(recipe.get('name'))}</code>; accuracy on the whole test set "
           f"({r['n_test_images']:,} images), seed {esc(r['seed'])}.")
    settings = [_kv_table(spec, "spec"), "<h3>Recipe</h3>",
                f"<p>{esc(recipe.get('description', ''))}</p>" if recipe.get("description")
                else "", _kv_table({k: v for k, v in recipe.items()
                                    if k not in ("name", "description")}, "recipe")]
    sections = [
        _section("Answers", _compress_answers(r), sid="answers"),
        _section("Figures", *_compress_figures(r), sid="figures"),
        _section("Tables", *_compress_tables(r), sid="tables"),
        _section("Settings", *settings, sid="settings"),
        _data_section(r),
        _environment_section(r),
    ]
    return _page(title, sub, sections, _footer(r))


# ------------------------------------------------------------------------------------------


def _footer(r: dict) -> str:
    v = (r.get("versions") or {}).get("netsqueeze")
    return (f"Rendered from results.json (kind {esc(r['kind'])}"
            + (f", written by netsqueeze {esc(v)}" if v else "")
            + "); redraw with <code>netsqueeze report RUN_DIR</code>. "
            "Self-contained: no network is needed to view this page.")


_RENDERERS = {"zero-weights": _render_zero_weights, "compress": _render_compress}


def figure_ids(results: dict) -> list[str]:
    """The ids of the figures :func:`render_report` draws for these results."""
    if results.get("kind") == "zero-weights":
        return ["fig-zero-fraction", "fig-threshold-accuracy", "fig-cluster-accuracy"]
    if results.get("kind") == "compress":
        return ["fig-stages"] + (["fig-weight-distribution"] if results.get("distributions")
                                 else [])
    return []


def render_report(results: dict) -> str:
    """The self-contained HTML page of a ``zero-weights`` or ``compress`` results dict."""
    kind = results.get("kind") if isinstance(results, dict) else None
    if kind not in _RENDERERS:
        raise FormatError(f"no report for results of kind {kind!r}; expected one of "
                          f"{', '.join(_RENDERERS)}")
    return _RENDERERS[kind](results)


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Read ``RUN_DIR/results.json`` and write the report (``RUN_DIR/report.html``).

    ``run_dir`` may also be the results.json file itself. Returns the path written.

    Raises
    ------
    FileNotFoundError
        No results.json there.
    netsqueeze.FormatError
        Not a results file, or one lacking a field the report needs.
    """
    from netsqueeze.core.fileio import atomic_write_text

    p = Path(run_dir)
    src = p if p.is_file() else p / "results.json"
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file; give the output folder of a finished "
                                "zero-weights or compress run")
    try:
        results = json.loads(src.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{src}: not valid JSON ({exc}); was the run interrupted?") from None
    if not isinstance(results, dict) or "kind" not in results:
        raise FormatError(f"{src}: not a netsqueeze results file (no 'kind' field)")
    if results["kind"] not in _RENDERERS:
        raise FormatError(f"{src}: no report for results of kind {results['kind']!r}; expected "
                          f"one of {', '.join(_RENDERERS)}")
    try:
        text = render_report(results)
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as exc:
        raise FormatError(f"{src}: results of kind {results['kind']!r} lack a field the report "
                          f"needs ({exc!r}); re-run the experiment with this version") from None
    dest = Path(out) if out is not None else src.parent / REPORT_NAME
    atomic_write_text(dest, text)
    return dest
