"""Rendering of templates/ into one self-contained HTML file.

Plotly's JavaScript is embedded once per page (no CDN, no network), images are inline PNG data
URIs, and the file is written atomically.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import io
from pathlib import Path

import numpy as np



def _templates_folder() -> Path:
    """templates/ beside dqnviz/ in a source checkout (or an editable install), else the copy a
    wheel installs as the ``dqnviz.templates`` package (see pyproject.toml)."""
    source = Path(__file__).resolve().parent.parent.parent / "templates"
    if source.is_dir():
        return source
    installed = importlib.util.find_spec("dqnviz.templates")  # a namespace package: no __init__.py
    if installed is None or not installed.submodule_search_locations:
        raise ImportError("dqnviz's page templates are not installed (pip install --force-reinstall dqnviz)")
    return Path(installed.submodule_search_locations[0])


TEMPLATES = _templates_folder()
# px of a figure's height that templates/_plotly.js.j2 gives its modebar, on top of the top margin
MODEBAR_ROOM = 28


@functools.lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["plotly_js"] = plotly_js
    env.globals["plotly_js_packed"] = plotly_js_packed
    env.globals["modebar_room"] = MODEBAR_ROOM
    return env


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """The full plotly.js bundle that the installed plotly package ships (about 4.7 MB)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


@functools.lru_cache(maxsize=1)
def plotly_js_packed() -> str:
    """:func:`plotly_js` gzipped and base64-encoded (4.8 MB → 2.0 MB), for the page to unpack with
    the browser's own ``DecompressionStream`` (``_plotly_loader.html.j2``). The same bytes every
    time (gzip's timestamp is 0), so a report is reproducible."""
    import gzip

    return base64.b64encode(gzip.compress(plotly_js().encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def render(template: str, **context) -> str:
    """Render ``templates/<template>`` with ``context``."""
    return environment().get_template(template).render(**context)


def with_narrow_layout(fig, below: int, changes: dict) -> str:
    """:func:`script_json` of a plotly figure that changes its layout in a window where its plot is
    narrower than ``below`` px: ``changes`` maps plotly's relayout keys (``"xaxis.tickangle"``,
    ``"margin.b"``, ``"annotations"``) to their narrow values. The figure's own values of those
    keys go with them, so that _zoom.js.j2 can switch back and forth as the window is resized."""
    import json

    def current(key):
        value = fig.layout
        for part in key.split("."):
            value = value[part]
        if isinstance(value, tuple):
            value = [v.to_plotly_json() if hasattr(v, "to_plotly_json") else v for v in value]
        return value.to_plotly_json() if hasattr(value, "to_plotly_json") else value

    narrow = {"below": int(below), "narrow": changes, "wide": {key: current(key) for key in changes}}
    text = fig.to_json()
    return script_json(text[:-1] + ',"narrow":' + json.dumps(narrow, separators=(",", ":")) + "}")


def script_json(value) -> str:
    """JSON that is safe inside a ``<script>`` element: a plotly figure, JSON text, or plain data.

    ``</`` is escaped as ``<\\/`` (still the same JSON), so no string — a run name taken from a
    file name, say — can close the script element early.
    """
    import json

    if hasattr(value, "to_json"):
        text = value.to_json()
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, separators=(",", ":"))
    return text.replace("</", "<\\/")


def gradient_shares(gradient, labels) -> str:
    """How a card's gradient (H, W, C) divides over its frames or channels, in words for a screen
    reader ("t-3 8%, t-2 14%, t-1 30%, t 48%"): what the colours of its image say; "" where there
    is nothing to divide (one channel, no gradient, no labels)."""
    g = np.abs(np.asarray(gradient, np.float64))
    if g.ndim != 3 or g.shape[-1] < 2 or len(labels) != g.shape[-1]:
        return ""
    totals = g.sum(axis=(0, 1))
    whole = float(totals.sum())
    if not whole > 0:
        return ""
    return ", ".join(f"{label} {100 * float(t) / whole:.0f}%" for label, t in zip(labels, totals))


def distinct_labels(paths, joiner: str = "_") -> list[str]:
    """A label per input file that tells them apart in a report: the file's stem (``breakout_1``),
    or for files that share a stem, the stem with as many of their folders as it takes, joined by
    ``joiner`` (``runA_snapshots_breakout_1``; ``runA/reports/pong`` with ``joiner="/"``), from
    the paths as given (a link keeps its own name); failing that (one path twice), ``_2``, ``_3`` …
    added to the repeats. A file whose stem no other shares keeps its stem."""
    import os

    typed = [Path(os.path.abspath(p)) for p in paths]  # as given (a link keeps its own name)
    labels = [r.stem for r in typed]
    for stem in dict.fromkeys(label for label in labels if labels.count(label) > 1):  # in order: no hash luck
        sharing = [i for i, r in enumerate(typed) if r.stem == stem]
        for depth in range(1, max(len(typed[i].parents) for i in sharing) + 1):
            longer = [joiner.join([*(part for part in typed[i].parent.parts[-depth:] if part not in ("/", "")), stem])
                      for i in sharing]
            if len(set(longer)) == len(longer) and not set(longer) & set(labels):
                for i, label in zip(sharing, longer):
                    labels[i] = label
                break
        else:  # the same path twice: only the repeats numbered, past any label taken
            count = 1
            for i in sharing[1:]:
                count += 1
                while f"{stem}_{count}" in labels:
                    count += 1
                labels[i] = f"{stem}_{count}"
    return labels


def png_data_uri(image: np.ndarray, scale: int = 1) -> str:
    """A uint8 (H, W) grey, (H, W, 2) grey-and-alpha or (H, W, 3) RGB image as a
    ``data:image/png;base64,…`` URI, nearest-upscaled."""
    from PIL import Image

    image = np.asarray(image)
    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_html(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file in the same folder, then rename)."""
    from dqnviz.outputs import atomic_write

    def write(tmp):
        Path(tmp).write_text(text, encoding="utf-8")

    return atomic_write(path, write)
