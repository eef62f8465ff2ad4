"""Where does the label live? A parameter-level probe of a SynthDFER config (numpy, seconds).

Before any pixel is drawn, each clip is a (T, 7) trajectory of expression parameters. A linear
classifier (multinomial logistic regression) is fitted on different *views* of it:

* ``random frame``: one frame's parameters (what a single-frame model sees, minus the pixels);
* ``temporal average``: the mean over frames (a temporal-average model);
* ``apex frame``: the frame of maximal intensity, chosen with the ground truth (an oracle);
* ``apex - rest frame``: apex minus a frame outside the expression window (oracle);
* ``largest change``: per parameter, the signed largest deviation from the clip's median
  (no ground truth: what a model that compares frames can compute).

If the generator does its job, the first two stay near chance (1/7) and the change-based views
are near perfect. ``ifdd-bench data probe --preset default`` prints the table.
"""

from __future__ import annotations

import numpy as np

from ifdd_bench.data.synth.config import SynthConfig
from ifdd_bench.data.synth.dynamics import sample_clip_params

VIEWS = ("random frame", "temporal average", "apex frame", "apex - rest frame", "largest change")


def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, classes: int = 7,
                steps: int = 300, lr: float = 0.5, l2: float = 1e-3) -> np.ndarray:
    """Multinomial logistic regression by full-batch gradient descent on standardised inputs."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    a = np.c_[(x_train - mean) / std, np.ones(len(x_train))]  # (N, D + 1)
    b = np.c_[(x_test - mean) / std, np.ones(len(x_test))]
    weights, onehot = np.zeros((a.shape[1], classes)), np.eye(classes)[y_train]
    for _ in range(steps):
        z = a @ weights  # (N, K)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        weights -= lr * (a.T @ (p - onehot) / len(a) + l2 * weights)
    return (b @ weights).argmax(1)


def clip_views(cfg: SynthConfig, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The feature views above for every clip of ``cfg`` ((N, 7) each) and the labels (N,)."""
    clips = [sample_clip_params(cfg, i) for i in range(cfg.clips)]
    expr = np.stack([c.expression for c in clips])  # (N, T, 7)
    rows = np.arange(len(clips))
    rng = np.random.default_rng(seed)
    outside = [next((t for t in range(cfg.frames) if not c.onset <= t <= c.offset), 0) for c in clips]
    apex = expr[rows, [c.apex for c in clips]]
    centred = expr - np.median(expr, axis=1, keepdims=True)
    largest = np.take_along_axis(centred, np.abs(centred).argmax(1)[:, None, :], 1)[:, 0]
    views = {
        "random frame": expr[rows, rng.integers(0, cfg.frames, len(clips))],
        "temporal average": expr.mean(1),
        "apex frame": apex,
        "apex - rest frame": apex - expr[rows, outside],
        "largest change": largest,
    }
    return views, np.array([c.label for c in clips])


def parameter_probe(cfg: SynthConfig, *, train_fraction: float = 0.7, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{view: {"war": accuracy, "uar": mean per-class recall}}`` on a held-out part of the clips."""
    views, labels = clip_views(cfg, seed)
    n = int(round(train_fraction * len(labels)))
    out = {}
    for name, x in views.items():
        pred = fit_predict(x[:n], labels[:n], x[n:])
        truth = labels[n:]
        recalls = [float((pred[truth == k] == k).mean()) for k in np.unique(truth)]
        out[name] = {"war": float((pred == truth).mean()), "uar": float(np.mean(recalls))}
    return out
