"""Atomic file writes with ordinary permissions (no torch, no package imports).

Every file ifdd-bench writes (result CSVs, checkpoints, captures, reports, figures, split
lists) goes through this module: the content is written into a temporary file in the target's
folder and moved over the target with ``os.replace``. A reader therefore sees either the old
file or the complete new one, and a failure (exception, full disk, Ctrl-C) leaves the old file
as it was and no temporary file behind.

``tempfile.mkstemp`` creates its file with mode 0600. Before the move the temporary file gets
the mode a plain ``open(path, "w")`` would have produced, ``0o666 & ~umask`` (0644 under the
usual umask 022), so results on shared storage stay readable by the group and others exactly as
far as the user's umask allows.

Example::

    >>> write_text_atomic("report/summary.csv", "a,b\\n1,2\\n")      # doctest: +SKIP
    >>> with atomic_path("fig.pdf", suffix=".pdf") as tmp:           # doctest: +SKIP
    ...     fig.savefig(tmp, format="pdf")
    >>> with atomic_open("last.pt", "wb", fsync=True) as fh:         # doctest: +SKIP
    ...     torch.save(state, fh)

Nothing here imports from ``ifdd_bench``, so every layer (results, data, engine, sweep, reports)
may import it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

__all__ = ["current_umask", "default_file_mode", "atomic_path", "atomic_open", "write_text_atomic",
           "write_bytes_atomic", "json_text"]


def current_umask() -> int:
    """The process umask, read without changing it where Linux exposes it (thread-safe there)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: setting and restoring is the only portable way to read it
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """Mode a newly created file gets from a plain ``open()``: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".tmp", fsync: bool = False,
                mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The temporary file already exists (empty) when the block starts; the writer may reopen,
    truncate or overwrite it by name (``np.savez``, ``fig.savefig``, ``Image.save``). When the
    block finishes normally the file is optionally fsync'ed, chmod-ed to
    :func:`default_file_mode` and moved onto ``path`` with ``os.replace``. When the block, the
    chmod or the move raises, the temporary file is removed and the error propagates; ``path``
    keeps its old content.

    ``suffix`` ends the temporary name; use the target's extension where a writer infers the
    format from (or appends) it, e.g. ``".npz"`` for ``np.savez_compressed``. ``mkdir`` creates
    missing parent folders first.
    """
    target = Path(path)
    if mkdir:
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            _fsync_path(tmp)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                newline: str | None = None, fsync: bool = False, mkdir: bool = True) -> Iterator[IO[Any]]:
    """Open a file object whose content replaces ``path`` atomically when the block succeeds.

    ``mode`` is ``"w"`` (text, ``encoding``/``newline`` as for :func:`open`) or ``"wb"``
    (binary; ``encoding``/``newline`` ignored). With ``fsync=True`` the data is flushed to disk
    before the move (checkpoints, result CSVs). Failure semantics as :func:`atomic_path`.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path, mkdir=mkdir) as tmp:
        if mode == "wb":
            fh = open(tmp, "wb")
        else:
            fh = open(tmp, "w", encoding=encoding, newline=newline)
        with fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())


def write_text_atomic(path: str | os.PathLike, text: str, *, encoding: str = "utf-8",
                      newline: str | None = None, fsync: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns ``path`` as a Path.

    ``newline=""`` writes ``text`` untranslated (e.g. CSV produced with ``\\r\\n`` terminators).
    """
    with atomic_open(path, "w", encoding=encoding, newline=newline, fsync=fsync) as fh:
        fh.write(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns ``path`` as a Path."""
    with atomic_open(path, "wb", fsync=fsync) as fh:
        fh.write(data)
    return Path(path)


def json_text(data: Any) -> str:
    """Pretty JSON text of ``data`` with a final newline, as every JSON file of the toolkit is written:
    nan and inf become null, other non-JSON values their ``str``."""
    return json.dumps(_json_safe(data), indent=2, default=str) + "\n"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
