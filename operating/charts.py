"""Charts drawn on the server as SVG: no script, no CDN, only presentation attributes (which a
Content-Security-Policy of 'self' allows, unlike inline styles)."""

from django.utils.html import escape

WIDTH, HEIGHT = 960, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 16, 40
LINES_COLOUR, FAILED_COLOUR, AXIS_COLOUR, GRID_COLOUR = "#2f6fb0", "#c0392b", "#444", "#ddd"


def nice_ceiling(value: float) -> int:
    """The axis maximum: 1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 1
    power = 1
    while power * 10 <= value:
        power *= 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def lines_per_minute_svg(series: list[tuple]) -> str:
    """An area of lines run per minute (blue) with the failed ones (red) over it."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((lines for _, lines, _ in series), default=0))
    count = max(len(series) - 1, 1)

    def x(index: int) -> float:
        return LEFT + plot_w * index / count

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    def area(values: list[int]) -> str:
        points = [f"{x(0):.1f},{y(0):.1f}"]
        points += [f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values)]
        points.append(f"{x(len(values) - 1):.1f},{y(0):.1f}")
        return " ".join(points)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'role="img" aria-labelledby="lpm-title" class="operating-chart">',
        '<title id="lpm-title">Lines run per minute</title>',
    ]
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        value = top * fraction
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="{GRID_COLOUR}" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{AXIS_COLOUR}">{value:,.0f}</text>'
        )
    if series:
        parts.append(
            f'<polygon points="{area([lines for _, lines, _ in series])}" fill="{LINES_COLOUR}" '
            f'fill-opacity="0.35" stroke="{LINES_COLOUR}" stroke-width="1.5"/>'
        )
        parts.append(
            f'<polygon points="{area([failed for _, _, failed in series])}" fill="{FAILED_COLOUR}" '
            f'fill-opacity="0.5" stroke="{FAILED_COLOUR}" stroke-width="1"/>'
        )
        ticks = max(1, len(series) // 6)
        for index in range(0, len(series), ticks):
            label = series[index][0].strftime("%H:%M")
            parts.append(
                f'<text x="{x(index):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
                f'font-size="11" fill="{AXIS_COLOUR}">{label}</text>'
            )
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="{AXIS_COLOUR}"/>'
        f'<text x="{LEFT}" y="{HEIGHT - 6}" font-size="11" fill="{AXIS_COLOUR}">UTC; '
        f'<tspan fill="{LINES_COLOUR}">■ lines</tspan> <tspan fill="{FAILED_COLOUR}">■ failed</tspan></text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(rows: list[tuple[str, int]], *, title: str, colour: str = LINES_COLOUR) -> str:
    """Horizontal bars, one per (label, value)."""
    bar_h, gap, label_w, value_w, width = 20, 6, 150, 70, 560
    height = max(1, len(rows)) * (bar_h + gap) + gap
    top = max((value for _, value in rows), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'role="img" class="operating-chart"><title>{escape(title)}</title>'
    ]
    for index, (label, value) in enumerate(rows):
        y = gap + index * (bar_h + gap)
        length = (width - label_w - value_w) * value / top
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end" font-size="12" fill="{AXIS_COLOUR}">'
            f"{escape(label)}</text>"
            f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="{bar_h}" fill="{colour}"/>'
            f'<text x="{label_w + length + 6:.1f}" y="{y + 14}" font-size="12" fill="{AXIS_COLOUR}">'
            f"{value:,}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
