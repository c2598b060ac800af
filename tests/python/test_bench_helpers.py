"""The benchmark harness's pure parts: percentiles, CDFs and the SVG picture (scripts/bench*.py)."""
import os
import sys
import xml.dom.minidom

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))

import benchlatency  # noqa: E402
import benchsvg  # noqa: E402


def test_nearest_rank_percentiles():
    xs = [float(i) for i in range(1, 101)]  # 1..100 ms
    assert benchlatency.percentile(xs, 50) == 50.0
    assert benchlatency.percentile(xs, 99) == 99.0
    assert benchlatency.percentile(xs, 99.9) == 100.0
    assert benchlatency.percentile(xs, 0) == 1.0
    assert benchlatency.percentile([], 50) is None


def test_cdf_is_monotonic_and_ends_at_the_maximum():
    xs = sorted(float(i % 997) for i in range(10_000))
    points = benchlatency.cdf(xs)
    ps = [p for p, _ in points]
    ms = [v for _, v in points]
    assert ps == sorted(ps) and ps[0] == 0.0 and ps[-1] == 1.0
    assert ms == sorted(ms)
    assert ms[-1] == max(xs)


def test_the_picture_is_well_formed_svg_with_every_label():
    panels = [{"title": "source, 1,000 × 100 B",
               "bars": [{"label": "ceiling", "ratio": 1.0, "rate": 1000.0, "bad": False, "clip": False, "kind": "ceiling"},
                        {"label": "macklake <alo> & co", "ratio": 1.5, "rate": 1500.0, "bad": True, "clip": False,
                         "kind": "macklake"}]}]
    curve = {"label": "at-least-once, 1,000 lines/s", "points": benchlatency.cdf([1.0, 2.0, 3.0, 50.0]),
             "color": "#1f6fb4", "dashed": False, "note": "p50 2.0 ms"}
    svg = benchsvg.draw("title", ["a subtitle"], panels, [{"title": "latency", "curves": [curve]}])
    doc = xml.dom.minidom.parseString(svg)  # raises on malformed XML (e.g. an unescaped "<" or "&")
    text = "".join(t.firstChild.data for t in doc.getElementsByTagName("text") if t.firstChild)
    assert "macklake <alo> & co" in text
    assert "at-least-once, 1,000 lines/s" in text
