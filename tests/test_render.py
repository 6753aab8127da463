"""Rendering helpers shared by every report."""

import json

import plotly.graph_objects as go

from dqnviz.report.render import script_json


def test_script_json_cannot_close_the_script_element_and_stays_the_same_json():
    figure = go.Figure(go.Bar(x=["</script><script>alert(1)</script>"], y=[1]))
    for value in (figure, figure.to_json(), {"name": "</script>"}):
        text = script_json(value)
        assert "</" not in text
        expected = json.loads(value.to_json() if hasattr(value, "to_json") else value if isinstance(value, str)
                              else json.dumps(value))
        assert json.loads(text) == expected


def test_plotly_js_is_embedded_packed_and_unpacks_to_the_same_bytes():
    """The pages carry plotly.js gzipped and base64-encoded (the browser unpacks it): under half
    the size, byte for byte the bundle plotly ships, and the same text every time."""
    import base64
    import gzip

    from dqnviz.report.render import plotly_js, plotly_js_packed

    packed = plotly_js_packed()
    assert gzip.decompress(base64.b64decode(packed)) == plotly_js().encode("utf-8")
    assert len(packed) < 0.5 * len(plotly_js())
    plotly_js_packed.cache_clear()
    assert plotly_js_packed() == packed  # gzip's timestamp is fixed: reports are reproducible
