"""Data and figures for ``dqnviz nvis`` and :func:`nvis_report`: what each conv filter responds to.

:func:`analyse` finds for every selected filter the state and position of its largest activation,
and computes (batched: one call per layer) the guided-backprop image of that unit, the layers'
effective receptive fields and saliency maps of a few telling states. :func:`gather` feeds it the
states of games a snapshot plays; :func:`nvis_report` the states a user gives for any Keras image
model. :func:`build_context` (a snapshot) and :func:`model_context` (any model) turn the result
into the template context of ``templates/nvis.html.j2`` (deduplicated PNG data URIs and plotly
figure JSON), and :func:`write_report` renders it.

The analyses themselves live in :mod:`dqnviz.analysis`; this package only chooses the states and
units, batches the calls, and turns the results into images and figures.

The package's modules, in the order the data flows through them:

* :mod:`.options`: ``--layers`` and ``--filters`` (or ``layers=``, ``filters=``) parsed and checked;
* :mod:`.model_input`: the model as the analyses take it (one output, conv layers of a fixed size);
* :mod:`.page_size`: the estimate of the page's card images, warned about or refused;
* :mod:`.states`: how the states are drawn (:class:`StateView`);
* :mod:`.gather`: a snapshot's states, from games it plays;
* :mod:`.findings`: :func:`analyse` and what it finds (:class:`NvisData`);
* :mod:`.images`, :mod:`.figures`, :mod:`.wording`: the page's images, plotly figures and words;
* :mod:`.page`: the template context, rendered and written;
* :mod:`.api`: :func:`nvis_report`.

Every name other code imports from ``dqnviz.report.nvis`` is imported here.
"""

from dqnviz.report.nvis.api import nvis_report
from dqnviz.report.nvis.figures import ZOOM_LEAST, _q_figure, q_axis_range, value_format, zoom_window
from dqnviz.report.nvis.findings import (
    ERF_STATES, SCORE_PICKS, Card, NvisData, analyse, field_box, perturbation_settings, pick_saliency_states,
)
from dqnviz.report.nvis.gather import gather
from dqnviz.report.nvis.images import ImageStore
from dqnviz.report.nvis.model_input import at_states_size, check_outputs
from dqnviz.report.nvis.options import (
    DEFAULT_FILTERS, StrongestFilters, check_filter_range, default_filters, describe_filters, parse_filters,
    parse_layers,
)
from dqnviz.report.nvis.page import build_context, model_context, network_rows, write_report
from dqnviz.report.nvis.page_size import PAGE_LIMIT_MB, PAGE_WARN_MB, card_megabytes, check_page_size
from dqnviz.report.nvis.states import StateView, display_range, shares_frames, state_view
from dqnviz.report.nvis.wording import Q_WORDS, SCORE_WORDS, _blank_frames, blank_note

__all__ = [
    "analyse", "at_states_size", "_blank_frames", "blank_note", "build_context", "Card", "card_megabytes",
    "check_filter_range", "check_outputs", "check_page_size", "DEFAULT_FILTERS", "default_filters",
    "describe_filters", "display_range",
    "ERF_STATES", "field_box", "gather", "ImageStore", "model_context", "network_rows", "nvis_report",
    "NvisData", "PAGE_LIMIT_MB", "PAGE_WARN_MB", "parse_filters", "parse_layers", "perturbation_settings",
    "pick_saliency_states", "q_axis_range", "_q_figure", "Q_WORDS", "SCORE_PICKS", "SCORE_WORDS",
    "shares_frames", "state_view", "StateView", "StrongestFilters", "value_format", "write_report", "ZOOM_LEAST",
    "zoom_window",
]
