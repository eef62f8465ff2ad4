"""Contact sheet of SynthDFER: a few clips per class, one clip per row, frames left to right.

Each row starts with the class name and clip index; the apex frame has a red frame, and every
frame of the expression window has a bar beneath it, filled yellow in proportion to the emotion
intensity (neutral clips: an empty window, no apex mark). Clips are rendered in memory from the config; nothing is written but the PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ifdd_bench.atomic import atomic_path
from ifdd_bench.data.labels import DFEW_CLASSES
from ifdd_bench.data.synth.config import SynthConfig
from ifdd_bench.data.synth.dynamics import clip_labels, sample_clip_params
from ifdd_bench.data.synth.face import render_clip
from ifdd_bench.errors import ConfigError

_APEX = (230, 30, 30)
_BAR = (250, 210, 40)
_BG = (24, 24, 24)


def preview_indices(cfg: SynthConfig, per_class: int) -> list[int]:
    """The first ``per_class`` clip indices of every class, class by class."""
    labels = clip_labels(cfg)
    return [int(i) for k in range(len(DFEW_CLASSES)) for i in np.flatnonzero(labels == k)[:per_class]]


def contact_sheet(cfg: SynthConfig, out: str | Path, *, per_class: int = 2, cell: int | None = None) -> Path:
    """Render ``per_class`` clips of every class and save the sheet as PNG at ``out``.

    ``cell`` is the displayed frame size in pixels (default: the frame size, at least 64).
    """
    if not 1 <= per_class <= 20:
        raise ConfigError(f"per_class must be in [1, 20], got {per_class}")
    cell = cell or max(cfg.size, 64)
    if not 16 <= cell <= 512:
        raise ConfigError(f"cell must be in [16, 512] pixels, got {cell}")
    pad, bar, label_w = 3, 6, 104
    indices = preview_indices(cfg, per_class)
    row_h = cell + bar + 2 * pad
    sheet = Image.new("RGB", (label_w + cfg.frames * (cell + pad) + pad, len(indices) * row_h), _BG)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for row, index in enumerate(indices):
        params = sample_clip_params(cfg, index)
        frames = render_clip(params, cfg.size)[0]  # (T, S, S, 3)
        top = row * row_h + pad
        draw.text((6, top + cell // 2 - 12), DFEW_CLASSES[params.label], fill=(240, 240, 240), font=font)
        draw.text((6, top + cell // 2 + 2), f"clip {index}  apex {params.apex}", fill=(160, 160, 160), font=font)
        for t, frame in enumerate(frames):
            left = label_w + t * (cell + pad)
            sheet.paste(Image.fromarray(frame).resize((cell, cell), Image.NEAREST), (left, top))
            if t == params.apex and params.label != DFEW_CLASSES.index("neutral"):
                draw.rectangle((left - 1, top - 1, left + cell, top + cell), outline=_APEX, width=2)
            level = params.intensity[t] / max(params.peak, 1e-6)
            if params.onset <= t <= params.offset:
                draw.rectangle((left, top + cell + 2, left + cell - 1, top + cell + bar), outline=(90, 90, 90))
                if level > 0:
                    draw.rectangle((left, top + cell + 2, left + max(1, int(level * (cell - 1))), top + cell + bar),
                                   fill=_BAR)
    out = Path(out).expanduser()
    with atomic_path(out, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return out
