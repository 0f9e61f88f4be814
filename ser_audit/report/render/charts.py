"""Inline SVG charts for the HTML page: no scripts, fonts or images from anywhere else."""

from __future__ import annotations

from typing import Mapping, Sequence

from ser_audit.report.render.escaping import html as escape

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
_HEIGHT, _LEFT, _RIGHT, _TOP, _BOTTOM = 280, 48, 150, 16, 56

Values = Sequence[float | None]


def _frame(title: str, width: int, y_label: str, body: list[str], legend: Sequence[str], reference: float | None,
           y_range: tuple[float, float]) -> str:
    low, high = y_range

    def y(v: float) -> float:
        return _y(v, y_range)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {_HEIGHT}" width="{width}" '
             f'height="{_HEIGHT}" role="img" aria-label="{escape(title)}">']
    for k in range(5):
        tick = low + k * (high - low) / 4
        parts.append(f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" font-size="10" text-anchor="end">{tick:.2g}</text>')
    if reference is not None:
        parts.append(f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y(reference):.1f}" y2="{y(reference):.1f}" '
                     f'stroke="#555" stroke-dasharray="4 3"/><text x="{width - _RIGHT + 4}" y="{y(reference) + 4:.1f}" '
                     f'font-size="10">chance {reference:.2f}</text>')
    parts += body
    for k, name in enumerate(legend):
        parts.append(f'<rect x="{width - _RIGHT + 8}" y="{_TOP + 14 * k}" width="10" height="10" '
                     f'fill="{COLOURS[k % len(COLOURS)]}"/><text x="{width - _RIGHT + 22}" y="{_TOP + 9 + 14 * k}" '
                     f'font-size="11">{escape(name)}</text>')
    parts.append(f'<text x="12" y="{_HEIGHT / 2:.0f}" font-size="11" transform="rotate(-90 12 {_HEIGHT / 2:.0f})" '
                 f'text-anchor="middle">{escape(y_label)}</text></svg>')
    return f"<figure>{''.join(parts)}<figcaption>{escape(title)}</figcaption></figure>"


def _y(v: float, y_range: tuple[float, float]) -> float:
    low, high = y_range
    return _TOP + (1 - (min(high, max(low, v)) - low) / (high - low)) * (_HEIGHT - _TOP - _BOTTOM)


def _x_label(x: float, label: str) -> str:
    return (f'<text x="{x:.1f}" y="{_HEIGHT - _BOTTOM + 12}" font-size="10" text-anchor="end" '
            f'transform="rotate(-30 {x:.1f} {_HEIGHT - _BOTTOM + 12})">{escape(label)}</text>')


def line_chart(title: str, labels: Sequence[str], series: Mapping[str, Values], *,
               bands: Mapping[str, tuple[Values, Values]] | None = None, y_label: str = "",
               reference: float | None = None, y_range: tuple[float, float] = (0.0, 1.0)) -> str:
    """Series over categorical x positions; ``None`` leaves a gap; optional interval bands."""
    width = max(560, _LEFT + _RIGHT + 48 * len(labels))
    step = (width - _LEFT - _RIGHT) / max(1, len(labels) - 1)

    def x(i: int) -> float:
        return _LEFT + i * step if len(labels) > 1 else _LEFT + (width - _LEFT - _RIGHT) / 2

    body = [_x_label(x(i) + 4, label) for i, label in enumerate(labels)]
    for k, (name, values) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        if bands and name in bands:
            low, high = bands[name]
            kept = [i for i in range(len(labels)) if low[i] is not None and high[i] is not None]
            if kept:
                outline = [f"{x(i):.1f},{_y(high[i], y_range):.1f}" for i in kept]  # type: ignore[arg-type]
                outline += [f"{x(i):.1f},{_y(low[i], y_range):.1f}" for i in reversed(kept)]  # type: ignore[arg-type]
                body.append(f'<polygon points="{" ".join(outline)}" fill="{colour}" fill-opacity="0.12"/>')
        run: list[str] = []
        for i, value in enumerate([*values, None]):
            if value is None:
                if len(run) > 1:
                    body.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="2"/>')
                run = []
                continue
            run.append(f"{x(i):.1f},{_y(value, y_range):.1f}")
            body.append(f'<circle cx="{x(i):.1f}" cy="{_y(value, y_range):.1f}" r="3" fill="{colour}">'
                        f'<title>{escape(name)} {escape(labels[i])}: {value:.3f}</title></circle>')
    return _frame(title, int(width), y_label, body, list(series), reference, y_range)


def bar_chart(title: str, groups: Sequence[str], series: Mapping[str, Values], *,
              errors: Mapping[str, tuple[Values, Values]] | None = None, y_label: str = "",
              reference: float | None = None, y_range: tuple[float, float] = (0.0, 1.0)) -> str:
    """Grouped bars (one group per label, one bar per series) with optional interval whiskers."""
    n = max(1, len(series))
    bar = 14 if n > 3 else 20
    group_width = n * bar + 16
    width = max(420, _LEFT + _RIGHT + group_width * len(groups))
    body = []
    for g, group in enumerate(groups):
        left = _LEFT + g * group_width + 8
        body.append(_x_label(left + n * bar / 2 + 4, group))
        for k, (name, values) in enumerate(series.items()):
            value = values[g]
            if value is None:
                continue
            colour = COLOURS[k % len(COLOURS)]
            top, base = _y(value, y_range), _y(y_range[0], y_range)
            x = left + k * bar
            body.append(f'<rect x="{x:.1f}" y="{top:.1f}" width="{bar - 2}" height="{max(0.5, base - top):.1f}" '
                        f'fill="{colour}"><title>{escape(name)} {escape(group)}: {value:.3f}</title></rect>')
            if errors and name in errors:
                low, high = errors[name][0][g], errors[name][1][g]
                if low is not None and high is not None:
                    centre = x + (bar - 2) / 2
                    body.append(f'<line x1="{centre:.1f}" x2="{centre:.1f}" y1="{_y(low, y_range):.1f}" '
                                f'y2="{_y(high, y_range):.1f}" stroke="#333"/>')
    return _frame(title, int(width), y_label, body, list(series), reference, y_range)


def tradeoff_chart(title: str, points: Sequence[tuple[str, float, float, float | None, float | None]], *,
                   x_label: str, y_label: str, threshold: float | None = None, threshold_name: str = "threshold",
                   x_range: tuple[float, float] = (0.0, 1.0), y_range: tuple[float, float] = (0.0, 1.0)) -> str:
    """Labelled points (label, x, y, y low, y high) on numeric axes, with vertical whiskers and a dashed threshold."""
    width = 640
    low, high = x_range

    def x(value: float) -> float:
        return _LEFT + (min(high, max(low, value)) - low) / (high - low) * (width - _LEFT - _RIGHT)

    body = [_x_label(x(low + k * (high - low) / 4) + 4, f"{low + k * (high - low) / 4:.2f}") for k in range(5)]
    body.append(f'<text x="{(_LEFT + width - _RIGHT) / 2:.0f}" y="{_HEIGHT - 6}" font-size="11" '
                f'text-anchor="middle">{escape(x_label)}</text>')
    if threshold is not None:
        body.append(f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{_y(threshold, y_range):.1f}" '
                    f'y2="{_y(threshold, y_range):.1f}" stroke="#d62728" stroke-dasharray="2 3"/>'
                    f'<text x="{width - _RIGHT + 4}" y="{_y(threshold, y_range) - 4:.1f}" font-size="10">'
                    f'{escape(threshold_name)} {threshold:.2f}</text>')
    for k, (label, px, py, y_low, y_high) in enumerate(points):
        colour = COLOURS[k % len(COLOURS)]
        if y_low is not None and y_high is not None:
            body.append(f'<line x1="{x(px):.1f}" x2="{x(px):.1f}" y1="{_y(y_low, y_range):.1f}" '
                        f'y2="{_y(y_high, y_range):.1f}" stroke="{colour}" stroke-width="1.5"/>')
        body.append(f'<circle cx="{x(px):.1f}" cy="{_y(py, y_range):.1f}" r="4" fill="{colour}">'
                    f'<title>{escape(label)}: {x_label} {px:.3f}, {y_label} {py:.3f}</title></circle>')
    return _frame(title, width, y_label, body, [label for label, *_ in points], None, y_range)
