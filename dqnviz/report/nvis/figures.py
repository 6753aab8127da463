"""The page's plotly figures as JSON: each layer's effective receptive field, theoretical versus
effective sizes, and the outputs of a saliency state as a dot plot."""

from __future__ import annotations

import math

import numpy as np

from dqnviz.report.nvis.findings import NvisData
from dqnviz.report.render import MODEBAR_ROOM, script_json


def _layout(**extra):
    base = dict(margin=dict(l=40, r=10, t=30, b=35), paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="white",
                font=dict(size=11))
    base.update(extra)
    return base


def _erf_figure(go, layer, field_) -> str:
    grid = np.asarray(field_["map"], np.float32)
    if grid.ndim == 3:
        grid = grid.sum(axis=-1)
    grid = grid / (float(np.abs(grid).max()) or 1.0)
    h, w = grid.shape
    fig = go.Figure(go.Heatmap(z=np.round(grid, 3), colorscale="Viridis", showscale=True, zmin=0, zmax=1,
                               colorbar=dict(title=dict(text="share of<br>the peak", side="top", font=dict(size=10)),
                                             thickness=12),
                               hovertemplate="x %{x}<br>y %{y}<br>|gradient| %{z:.0%} of the peak<extra></extra>"))
    theoretical = field_["theoretical"]
    shapes = []
    centre = field_.get("centre")
    cy, cx = (float(centre[0]), float(centre[1])) if centre is not None else _mass_center(grid)
    for size, colour, dash in ((theoretical, "white", "dash"), (field_["size"], "orange", "solid"),
                               (field_.get("core"), "orange", "dot")):
        if size and math.isfinite(size):
            shapes.append(dict(type="rect", x0=cx - size / 2, x1=cx + size / 2, y0=cy - size / 2, y1=cy + size / 2,
                               line=dict(color=colour, dash=dash, width=2)))
    fig.update_layout(**_layout(title=dict(text=f"{layer}: input gradient of one central unit", x=0.02, font=dict(size=12)),
                                height=300 + MODEBAR_ROOM, shapes=shapes))
    fig.update_xaxes(range=[-0.5, w - 0.5], constrain="domain", showgrid=False)
    fig.update_yaxes(range=[h - 0.5, -0.5], scaleanchor="x", showgrid=False)
    return script_json(fig)


def _mass_center(grid):
    g = np.abs(grid)
    total = g.sum()
    if total <= 0:
        return (grid.shape[0] - 1) / 2, (grid.shape[1] - 1) / 2
    ys, xs = np.indices(g.shape)
    return float((ys * g).sum() / total), float((xs * g).sum() / total)


def _erf_chart(go, data: NvisData) -> str:
    names = list(data.layers)
    fig = go.Figure([
        go.Bar(name="theoretical", x=names, y=[data.fields[n]["theoretical"] for n in names], marker_color="#9aa5b1", marker_line=BAR_EDGE,
               hovertemplate="%{x}: theoretical %{y} px<extra></extra>"),
        go.Bar(name="effective: 90% of the gradient", x=names, y=[round(data.fields[n]["size"], 1) for n in names],
               marker_color="#f28e2b", marker_line=BAR_EDGE, hovertemplate="%{x}: 90% of the gradient within %{y} px<extra></extra>"),
        go.Bar(name="half of the gradient", x=names, y=[data.fields[n].get("core") for n in names],
               marker_color="#b35806", marker_line=BAR_EDGE, hovertemplate="%{x}: half of the gradient within %{y} px<extra></extra>"),
    ])
    # Many layers' names stand upright under the bars: the axis makes room for them whole.
    fig.update_layout(**_layout(barmode="group", height=300 if len(names) <= 8 else 400,
                                yaxis_title="side of the square (input pixels)", xaxis=dict(automargin=True),
                                legend=dict(orientation="h", y=1.12)))
    return script_json(fig)


ZOOM_LEAST = 28  # px: the side of the smallest window a card opens on (an 8-px conv1 field: 3.5× magnified)
ZOOM_MARGIN = 2  # px of the image kept beyond each side of the receptive field, so that its box shows whole


def zoom_window(box, size, least: int = ZOOM_LEAST):
    """The part of the image a card opens on: its receptive field ``box`` (x0, y0, width, height,
    input pixels; cut to the image), grown by :data:`ZOOM_MARGIN` on each side to a square of at
    least ``least`` pixels around the field's centre, and moved (not cut) to lie within the image
    ``size`` (width, height), which it covers where it is narrower than the square. Returns
    ``[x0, y0, x1, y1]`` (x1, y1 exclusive), or None where that is the whole image (nothing to zoom)."""
    width, height = int(size[0]), int(size[1])
    bx0, by0 = max(int(box[0]), 0), max(int(box[1]), 0)
    bx1, by1 = min(int(box[0]) + int(box[2]), width), min(int(box[1]) + int(box[3]), height)
    if bx1 <= bx0 or by1 <= by0:  # no part of the field on the image
        return None
    side = max(int(least), max(bx1 - bx0, by1 - by0) + 2 * ZOOM_MARGIN)

    def place(low, high, extent):
        if side >= extent:
            return 0, extent
        start = int(math.floor((low + high - side) / 2 + 0.5))
        start = min(max(start, 0), extent - side)
        return start, start + side

    (x0, x1), (y0, y1) = place(bx0, bx1, width), place(by0, by1, height)
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return None
    return [x0, y0, x1, y1]


def q_axis_range(q) -> list:
    """The value axis of the outputs' dot plot: the values' span with padding, room on the right
    for the value written beside each dot (and on the left where values on both sides of 0 write
    the negative ones to the left of their dots, clear of the zero line). Not from 0: a dot's
    position, not a length, carries the value, so a gap of 0.01 between actions near Q = 1.8
    shows as a step; 0 is marked by a line when it lies on the axis."""
    low, high = float(np.min(q)), float(np.max(q))
    span = high - low or max(abs(high), 1.0) * 0.01  # all actions equal: still a readable axis
    return [low - (0.45 if _labels_left(q).any() else 0.12) * span, high + 0.45 * span]


def _labels_left(q) -> np.ndarray:
    """Which values are written to the left of their dots: the negative ones where 0 is among the
    values' span (a label to the right would lie across the zero line)."""
    q = np.asarray(q, np.float64)
    return (q < 0) & (float(np.max(q)) > 0)


def value_format(values) -> str:
    """How the dot plot writes the outputs: 4 decimals (``"1.6744"``), or 4 significant digits
    (``"5.186e-12"``) for values too small or too large for that."""
    largest = float(np.abs(np.asarray(values, np.float64)).max(initial=0.0))
    return ".4f" if 0.01 <= largest < 1e4 else ".4g"


CHOSEN, OTHER = "#e15759", "#4e79a7"
CHOSEN_TEXT = "#b91c1c"  # the chosen output's value beside its dot: CHOSEN is 3.7:1 on white, this 6.5:1
BAR_EDGE = dict(color="#334e68", width=1)  # the light bars' outline: at least 3:1 against the white plot


def _q_figure(go, q, action_names, action, axis="Q(s, a)", hover="Q(s, %{y})", choice="a*") -> str:
    """A dot plot of the outputs ``q``: one dot per output on a value axis, its value written
    beside it, the chosen ``action`` a larger red dot with a dotted line at its value (so that each
    other dot's distance to the line is its gap). ``axis`` titles the value axis, ``hover`` names
    a dot's value (``%{y}``: its name), ``choice`` names the chosen output in the hover text.

    Dots rather than bars: the outputs of a DQN lie close together (1.8139 to 1.8480 in a state
    of Pong), so bars from 0 would all look alike, and bars from the axis's edge (as this chart
    once drew) made lengths that meant nothing (1.8139 a sixth of 1.8480)."""
    q = np.asarray(q, np.float64)
    names = [action_names[i] if i < len(action_names) else str(i) for i in range(len(q))]
    span = q_axis_range(q)
    fmt = value_format(q)
    # Rounded for a compact page, but to 6 decimals below the values' magnitude: scores of 1e-12
    # (an untrained classifier's) would otherwise all be 0, as would their dots' positions.
    magnitude = max(float(np.abs(q).max()), span[1] - span[0])
    decimals = 6 - min(0, math.floor(math.log10(magnitude))) if magnitude > 0 else 6
    chosen = q[action] if 0 <= action < len(q) else float(np.max(q))
    below = (chosen - q).round(decimals)
    gaps = ["" if i == action else f"{format(float(d), fmt)} below {choice}" if d >= 0
            else f"{format(float(-d), fmt)} above {choice}" for i, d in enumerate(below)]
    fig = go.Figure(go.Scatter(
        x=q.round(decimals).tolist(), y=names, mode="markers+text", cliponaxis=False,
        marker=dict(color=[CHOSEN if i == action else OTHER for i in range(len(q))],
                    size=[13 if i == action else 9 for i in range(len(q))], opacity=1,
                    line=dict(color="white", width=1)),
        text=[format(v, fmt) for v in q],
        textposition=["middle left" if left else "middle right" for left in _labels_left(q)],
        textfont=dict(color=[CHOSEN_TEXT if i == action else "#334e68" for i in range(len(q))]),
        customdata=[[v, g] for v, g in zip(q.round(decimals).tolist(), gaps)],
        hovertemplate=hover + " = %{customdata[0]:" + fmt + "}<br>%{customdata[1]}<extra></extra>"))
    shapes = [dict(type="line", xref="x", yref="paper", x0=float(round(chosen, decimals)), x1=float(round(chosen, decimals)),
                   y0=0, y1=1, layer="below", opacity=0.6, line=dict(color=CHOSEN, width=1, dash="dot"))]
    fig.update_layout(**_layout(height=max(160, 26 * len(q) + 60) + MODEBAR_ROOM, xaxis_title=axis, showlegend=False,
                                shapes=shapes,
                                # 0 drawn as a line only where it lies on the axis; the axis spans the values
                                xaxis=dict(range=span, zeroline=True, zerolinecolor="#7b8794", zerolinewidth=1,
                                           showgrid=True, gridcolor="#eef1f4"),
                                yaxis=dict(autorange="reversed", automargin=True,  # whole action names
                                           showgrid=True, gridcolor="#eef1f4")))
    return script_json(fig)
