"""HTML reports: plotly figures and jinja2 templates rendered to one self-contained file."""
