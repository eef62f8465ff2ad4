"""Seeds for Python, NumPy, torch and every DataLoader worker.

The engine derives one seed per (run seed, epoch, purpose, rank) with :func:`derive_seed` and
reseeds every generator at the start of each epoch. Because checkpoints are written at epoch
boundaries, a resumed run replays exactly the random numbers of an uninterrupted one, and no
RNG state has to survive a crash.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a stable hash of ``parts`` (e.g. ``derive_seed(seed, epoch, "mix")``)."""
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker initialiser: seed ``random`` and NumPy from the worker's torch seed.

    torch gives each worker ``base_seed + worker_id`` where ``base_seed`` comes from the loader's
    generator (which the engine seeds per epoch), so workers are reproducible too.
    """
    seed = torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed % 2**32)


def loader_generator(seed: int) -> torch.Generator:
    """A CPU generator for a DataLoader (it fixes the workers' base seed)."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def rng_snapshot() -> dict:
    """The current states of Python, NumPy and torch generators as checkpoint-safe primitives."""
    np_state = np.random.get_state()
    snap = {
        "python": _to_lists(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        snap["cuda"] = torch.cuda.get_rng_state_all()
    return snap


def rng_restore(snap: dict) -> None:
    """Inverse of :func:`rng_snapshot` (missing entries are left alone)."""
    if "python" in snap:
        version, state, gauss = snap["python"]
        random.setstate((version, tuple(state), gauss))
    if "numpy" in snap:
        name, keys, pos, has_gauss, cached = snap["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch" in snap:
        torch.set_rng_state(snap["torch"])
    if "cuda" in snap and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(snap["cuda"])


def _to_lists(obj):
    if isinstance(obj, tuple):
        return [_to_lists(o) for o in obj]
    return obj
