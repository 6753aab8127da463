"""The page's images: PNG data URIs kept once each (:class:`ImageStore`), a strip of frames side by
side and a saliency map's heat image."""

from __future__ import annotations

import hashlib

import numpy as np


class ImageStore:
    """PNG data URIs, deduplicated by content; the page keeps each once in a JSON map."""

    def __init__(self):
        self.uris: dict[str, str] = {}

    def add(self, image: np.ndarray) -> str:
        from dqnviz.report.render import png_data_uri

        image = np.ascontiguousarray(image, dtype=np.uint8)
        key = "i" + hashlib.blake2b(image.tobytes() + str(image.shape).encode(), digest_size=8).hexdigest()
        if key not in self.uris:
            self.uris[key] = png_data_uri(image)
        return key


def _strip(frames: np.ndarray, gap: int = 2) -> np.ndarray:
    """(F, H, W) grey frames t-F+1..t → one (H, F·W + (F-1)·gap, 2) grey-and-alpha image whose gaps
    are transparent: the gaps part the frames and are no data, so the page's card shows through
    them (white, as they were drawn before, or dark in dark mode), the frames' pixels unchanged."""
    frames = np.asarray(frames, np.uint8)
    spacer = np.zeros((frames.shape[1], gap, 2), np.uint8)
    opaque = np.full(frames.shape[1:], 255, np.uint8)
    parts = []
    for i, frame in enumerate(frames):
        pixels = np.stack([frame, opaque], axis=-1)
        parts.extend([spacer, pixels] if i else [pixels])
    return np.concatenate(parts, axis=1)


def _saliency_rgb(saliency: np.ndarray) -> np.ndarray:
    """Saliency (84, 84, C) → an RGB heat image: |s| summed over frames, white → red."""
    magnitude = np.abs(np.asarray(saliency, np.float32)).sum(axis=-1)
    top = float(np.percentile(magnitude, 99.5)) or float(magnitude.max()) or 1.0
    v = np.clip(magnitude / top, 0, 1)
    rgb = np.stack([255 - 40 * v, 255 * (1 - v), 255 * (1 - v)], axis=-1)
    return rgb.astype(np.uint8)
