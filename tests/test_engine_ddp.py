"""DistributedDataParallel on CPU (gloo, 2 processes via torchrun) matches one process.

Why the comparison is fair: the global batch is the same (8 = 2 x 4); the training sampler is a
DistributedSampler in both cases, so its permutation depends only on (seed, epoch) and the two
ranks' batches together hold exactly the clips of the single process's batch; per-item data
randomness depends on (seed, epoch, index), not on the process; the test model has neither
BatchNorm (per-rank batch statistics) nor dropout (per-rank RNG), and no mixup (mixup partners
are per-rank); DDP averages the two ranks' mean-loss gradients, which equals the gradient of
the mean over the global batch. What remains is floating-point summation order. Validation and
test shards are uneven (13 and 25 clips) to check that no clip is padded or dropped.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

FIXTURE = Path(__file__).with_name("test_engine_fixtures.py")
RUN_PREFIX = "engine_test_net-full-synth-f1-s0-unified-"  # + the recipe hash of the script's settings


def run_folder(runs_dir):
    """The one run folder the fixture script wrote under ``runs_dir``."""
    (folder,) = Path(runs_dir).glob(RUN_PREFIX + "*")
    return folder
ARGS = ["--epochs", "3", "--n-val", "13", "--n-test", "25"]


def _run(cmd: list[str]) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-4000:])
    return out.stdout


def test_two_gloo_processes_match_one_process(tmp_path, capsys):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    import test_engine_fixtures as fx

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fx.main([str(single), *ARGS])  # one process, here
    finally:
        torch.set_num_threads(threads)
    stdout = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   str(FIXTURE), str(ddp), *ARGS])
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert sum(1 for r in rows if r["kind"] == "row") == 1  # only rank 0 reports
    start = next(r for r in rows if r["kind"] == "start")
    assert start["world_size"] == 2

    a = torch.load(run_folder(single) / "last.pt", weights_only=True)
    b = torch.load(run_folder(ddp) / "last.pt", weights_only=True)
    for key, tensor in a["model_state"].items():
        assert torch.allclose(tensor, b["model_state"][key], rtol=1e-4, atol=1e-6), key
    for ra, rb in zip(a["history"], b["history"], strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
        assert rb["train_clips"] == ra["train_clips"] == 48
        for key in ("val_uar", "val_war", "test_uar", "test_war"):
            assert rb[key] == pytest.approx(ra[key], abs=1e-12), key
    ja = json.loads((run_folder(single) / "result.json").read_text())
    jb = json.loads((run_folder(ddp) / "result.json").read_text())
    assert jb["confusion"] == ja["confusion"]
    assert sum(map(sum, jb["confusion"])) == 25  # every test clip exactly once over the two shards
    assert jb["row"]["world_size"] == 2 and jb["row"]["device"].endswith("x2")
    with (ddp / "results" / "runs.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 1  # written once, by rank 0
    with (run_folder(ddp) / "predictions.csv").open() as fh:
        assert [int(r["index"]) for r in csv.DictReader(fh)] == list(range(25))


# ------------------------------------------------------------------------------------------
# gradient layouts: DDP copies a gradient into its bucket view (laid out like the parameter) and
# warns "Grad strides do not match bucket view strides" when the two layouts differ


DDP_LAYOUT_MODEL = "ifdd_tiny"  # had channels-last pool-conv and ISSM-descriptor weight gradients


def _layout_rank(model_name: str, batch: int, out_dir: str) -> None:
    """torchrun body: one DDP forward/backward of ``model_name``; writes ``rank<r>.json`` in ``out_dir``
    with the warnings this rank saw and the parameters whose gradient strides differ from their own.

    One file per rank: lines printed by two ranks into the shared stdout can interleave."""
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    from ifdd_bench import registry
    from ifdd_bench.engine import distributed as D
    from ifdd_bench.models.output import unpack_output

    ctx = D.init_distributed("cpu")
    torch.manual_seed(0)
    cfg = registry.resolve_config(model_name, "full", num_classes=3)
    model = registry.build_from_config(model_name, cfg).train()
    ddp = DistributedDataParallel(model)
    x = torch.rand(batch, 3, cfg.frames, cfg.img_size, cfg.img_size)  # (B, C, T, H, W)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logits, aux, _ = unpack_output(ddp(x))
        (logits.float().logsumexp(-1).mean() + sum(aux.values())).backward()
    mismatched = [name for name, p in model.named_parameters() if p.grad is not None and p.grad.stride() != p.stride()]
    record = {"rank": ctx.rank, "warnings": [str(w.message) for w in caught], "mismatched": mismatched}
    (Path(out_dir) / f"rank{ctx.rank}.json").write_text(json.dumps(record))
    D.shutdown(ctx)


def test_ddp_gradients_match_their_bucket_views(tmp_path):
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          __file__, "--layout", DDP_LAYOUT_MODEL, "1", str(tmp_path)])
    ranks = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    for rank in ranks:
        assert not [w for w in rank["warnings"] if "strides" in w], rank["warnings"]
        assert rank["mismatched"] == []


def _tiny_models() -> list[str]:
    from ifdd_bench import registry

    return [name for name in registry.list_models() if name.endswith("_tiny") or name == "static_control"]


@pytest.mark.parametrize("batch", [1, 2])
def test_every_tiny_models_gradients_are_laid_out_like_its_parameters(batch):
    from ifdd_bench import registry
    from ifdd_bench.models.output import unpack_output

    checked = 0
    for name in _tiny_models():
        torch.manual_seed(0)
        cfg = registry.resolve_config(name, "full", num_classes=3)
        model = registry.build_from_config(name, cfg).train()
        x = torch.rand(batch, 3, cfg.frames, cfg.img_size, cfg.img_size)  # (B, C, T, H, W)
        logits, aux, _ = unpack_output(model(x))
        (logits.float().logsumexp(-1).mean() + sum(aux.values())).backward()
        for pname, p in model.named_parameters():
            if p.grad is not None:
                assert p.grad.stride() == p.stride(), (name, pname, p.stride(), p.grad.stride())
                checked += 1
    assert checked > 100


if __name__ == "__main__" and sys.argv[1:2] == ["--layout"]:
    _layout_rank(sys.argv[2], int(sys.argv[3]), sys.argv[4])
