"""Which frames of an ``n``-frame clip make up a ``T``-frame sample (pure index arithmetic).

Three samplers (``SamplingSpec.kind``), written from the descriptions in ``baselines.md`` 1.4 and
``ifdd-reference.md`` 11.3:

* ``segment`` (TSN style, U segments x V consecutive frames, T = U*V): with L = n - V + 1 and
  seg = L // U, training starts segment i at ``i*seg + offset_i`` (offset uniform in [0, seg));
  evaluation starts it at the segment centre ``floor(tick/2 + i*tick)``, tick = L/U. Each start
  gives V consecutive frames.
* ``consecutive`` (the IFDD reference): a window of ``frames`` frames taken every ``stride`` frames,
  span = (frames-1)*stride + 1. Training draws the window start uniformly; evaluation takes the
  centre window (``eval_mode="center"``, deterministic) or, as the reference does for FERV39k and
  MAFW, a random window (``eval_mode="random"``, still reproducible: the draw comes from the item's
  seeded generator). A clip shorter than the span is first expanded by the reference rule: every
  frame repeated floor(span/n) times and the first (``expand_from="start"``: FERV39k, DFEW) or
  last (``"end"``: MAFW) span mod n frames one extra time.
* ``uniform``: T equal bins over the clip; evaluation takes the bin centres, training a random
  sorted subset of T distinct frames (the DFEW repository's 3D-CNN rule).

Short clips for ``segment`` and ``uniform`` (n < T): frames 0..n-1, then the last frame repeated
(DFER-CLIP's rule, not Former-DFER's zero-fill, which turns short clips into two frames repeated).

Multi-view evaluation (``views`` = V > 1) returns V index lists: segment/uniform shift the
position inside each segment/bin to (k + 1/2)/V; consecutive spaces V windows evenly over the clip
(``center``) or draws V windows (``random``).

All randomness comes from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ifdd_bench.errors import ConfigError, suggest

SAMPLINGS = ("segment", "consecutive", "uniform")
EVAL_MODES = ("center", "random")


@dataclass(frozen=True)
class SamplingSpec:
    """How frames are chosen (see the module docstring for each rule)."""

    kind: str = "segment"  # segment | consecutive | uniform
    frames: int = 16  # T, frames returned per view
    segments: int = 16  # U (segment sampling; U * segment_len must equal frames)
    segment_len: int = 1  # V consecutive frames per segment
    stride: int = 1  # consecutive sampling: take every stride-th frame of the window
    eval_mode: str = "center"  # consecutive at evaluation: center (deterministic) | random (reference)
    expand_from: str = "start"  # consecutive short-clip expansion: start (FERV39k, DFEW) | end (MAFW)
    views: int = 1  # evaluation views (train always 1)

    def __post_init__(self) -> None:
        if self.kind not in SAMPLINGS:
            raise ConfigError(f"unknown data.sampling {self.kind!r}{suggest(self.kind, SAMPLINGS)}; "
                              f"valid: {', '.join(SAMPLINGS)}")
        if self.frames < 1:
            raise ConfigError(f"data.frames must be >= 1, got {self.frames}")
        if self.kind == "segment" and self.segments * self.segment_len != self.frames:
            raise ConfigError(f"segment sampling needs data.segments * data.segment_len == data.frames, got "
                              f"{self.segments} * {self.segment_len} != {self.frames}")
        if self.stride < 1:
            raise ConfigError(f"data.frame_stride must be >= 1, got {self.stride}")
        if self.eval_mode not in EVAL_MODES:
            raise ConfigError(f"unknown eval sampling {self.eval_mode!r}; valid: {', '.join(EVAL_MODES)}")
        if self.expand_from not in ("start", "end"):
            raise ConfigError(f"expand_from must be start or end, got {self.expand_from!r}")
        if self.views < 1:
            raise ConfigError(f"data.eval_views must be >= 1, got {self.views}")

    @property
    def span(self) -> int:
        """Frames a clip needs so that no padding or expansion happens."""
        if self.kind == "consecutive":
            return (self.frames - 1) * self.stride + 1
        return self.frames

    def describe(self) -> dict:
        """JSON-ready description recorded in the run info."""
        out = asdict(self)
        out["span"] = self.span
        return out


def _randint(low: int, high: int, gen: torch.Generator) -> int:
    """Uniform integer in [low, high)."""
    return int(torch.randint(low, high, (1,), generator=gen))


def pad_last(indices: list[int], length: int) -> list[int]:
    """Repeat the last index until ``len == length``."""
    return indices + [indices[-1]] * (length - len(indices))


def segment_indices(n: int, segments: int, segment_len: int, *, train: bool, gen: torch.Generator | None,
                    view: int = 0, views: int = 1) -> list[int]:
    """TSN-style segment sampling of ``segments * segment_len`` frame indices from ``n`` frames."""
    total = segments * segment_len
    if n < total:
        return pad_last(list(range(n)), total)
    usable = n - segment_len + 1  # L: valid segment starts
    if train:
        seg = usable // segments
        offsets = torch.randint(0, seg, (segments,), generator=gen).tolist()
        starts = [i * seg + off for i, off in enumerate(offsets)]
    else:
        tick = usable / segments
        shift = tick * (view + 0.5) / views
        starts = [int(shift + i * tick) for i in range(segments)]
    return [min(s + j, n - 1) for s in starts for j in range(segment_len)]


def expand_short(n: int, span: int, from_end: bool) -> list[int]:
    """The reference's expansion of an ``n < span`` frame clip to exactly ``span`` indices."""
    reps, extra = divmod(span, n)
    counts = [reps] * n
    chosen = range(n - extra, n) if from_end else range(extra)
    for i in chosen:
        counts[i] += 1
    return [i for i, c in enumerate(counts) for _ in range(c)]


def consecutive_indices(n: int, frames: int, stride: int, *, train: bool, gen: torch.Generator | None,
                        eval_mode: str = "center", expand_from: str = "start", view: int = 0,
                        views: int = 1) -> list[int]:
    """The reference's consecutive window: ``frames`` frames, every ``stride``-th of a random/centre span."""
    span = (frames - 1) * stride + 1
    pool = list(range(n)) if n >= span else expand_short(n, span, expand_from == "end")
    room = len(pool) - span  # number of window starts beyond 0
    if train or eval_mode == "random":
        start = _randint(0, room + 1, gen)
    elif views == 1:
        start = room // 2
    else:
        start = round(room * view / (views - 1))
    return pool[start:start + span:stride]


def uniform_indices(n: int, frames: int, *, train: bool, gen: torch.Generator | None, view: int = 0,
                    views: int = 1) -> list[int]:
    """``frames`` indices spread over equal bins; random sorted subset in training."""
    if n < frames:
        return pad_last(list(range(n)), frames)
    if train:
        return sorted(torch.randperm(n, generator=gen)[:frames].tolist())
    pos = (view + 0.5) / views
    return [min(int((i + pos) * n / frames), n - 1) for i in range(frames)]


def sample_indices(spec: SamplingSpec, n: int, *, train: bool, gen: torch.Generator | None) -> list[list[int]]:
    """Frame indices for one clip of ``n`` frames: one list per view (training: exactly one view).

    Example::

        >>> spec = SamplingSpec("segment", frames=4, segments=4)
        >>> sample_indices(spec, 8, train=False, gen=None)
        [[1, 3, 5, 7]]
    """
    if n < 1:
        raise ValueError("a clip needs at least one frame")
    views = 1 if train else spec.views
    out = []
    for view in range(views):
        if spec.kind == "segment":
            idx = segment_indices(n, spec.segments, spec.segment_len, train=train, gen=gen, view=view, views=views)
        elif spec.kind == "consecutive":
            idx = consecutive_indices(n, spec.frames, spec.stride, train=train, gen=gen, eval_mode=spec.eval_mode,
                                      expand_from=spec.expand_from, view=view, views=views)
        else:
            idx = uniform_indices(n, spec.frames, train=train, gen=gen, view=view, views=views)
        out.append(idx)
    return out
