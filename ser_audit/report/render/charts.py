"""Inline SVG charts for the HTML page: no scripts, fonts or images from anywhere else.

Every chart has a ``viewBox`` and no fixed size: the page's style sheet stretches it to the
content column, on a laptop and in print. Series are told apart three ways at once, so they
survive greyscale printing and colour-blindness: the Okabe–Ito palette, a marker shape and a
dash pattern each. The legend sits in its own band above the plot, so it never covers a mark;
reference lines (chance, threshold) are labelled at the right, outside the plotted area.
Data marks carry ``class="mark"`` and every legend element ``class="legend"`` (``scripts/check_html.py``
checks that the two never overlap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from ser_audit.report.render.escaping import html as escape

# Okabe & Ito (2008), "Color Universal Design": distinguishable under every common colour-vision deficiency.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("circle", "square", "triangle", "diamond")
DASHES = ("", "7 3", "2 3", "9 3 2 3")
WIDTH = 960
_LEFT, _RIGHT, _BOTTOM = 56, 110, 60

Values = Sequence[float | None]
Intervals = Mapping[str, tuple[Values, Values]]


@dataclass(frozen=True)
class Reference:
    """A labelled horizontal line: chance (dashed) or a threshold (dotted)."""

    value: float
    label: str
    dash: str = "5 4"


@dataclass(frozen=True)
class _Area:
    """The plotted rectangle of one panel, in viewBox units."""

    left: float
    top: float
    width: float
    height: float
    y_range: tuple[float, float] = (0.0, 1.0)

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height

    def y(self, value: float) -> float:
        low, high = self.y_range
        return self.top + (1 - (min(high, max(low, value)) - low) / (high - low)) * self.height


def _marker(k: int, x: float, y: float, title: str, size: float = 4.0) -> str:
    colour, kind = PALETTE[k % len(PALETTE)], MARKERS[k % len(MARKERS)]
    tip = f"<title>{escape(title)}</title>" if title else ""
    if kind == "circle":
        shape = f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="{size:.1f}" fill="{colour}">'
        return shape + tip + "</circle>"
    if kind == "square":
        s = size * 0.9
        return (f'<rect class="mark" x="{x - s:.1f}" y="{y - s:.1f}" width="{2 * s:.1f}" height="{2 * s:.1f}" '
                f'fill="{colour}">{tip}</rect>')
    if kind == "triangle":
        s = size * 1.2
        points = f"{x:.1f},{y - s:.1f} {x + s:.1f},{y + s * 0.8:.1f} {x - s:.1f},{y + s * 0.8:.1f}"
    else:
        s = size * 1.2
        points = f"{x:.1f},{y - s:.1f} {x + s:.1f},{y:.1f} {x:.1f},{y + s:.1f} {x - s:.1f},{y:.1f}"
    return f'<polygon class="mark" points="{points}" fill="{colour}">{tip}</polygon>'


def _legend(names: Sequence[str], *, bars: bool | None, left: float, top: float, width: float) -> tuple[str, float]:
    """The legend laid out in rows above the plot (``bars``: swatches; ``False``: line and marker; ``None``: the marker
    alone); returns its SVG and the height it takes."""
    if not names:
        return "", 0.0
    parts: list[str] = []
    x, y = left, top
    for k, name in enumerate(names):
        item = 40 + 6.4 * len(name)
        if x + item > left + width and x > left:
            x, y = left, y + 18
        if bars:
            parts.append(f'<rect class="legend" x="{x:.1f}" y="{y + 2:.1f}" width="14" height="10" '
                         f'fill="{PALETTE[k % len(PALETTE)]}" stroke="#222" stroke-width="0.5"/>')
        elif bars is False:
            dash = f' stroke-dasharray="{DASHES[k % len(DASHES)]}"' if DASHES[k % len(DASHES)] else ""
            parts.append(f'<line class="legend" x1="{x:.1f}" x2="{x + 26:.1f}" y1="{y + 7:.1f}" y2="{y + 7:.1f}" '
                         f'stroke="{PALETTE[k % len(PALETTE)]}" stroke-width="2"{dash}/>'
                         + _marker(k, x + 13, y + 7, "").replace(' class="mark"', ' class="legend"'))
        else:
            parts.append(_marker(k, x + 13, y + 7, "").replace(' class="mark"', ' class="legend"'))
        parts.append(f'<text class="legend" x="{x + 32:.1f}" y="{y + 11:.1f}" font-size="12">{escape(name)}</text>')
        x += item + 14
    return "".join(parts), y - top + 22


def _axes(area: _Area, y_label: str, references: Sequence[Reference], *, ticks: int = 5) -> list[str]:
    low, high = area.y_range
    parts = []
    for k in range(ticks):
        value = low + k * (high - low) / (ticks - 1)
        y = area.y(value)
        parts.append(f'<line x1="{area.left:.1f}" x2="{area.right:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>'
                     f'<text x="{area.left - 6:.1f}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{value:.2g}</text>')
    parts.append(f'<line x1="{area.left:.1f}" x2="{area.left:.1f}" y1="{area.top:.1f}" y2="{area.bottom:.1f}" '
                 'stroke="#888"/>')
    placed: list[float] = []
    for reference in sorted(references, key=lambda r: -r.value):
        y = area.y(reference.value)
        label_y = y + 4
        while any(abs(label_y - other) < 12 for other in placed):
            label_y += 12
        placed.append(label_y)
        parts.append(f'<line x1="{area.left:.1f}" x2="{area.right:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#333" '
                     f'stroke-width="1.2" stroke-dasharray="{reference.dash}"/>'
                     f'<text x="{area.right + 4:.1f}" y="{label_y:.1f}" font-size="11">{escape(reference.label)}</text>')
    if y_label:
        middle = (area.top + area.bottom) / 2
        parts.append(f'<text x="{area.left - 40:.1f}" y="{middle:.0f}" font-size="12" text-anchor="middle" '
                     f'transform="rotate(-90 {area.left - 40:.1f} {middle:.0f})">{escape(y_label)}</text>')
    return parts


def _rotated(labels: Sequence[str], width: float) -> bool:
    """Whether the x labels must turn to fit their slots."""
    return any(6.5 * len(label) > width / max(1, len(labels)) for label in labels)


def _bottom(labels: Sequence[str], width: float) -> float:
    return _BOTTOM if _rotated(labels, width) else 30


def _x_labels(area: _Area, positions: Sequence[float], labels: Sequence[str]) -> list[str]:
    rotate = _rotated(labels, area.width)
    parts = []
    for x, label in zip(positions, labels):
        y = area.bottom + 15
        turn = f' transform="rotate(-30 {x:.1f} {y:.1f})"' if rotate else ""
        parts.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="11" text-anchor="{"end" if rotate else "middle"}"'
                     f"{turn}>{escape(label)}</text>")
    return parts


def _figure(title: str, height: float, parts: Sequence[str]) -> str:
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
           f'aria-label="{escape(title)}">{"".join(parts)}</svg>')
    return f"<figure>{svg}<figcaption>{escape(title)}</figcaption></figure>"


def _whisker(x: float, low: float, high: float, area: _Area, colour: str = "#333", cap: float = 3.0) -> str:
    top, bottom = area.y(high), area.y(low)
    stroke = f'stroke="{colour}" stroke-width="1"'
    return (f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{bottom:.1f}" {stroke}/>'
            + "".join(f'<line x1="{x - cap:.1f}" x2="{x + cap:.1f}" y1="{y:.1f}" y2="{y:.1f}" {stroke}/>'
                      for y in (top, bottom)))


def line_chart(title: str, labels: Sequence[str], series: Mapping[str, Values], *,
               errors: Intervals | None = None, y_label: str = "", references: Sequence[Reference] = (),
               y_range: tuple[float, float] = (0.0, 1.0), height: float = 300) -> str:
    """Series over categorical x positions; ``None`` leaves a gap; optional 95% whiskers (series dodged apart)."""
    legend, legend_height = _legend(list(series), bars=False, left=_LEFT, top=8, width=WIDTH - _LEFT - _RIGHT)
    bottom = _bottom(labels, WIDTH - _LEFT - _RIGHT)
    area = _Area(_LEFT, 14 + legend_height, WIDTH - _LEFT - _RIGHT, height - bottom - 14 - legend_height, y_range)
    step = area.width / max(1, len(labels))
    centres = [area.left + (i + 0.5) * step for i in range(len(labels))]
    parts = [legend, *_axes(area, y_label, references), *_x_labels(area, centres, labels)]
    dodge = min(8.0, step / (2 * max(1, len(series)))) if errors else 0.0
    for k, (name, values) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        shift = (k - (len(series) - 1) / 2) * dodge
        xs = [c + shift for c in centres]
        run: list[str] = []
        dash = f' stroke-dasharray="{DASHES[k % len(DASHES)]}"' if DASHES[k % len(DASHES)] else ""
        for i, value in enumerate([*values, None]):
            if value is not None:
                run.append(f"{xs[i]:.1f},{area.y(value):.1f}")
                continue
            if len(run) > 1:
                parts.append(f'<polyline class="mark" points="{" ".join(run)}" fill="none" stroke="{colour}" '
                             f'stroke-width="2"{dash}/>')
            run = []
        for i, value in enumerate(values):
            if value is None:
                continue
            if errors and name in errors:
                low, high = errors[name][0][i], errors[name][1][i]
                if low is not None and high is not None:
                    parts.append(_whisker(xs[i], low, high, area, colour))
            parts.append(_marker(k, xs[i], area.y(value), f"{name} {labels[i]}: {value:.3f}"))
    return _figure(title, height, parts)


def _bar_panel(area: _Area, groups: Sequence[str], series: Mapping[str, Values], errors: Intervals | None,
               *, title: str = "") -> list[str]:
    n = max(1, len(series))
    slot = area.width / max(1, len(groups))
    bar = min(28.0, slot * 0.8 / n)
    parts = _x_labels(area, [area.left + (g + 0.5) * slot for g in range(len(groups))], groups)
    if title:
        parts.append(f'<text x="{area.left:.1f}" y="{area.top - 6:.1f}" font-size="13">'
                     f"{escape(title)}</text>")
    for g, group in enumerate(groups):
        left = area.left + (g + 0.5) * slot - n * bar / 2
        for k, (name, values) in enumerate(series.items()):
            value = values[g]
            if value is None:
                continue
            top, base, x = area.y(value), area.y(area.y_range[0]), left + k * bar
            parts.append(f'<rect class="mark" x="{x + 1:.1f}" y="{top:.1f}" width="{bar - 2:.1f}" '
                         f'height="{max(0.5, base - top):.1f}" fill="{PALETTE[k % len(PALETTE)]}" stroke="#222" '
                         f'stroke-width="0.5"><title>{escape(name)} {escape(group)}: {value:.3f}</title></rect>')
            if errors and name in errors:
                low, high = errors[name][0][g], errors[name][1][g]
                if low is not None and high is not None:
                    parts.append(_whisker(x + bar / 2, low, high, area, "#444", cap=min(3.0, bar / 4)))
    return parts


def bar_chart(title: str, groups: Sequence[str], series: Mapping[str, Values], *,
              errors: Intervals | None = None, y_label: str = "", references: Sequence[Reference] = (),
              y_range: tuple[float, float] = (0.0, 1.0), height: float = 300) -> str:
    """Grouped bars (one group per label, one bar per series) with thin 95% whiskers clipped to the axis."""
    legend, legend_height = _legend(list(series), bars=True, left=_LEFT, top=8, width=WIDTH - _LEFT - _RIGHT)
    bottom = _bottom(groups, WIDTH - _LEFT - _RIGHT)
    area = _Area(_LEFT, 14 + legend_height, WIDTH - _LEFT - _RIGHT, height - bottom - 14 - legend_height, y_range)
    return _figure(title, height, [legend, *_axes(area, y_label, references),
                                   *_bar_panel(area, groups, series, errors)])


@dataclass(frozen=True)
class Panel:
    """One small multiple: grouped bars under their own title."""

    title: str
    groups: Sequence[str]
    series: Mapping[str, Values]
    errors: Intervals | None = None


def small_multiples(title: str, panels: Sequence[Panel], *, y_label: str = "", references: Sequence[Reference] = (),
                    y_range: tuple[float, float] = (0.0, 1.0), columns: int = 3) -> str:
    """One panel per item on a shared scale and a shared legend: one figure, at the page width."""
    names = list(dict.fromkeys(name for panel in panels for name in panel.series))
    legend, legend_height = _legend(names, bars=True, left=_LEFT, top=8, width=WIDTH - _LEFT - _RIGHT)
    columns = max(1, min(columns, len(panels)))
    cell_width, cell_height = (WIDTH - _LEFT) / columns, 230.0
    parts = [legend]
    for i, panel in enumerate(panels):
        row, column = divmod(i, columns)
        area = _Area(_LEFT + column * cell_width, 14 + legend_height + 20 + row * cell_height,
                     cell_width - 125, cell_height - 20 - _BOTTOM, y_range)
        parts += _axes(area, y_label if column == 0 else "", references, ticks=3)
        # every panel colours a series as the shared legend does
        ordered = {name: panel.series.get(name, [None] * len(panel.groups)) for name in names}
        parts += _bar_panel(area, panel.groups, ordered, panel.errors, title=panel.title)
    rows = -(-len(panels) // columns)
    return _figure(title, 14 + legend_height + rows * cell_height, parts)


def tradeoff_chart(title: str, points: Sequence[tuple[str, float, float, float | None, float | None]], *,
                   x_label: str, y_label: str, threshold: float | None = None, threshold_name: str = "threshold",
                   x_range: tuple[float, float] = (0.0, 1.0), y_range: tuple[float, float] = (0.0, 1.0)) -> str:
    """Labelled points (label, x, y, y low, y high) on numeric axes, with vertical whiskers and a dashed threshold."""
    height = 340
    legend, legend_height = _legend([label for label, *_ in points], bars=None, left=_LEFT, top=8,
                                    width=WIDTH - _LEFT - _RIGHT)
    area = _Area(_LEFT, 14 + legend_height, WIDTH - _LEFT - _RIGHT, height - _BOTTOM - 14 - legend_height, y_range)
    low, high = x_range

    def x(value: float) -> float:
        return area.left + (min(high, max(low, value)) - low) / (high - low) * area.width

    ticks = [low + k * (high - low) / 4 for k in range(5)]
    references = [Reference(threshold, f"{threshold_name} {threshold:.2f}")] if threshold is not None else []
    parts = [legend, *_axes(area, y_label, references), *_x_labels(area, [x(t) for t in ticks], [f"{t:.2f}" for t in ticks]),
             f'<text x="{area.left + area.width / 2:.0f}" y="{height - 8}" font-size="12" text-anchor="middle">'
             f"{escape(x_label)}</text>"]
    for k, (label, px, py, y_low, y_high) in enumerate(points):
        if y_low is not None and y_high is not None:
            parts.append(_whisker(x(px), y_low, y_high, area, PALETTE[k % len(PALETTE)]))
        parts.append(_marker(k, x(px), area.y(py), f"{label}: {x_label} {px:.3f}, {y_label} {py:.3f}", size=5))
    return _figure(title, height, parts)
