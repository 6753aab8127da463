"""How large the page's filter-card images may grow: an estimate from the cards chosen and the
states' size, a warning past ``PAGE_WARN_MB`` and a refusal past ``PAGE_LIMIT_MB``."""

from __future__ import annotations

from dqnviz.errors import UserError
from dqnviz.report.nvis.options import StrongestFilters

PAGE_WARN_MB, PAGE_LIMIT_MB = 50, 400  # estimated images of the filter cards: warn, refuse


def card_megabytes(count: int, shape) -> float:
    """Upper bound of the page's images for ``count`` filter cards of states ``shape`` (H, W, C):
    per card the guided-backprop RGB image and, for C > 1, its strip of C grey images, as base64
    PNG of incompressible pixels. A trained network's gradients compress several times better."""
    height, width, channels = (int(d) for d in shape)
    return count * height * width * (3 + (channels if channels > 1 else 0)) * 4 / 3 / 1e6


def check_page_size(chosen: dict, shape, text: str) -> None:
    """Warn (one line) about a page of more than ``PAGE_WARN_MB`` of card images; refuse one of more
    than ``PAGE_LIMIT_MB``, which a browser cannot open (``filters="all"`` on a large network).

    Raises:
        UserError: the estimate is over ``PAGE_LIMIT_MB``.
    """
    import warnings

    counts = {layer: choice.count if isinstance(choice, StrongestFilters) else len(choice)
              for layer, choice in chosen.items()}
    cards = sum(counts.values())
    size = card_megabytes(cards, shape)
    if size <= PAGE_WARN_MB:
        return
    largest = max(counts, key=counts.get)
    where = (f"{len(counts)} layers, up to {counts[largest]:,} in {largest}" if len(counts) > 1
             else f"{largest}: {counts[largest]:,}")
    fewer = ("'top16' (each layer's 16 strongest) or fewer layers" if counts[largest] > 16
             else "fewer layers (layers=[...])")
    if size > PAGE_LIMIT_MB:
        raise UserError(f"filters={text!r} would draw {cards:,} filter cards ({where}), a page of up to "
                        f"{size:,.0f} MB that no browser opens well; give {fewer}")
    warnings.warn(f"filters={text!r} draws {cards:,} filter cards ({where}): a page of up to {size:,.0f} MB "
                  f"that takes minutes to compute and to open; for less, give {fewer}", UserWarning, stacklevel=3)
