"""Content hashes (no torch): ``sha256_file`` for the files that run records, weight-loading
reports and the pretext command cite, and ``json_hash`` for the short ids of configs, recipes,
sweeps and SynthDFER presets.

Example::

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "w.bin"
    >>> _ = path.write_bytes(b"abc")
    >>> sha256_file(path)[:12]
    'ba7816bf8f01'
    >>> json_hash({"b": 1, "a": [2, 3]}) == json_hash({"a": [2, 3], "b": 1})
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-byte blocks (1 MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def json_hash(data: Any, length: int = 8) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``data`` as JSON with sorted keys.

    Values JSON cannot hold are written as ``str(value)``. Run ids, train and recipe hashes, sweep
    ids and SynthDFER cache keys are all made here, so their bytes must not change: a change renames
    every committed run.
    """
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]
