"""The page's plotly figures as JSON: each layer's effective receptive field, theoretical versus
effective sizes, and the outputs of a saliency state as bars."""

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
                               hovertemplate="x %{x}<br>y %{y}<br>gradient mass %{z:.3f}<extra></extra>"))
    theoretical = field_["theoretical"]
    shapes = []
    centre = field_.get("centre")
    cy, cx = (float(centre[0]), float(centre[1])) if centre is not None else _mass_center(grid)
    for size, colour, dash in ((theoretical, "white", "dash"), (field_["size"], "orange", "solid")):
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
        go.Bar(name="theoretical", x=names, y=[data.fields[n]["theoretical"] for n in names], marker_color="#9aa5b1",
               hovertemplate="%{x}: theoretical %{y} px<extra></extra>"),
        go.Bar(name="effective (90% of gradient mass)", x=names, y=[round(data.fields[n]["size"], 1) for n in names],
               marker_color="#f28e2b", hovertemplate="%{x}: effective %{y} px<extra></extra>"),
    ])
    # Many layers' names stand upright under the bars: the axis makes room for them whole.
    fig.update_layout(**_layout(barmode="group", height=300 if len(names) <= 8 else 400,
                                yaxis_title="side of the square (input pixels)", xaxis=dict(automargin=True),
                                legend=dict(orientation="h", y=1.12)))
    return script_json(fig)


def q_axis_range(q) -> list:
    """The Q axis of the bar chart: the values' span with padding, not from 0, so that a gap of
    0.01 between actions near Q = 1.7 is visible; room on the right for the value labels."""
    low, high = float(np.min(q)), float(np.max(q))
    span = high - low or max(abs(high), 1.0) * 0.01  # all actions equal: still a readable axis
    return [low - 0.25 * span, high + 0.45 * span]


def value_format(values) -> str:
    """How the bars write the outputs: 4 decimals (``"1.6744"``), or 4 significant digits
    (``"5.186e-12"``) for values too small or too large for that."""
    largest = float(np.abs(np.asarray(values, np.float64)).max(initial=0.0))
    return ".4f" if 0.01 <= largest < 1e4 else ".4g"


def _q_figure(go, q, action_names, action, axis="Q(s, a)", hover="Q(s, %{y})") -> str:
    """Horizontal bars of the outputs ``q``, the chosen ``action`` red; ``axis`` titles the value
    axis and ``hover`` names a bar's value (``%{y}``: its name)."""
    q = np.asarray(q, np.float64)
    names = [action_names[i] if i < len(action_names) else str(i) for i in range(len(q))]
    colours = ["#e15759" if i == action else "#4e79a7" for i in range(len(q))]
    span = q_axis_range(q)
    fmt = value_format(q)
    # Rounded for a compact page, but to 6 decimals below the values' magnitude: scores of 1e-12
    # (an untrained classifier's) would otherwise all be 0, as would their bars.
    magnitude = max(float(np.abs(q).max()), span[1] - span[0])
    decimals = 6 - min(0, math.floor(math.log10(magnitude))) if magnitude > 0 else 6
    # Each bar grows from the axis's left end, so that a longer bar is a larger Q also when all
    # are negative (a bar from 0 would grow leftwards from outside the axis).
    fig = go.Figure(go.Bar(x=(q - span[0]).round(decimals).tolist(), base=span[0], y=names, orientation="h",
                           marker_color=colours, text=[format(v, fmt) for v in q], textposition="outside",
                           cliponaxis=False, customdata=q.round(decimals).tolist(),
                           hovertemplate=hover + " = %{customdata:" + fmt + "}<extra></extra>"))
    fig.update_layout(**_layout(height=max(160, 26 * len(q) + 60) + MODEBAR_ROOM, xaxis_title=axis,
                                xaxis=dict(range=span),
                                yaxis=dict(autorange="reversed", automargin=True)))  # whole action names
    return script_json(fig)
