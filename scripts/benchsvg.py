"""The benchmark picture, hand-written SVG (no dependencies): throughput bars and latency CDFs.

draw(title, subtitle_lines, bar_panels, cdf_charts) returns the SVG text.

- bar_panels: [{"title": str, "bars": [{"label", "kind" (ceiling, macklake, connect or disk: the
  colour), "ratio" (× ceiling), "rate" (records/s), "bad": bool, "clip": bool}]}]
  Horizontal bars, two panels per row, length = × ceiling of the same round (median), labelled with
  the ratio and records/s; a bar whose record count was wrong is hatched red and says so. Bars marked
  "clip" (the disk's ceiling) do not set the scale: if longer, they are cut with a break mark.
- cdf_charts: [{"title": str, "curves": [{"label", "points": [[p, ms], ...]}]}]
  x: latency in ms, log scale; y: percentile, linear from 0 to 90 % (two fifths of the height), then
  tail-stretched (90, 99, 99.9, 99.99 % equally spaced: −log10(1 − p)), the maximum at the top.
"""
import math
from xml.sax.saxutils import escape

WIDTH = 1200
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
BAR_COLORS = {"ceiling": "#8c8c8c", "disk": "#6b8e23", "connect": "#e08a1e", "macklake": "#1f6fb4"}
CURVE_COLORS = ["#1f6fb4", "#6baed6", "#c0392b", "#f39c12", "#2e8b57", "#8e44ad", "#7f8c8d", "#d35400"]
BODY = 2.0           # height of 0..90 %, in units of one tail decade (90 → 99 %)
Y_TAIL = BODY + 3.0  # p = 0.9999
Y_MAX = Y_TAIL + 0.6  # where the maximum is drawn


def _bar_color(bar):
    return BAR_COLORS.get(bar.get("kind"), "#555")


def _text(x, y, s, size=12, anchor="start", weight="normal", fill="#222", extra=""):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{fill}" {extra}>{escape(str(s))}</text>')


def _nice_step(vmax, ticks=5):
    """1, 2 or 5 × 10^k, so that about `ticks` grid lines cover 0..vmax."""
    raw = vmax / ticks
    k = 10 ** math.floor(math.log10(raw))
    return next(m * k for m in (1, 2, 2.5, 5, 10) if m * k >= raw)


def _bar_panel(x0, y0, w, panel):
    bars = panel["bars"]
    label_w, value_w = 140, 190
    plot_w = w - label_w - value_w
    top = y0 + 40
    row = 26
    out = [_text(x0, y0 + 16, panel["title"], 14, weight="bold")]
    top_ratio = max([1.0] + [b["ratio"] or 0 for b in bars if not b.get("clip")])
    step = _nice_step(top_ratio)
    vmax = math.ceil(top_ratio / step - 1e-9) * step
    scale = plot_w / vmax
    h = row * len(bars)
    # grid and ticks (× ceiling)
    t = 0.0
    while t <= vmax + 1e-9:
        x = x0 + label_w + t * scale
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{top + h}" stroke="#ddd" stroke-width="1"/>')
        out.append(_text(x, top + h + 14, f"{t:g}×", 10, "middle", fill="#666"))
        t += step
    for i, b in enumerate(bars):
        y = top + i * row
        ratio = b["ratio"] or 0
        color = _bar_color(b)
        out.append(_text(x0 + label_w - 8, y + row / 2 + 4, b["label"], 12, "end"))
        fill = "url(#bad)" if b.get("bad") else color
        clipped = ratio > vmax
        length = min(ratio, vmax) * scale
        out.append(f'<rect x="{x0 + label_w:.1f}" y="{y + 4:.1f}" width="{max(length, 1):.1f}" height="{row - 8}" '
                   f'fill="{fill}" stroke="{color}" stroke-width="1"/>')
        if clipped:
            bx = x0 + label_w + length - 14
            out.append(f'<path d="M{bx:.1f},{y + 2} l5,{row - 4} M{bx + 5:.1f},{y + 2} l5,{row - 4}" '
                       f'stroke="#fff" stroke-width="3"/>')
        ratio = min(ratio, vmax)
        value = f"{b['ratio']:.2f}× · {b['rate']:,.0f}/s" if b.get("rate") else "no result"
        if b.get("bad"):
            value += " · COUNT WRONG"
        out.append(_text(x0 + label_w + ratio * scale + 6, y + row / 2 + 4, value, 11,
                         fill="#b00" if b.get("bad") else "#222"))
    out.append(_text(x0 + label_w, top + h + 28, "× ceiling of the same round (median over rounds)", 10, fill="#666"))
    return out, 40 + h + 40


def _y_of_p(p):
    if p >= 1.0:
        return Y_MAX
    if p <= 0.9:
        return BODY * p / 0.9
    return min(Y_TAIL, BODY - 1 - math.log10(1 - p))


def _cdf_chart(x0, y0, w, chart):
    h = 380
    left, right, top, bottom = 70, 260, 36, 50
    pw, ph = w - left - right, h - top - bottom
    px, py = x0 + left, y0 + top
    curves = [c for c in chart["curves"] if c["points"]]
    out = [_text(x0, y0 + 16, chart["title"], 14, weight="bold")]
    if not curves:
        out.append(_text(px, py + 20, "no data", 12))
        return out, h
    lo = min(max(p[1], 0.01) for c in curves for p in c["points"])
    hi = max(p[1] for c in curves for p in c["points"])
    d0, d1 = math.floor(math.log10(lo)), math.ceil(math.log10(max(hi, lo * 10)))

    def sx(ms):
        return px + (math.log10(max(ms, 10 ** d0)) - d0) / (d1 - d0) * pw

    def sy(v):
        return py + ph - v / Y_MAX * ph

    out.append(f'<rect x="{px}" y="{py}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>')
    for d in range(d0, d1 + 1):
        for m in (1, 2, 5):
            v = m * 10 ** d
            if v > 10 ** d1 * 1.0001:
                break
            x = sx(v)
            out.append(f'<line x1="{x:.1f}" y1="{py}" x2="{x:.1f}" y2="{py + ph}" stroke="{"#ccc" if m == 1 else "#eee"}"/>')
            out.append(_text(x, py + ph + 16, f"{v:g}", 10, "middle", fill="#444" if m == 1 else "#888"))
    out.append(_text(px + pw / 2, py + ph + 36, "latency, append → readable in the sink file (ms, log scale)", 12, "middle"))
    for label, v in (("0", 0), ("25", _y_of_p(0.25)), ("50", _y_of_p(0.5)), ("75", _y_of_p(0.75)),
                     ("90", _y_of_p(0.9)), ("99", _y_of_p(0.99)), ("99.9", _y_of_p(0.999)),
                     ("99.99", _y_of_p(0.9999)), ("max", Y_MAX)):
        y = sy(v)
        out.append(f'<line x1="{px}" y1="{y:.1f}" x2="{px + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(_text(px - 6, y + 4, label, 10, "end", fill="#444"))
    out.append(_text(x0 + 14, py + ph / 2, "percentile (linear to 90, then log tail)", 12, "middle",
                     extra=f'transform="rotate(-90 {x0 + 14} {py + ph / 2})"'))
    for i, c in enumerate(curves):
        color = c.get("color") or CURVE_COLORS[i % len(CURVE_COLORS)]
        dash = ' stroke-dasharray="6 3"' if c.get("dashed") else ""
        pts = " ".join(f"{sx(ms):.1f},{sy(_y_of_p(p)):.1f}" for p, ms in c["points"])
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        ly = py + 10 + i * 34
        lx = px + pw + 16
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 28}" y2="{ly}" stroke="{color}" stroke-width="2.5"{dash}/>')
        out.append(_text(lx + 34, ly + 4, c["label"], 12))
        if c.get("note"):
            out.append(_text(lx + 34, ly + 18, c["note"], 10, fill="#666"))
    return out, h


def draw(title, subtitle, bar_panels, cdf_charts):
    """subtitle: a list of lines."""
    body = []
    y = 48 + 16 * len(subtitle) + 8
    col_w = (WIDTH - 60) // 2
    for i in range(0, len(bar_panels), 2):
        row_h = 0
        for j, panel in enumerate(bar_panels[i:i + 2]):
            parts, h = _bar_panel(20 + j * (col_w + 20), y, col_w, panel)
            body += parts
            row_h = max(row_h, h)
        y += row_h + 10
    for chart in cdf_charts:
        parts, h = _cdf_chart(20, y, WIDTH - 40, chart)
        body += parts
        y += h + 10
    height = y + 10
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" {FONT}>',
            '<defs><pattern id="bad" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
            '<rect width="6" height="6" fill="#f6d5d5"/><line x1="0" y1="0" x2="0" y2="6" stroke="#c0392b" stroke-width="3"/>'
            '</pattern></defs>',
            f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
            _text(20, 30, title, 18, weight="bold")]
    head += [_text(20, 50 + 16 * i, line, 12, fill="#555") for i, line in enumerate(subtitle)]
    return "\n".join(head + body + ["</svg>"]) + "\n"
