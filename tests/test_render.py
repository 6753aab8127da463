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
