"""``ifdd-bench export``: a trained run as a ``torch.export`` program (``.pt2``) and as ONNX, each
checked by running the exported file against the eager model::

    out = export_run("runs/ifdd_tiny-full-synth-f1-s0-unified-1a2b3c4d", formats="pt2,onnx")
    out["formats"]["onnx"]["max_abs_diff"], out["out_dir"]     # e.g. 3e-08, runs/<id>/export

The model is rebuilt from the checkpoint (:func:`~ifdd_bench.engine.checkpoint.load_model`) and
wrapped so that the exported program maps a clip batch ``(B, C, T, H, W)`` float in [0, 1] to the
logits ``(B, K)`` (training-time extras dropped). The batch dimension is dynamic; T, H and W are
the run's own (``data_config``). ONNX goes through the dynamo exporter (``torch.onnx.export`` of
the same exported program; no TorchScript, which IFDD's masks do not script).

The check: two seeded inputs (batch ``batch`` and ``batch + 1``) through the eager model and
through the program read back from the bytes that are written (``torch.export.load``;
``onnxruntime`` on the CPU); the largest absolute difference of the logits is reported per format
and in ``export.json`` next to the files. Everything is exported and checked in memory first:
a bad request (damaged checkpoint, unknown format, missing package) or an exporter failure writes
nothing; files are written atomically at the end.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from ifdd_bench.atomic import write_bytes_atomic
from ifdd_bench.engine import runfiles as F
from ifdd_bench.engine.checkpoint import load_model
from ifdd_bench.errors import ConfigError, ExportError, unknown
from ifdd_bench.events import Progress
from ifdd_bench.extras import require
from ifdd_bench.hashing import sha256_file
from ifdd_bench.models.output import unpack_output

FORMATS = ("pt2", "onnx")
#: file name of each format inside the export folder
FILES = {"pt2": "model.pt2", "onnx": "model.onnx"}
EXPORT_JSON = "export.json"
#: the export folder inside a run folder when no ``out_dir`` is given
EXPORT_DIR = "export"
#: largest absolute logit difference accepted between the exported and the eager model (fp32)
DEFAULT_ATOL = 1e-4
#: the dynamic batch dimension's range
MAX_BATCH = 4096


class LogitsOnly(nn.Module):
    """``model`` with its output reduced to the logits ``(B, K)`` (what a deployed model returns)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unpack_output(self.model(x))[0]


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """Format names from a comma list or a sequence, in order and without repeats; an unknown name,
    or ONNX without its packages, raises :class:`ConfigError`."""
    items = [formats] if isinstance(formats, str) else list(formats)
    names = tuple(dict.fromkeys(n.strip().lower() for item in items for n in str(item).split(",") if n.strip()))
    if not names:
        raise ConfigError(f"--format needs at least one of {', '.join(FORMATS)}")
    for name in names:
        if name not in FORMATS:
            raise unknown("export format", name, FORMATS)
    if "onnx" in names:
        require("onnx", "onnxscript", "onnxruntime", extra="export", feature="export --format onnx")
    return names


def example_inputs(ckpt: dict, batch: int, seed: int) -> torch.Tensor:
    """A seeded clip batch ``(batch, C, T, H, W)`` in [0, 1] at the run's geometry."""
    data, model_cfg = ckpt["data_config"], ckpt["model_config"]
    frames, size = int(data["frames"]), int(data["size"])
    channels = int(model_cfg.get("in_chans", 3))
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, frames, size, size, generator=gen)


def _max_diff(run: Any, inputs: Sequence[torch.Tensor], wanted: Sequence[torch.Tensor]) -> float:
    """Largest absolute difference between ``run(x)`` and the eager logits over every input."""
    return max(float((torch.as_tensor(run(x)) - want).abs().max()) for x, want in zip(inputs, wanted))


def _pt2(program: Any, inputs: Sequence[torch.Tensor], wanted: Sequence[torch.Tensor]) -> tuple[bytes, dict]:
    buf = io.BytesIO()
    torch.export.save(program, buf)
    data = buf.getvalue()
    loaded = torch.export.load(io.BytesIO(data)).module()
    with torch.no_grad():
        diff = _max_diff(loaded, inputs, wanted)
    return data, {"checked_with": f"torch.export.load (torch {torch.__version__})", "max_abs_diff": diff}


def _onnx(program: Any, inputs: Sequence[torch.Tensor], wanted: Sequence[torch.Tensor]) -> tuple[bytes, dict]:
    import onnxruntime as ort

    with contextlib.redirect_stdout(io.StringIO()):  # the exporter reports its steps on stdout
        onnx_program = torch.onnx.export(program, dynamo=True, optimize=True, verbose=False)
    proto = onnx_program.model_proto
    data = proto.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    diff = _max_diff(lambda x: session.run(None, {name: x.numpy()})[0], inputs, wanted)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return data, {"checked_with": f"onnxruntime {ort.__version__} (CPUExecutionProvider)", "max_abs_diff": diff,
                  "opset": opset, "input": name, "output": session.get_outputs()[0].name}


_EXPORTERS = {"pt2": _pt2, "onnx": _onnx}


def export_run(source: str | os.PathLike, formats: str | Sequence[str] = FORMATS,
               out_dir: str | os.PathLike | None = None, *, batch: int = 2, atol: float = DEFAULT_ATOL,
               progress: Progress | None = None) -> dict[str, Any]:
    """Export a run folder's ``best.pt`` (or a checkpoint file) and check each export.

    Returns the ``export.json`` record: ``{"source", "run_id", "model", "variant", "epoch",
    "classes", "input_shape", "dynamic_batch", "atol", "ok", "formats": {fmt: {"file", "bytes",
    "sha256", "max_abs_diff", "ok", "checked_with", "seconds", ...}}, "torch_export_seconds",
    "out_dir"}``. ``ok`` is false
    when a format's difference exceeds ``atol`` (the files are still written, for inspection).
    ``out_dir`` defaults to ``<run folder>/export``; ``progress`` receives ``{"kind": "export",
    "stage"}`` events.
    """
    names = parse_formats(formats)
    if not 1 <= batch < MAX_BATCH:  # the check also runs batch + 1, which must stay in the dynamic range
        raise ConfigError(f"--batch must be between 1 and {MAX_BATCH - 1}, got {batch}")
    model, ckpt = load_model(source, "cpu")  # a damaged or foreign file -> CheckpointError
    path = Path(ckpt["path"])
    out = Path(out_dir) if out_dir is not None else path.parent / EXPORT_DIR
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out-dir {out} is a file", hint="name a folder (it is created if missing)")
    emit = progress or (lambda event: None)

    net = LogitsOnly(model).eval()
    inputs = [example_inputs(ckpt, batch, seed=0), example_inputs(ckpt, batch + 1, seed=1)]
    with torch.no_grad():
        wanted = [net(x) for x in inputs]  # (B, K) eager logits
    emit({"kind": "export", "stage": "torch.export"})
    t0 = time.perf_counter()
    dims = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)
    try:
        program = torch.export.export(net, (inputs[0],), dynamic_shapes=dims)
    except Exception as err:  # noqa: BLE001 - any tracing failure: name the model and the reason
        raise ExportError(f"torch.export cannot trace model {ckpt['model']!r} ({path}): "
                          f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                          hint="run with --debug for the exporter's full report") from None
    traced_s = time.perf_counter() - t0

    blobs: dict[str, bytes] = {}
    report: dict[str, dict] = {}
    for name in names:
        emit({"kind": "export", "stage": name})
        t0 = time.perf_counter()
        try:
            blobs[name], info = _EXPORTERS[name](program, inputs, wanted)
        except Exception as err:  # noqa: BLE001
            raise ExportError(f"exporting model {ckpt['model']!r} ({path}) to {name} failed: "
                              f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                              hint="run with --debug for the exporter's full report; the other formats "
                                   "can be exported alone with --format") from None
        info.update(file=FILES[name], bytes=len(blobs[name]), ok=bool(info["max_abs_diff"] <= atol),
                    seconds=round(time.perf_counter() - t0, 3))
        report[name] = info

    emit({"kind": "export", "stage": "writing"})
    for name in set(FILES) - set(blobs):  # an earlier export's other format would outlive export.json's list
        (out / FILES[name]).unlink(missing_ok=True)
    for name, data in blobs.items():
        target = write_bytes_atomic(out / FILES[name], data, fsync=True)
        report[name]["sha256"] = sha256_file(target)
    record = {
        "source": str(path), "run_id": ckpt.get("run_id"), "model": ckpt["model"], "variant": ckpt.get("variant"),
        "epoch": ckpt.get("epoch"), "classes": list(ckpt["classes"]),
        "input_shape": ["batch", *inputs[0].shape[1:]], "input_range": [0.0, 1.0], "output": "logits (batch, classes)",
        "dynamic_batch": [1, MAX_BATCH], "checked_batches": [int(x.shape[0]) for x in inputs], "atol": atol,
        "torch_export_seconds": round(traced_s, 3),
        "ok": all(info["ok"] for info in report.values()), "formats": report,
        "torch_version": str(torch.__version__),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    F.write_json(out / EXPORT_JSON, record)
    return {**record, "out_dir": str(out)}
