"""Write the pinned-equivalence fixture from the authors' IFDD code (``tests/fixtures/authors_parity.json``).

Runs only where a local checkout of the authors' repository (github.com/CyberPegasus/IFDD) is given
with ``--reference``; its extra imports (``loguru``, ``einops``) may live in a folder given by
``--reference-deps`` (``pip install --target DIR loguru einops``). Nothing of their code enters this
project: the fixture holds numbers only, and ``tests/test_authors_parity.py`` checks our model
against them. How it was produced and what it measured: ``docs/parity.md``.

For each reference row (the DFEW experiment's model-building semantics, spec 1 and 10.1):

* ``full``     use_ISSM=1 use_LADM=1  <-> our variant ``full``
* ``no_issm``  use_ISSM=0 use_LADM=1  <-> ``no_issm`` (lazy split + LADM + lifting loss)
* ``no_ladm``  use_ISSM=1 use_LADM=0  <-> ``no_ladm`` (ISSM + split-only top, no lifting loss)

the script builds our model (paper geometry, 16x224x224, K=7), fills it with
:func:`ifdd_bench.models.fill.fill_parameters` (rule ``crc32-uniform-v1``, keyed by our parameter
names), copies the same tensors into the authors' model through :func:`authors_name` (strict: every
one of their parameters must receive exactly one of ours, with the same shape), and records on the
clip :func:`~ifdd_bench.models.fill.deterministic_clip`:

* ``logits``: their eval-mode logits ``(B, K)``;
* ``cls_loss``: their soft-target cross-entropy (the mixup path of their trainer) on label-smoothed
  one-hot targets (epsilon 0.1), from a train-mode forward with every dropout / stochastic-depth module
  switched to eval (so the forward is deterministic);
* ``lift_loss``: their ``LiftingLoss`` (0.1, SmoothL1, summed over the batch, bug B1) of the
  ``pool_a`` that forward returns; ``lift_in_total`` says whether their trainer adds it (only when
  use_LADM=1); ``total_loss`` is what their trainer back-propagates.

It also runs our model on the same input and prints both side by side (max abs / relative logits
difference, losses), the numbers ``docs/parity.md`` quotes.

Example::

    python benchmarks/make_authors_fixture.py --reference /tmp/ifdd_ref --reference-deps /tmp/ifdd_ref_deps \\
        --commit 1a1f5570d3e91b75bc0e6bd1408e91bf1eed6a81
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "authors_parity.json"

#: fixture row -> (our ABLATIONS variant, authors' use_ISSM, authors' use_LADM)
ROWS = {"full": ("full", True, True), "no_issm": ("no_issm", False, True), "no_ladm": ("no_ladm", True, False)}
#: our config overrides for the deterministic train-mode forward (their modules are switched to eval instead)
NO_DROP = {"drop_path": 0.0, "ladm_drop_path": 0.0, "head_dropout": 0.0}
TARGET_CLASSES = (3, 5)  # one class index per clip of the batch (batch size = len)
LABEL_SMOOTHING = 0.1
TOLERANCE = {"logits_rel": 1e-5, "loss_rel": 1e-5}

# our parameter name -> theirs: (regex on our name, replacement), first match wins. Inner block
# renames are applied after the block prefix.
_PREFIX = (
    (r"^embed\.proj\.", "embed.conv_proj."),
    (r"^backbone\.cls_token$", "backbone.backbone.pos_encoding.class_token"),
    (r"^backbone\.norm\.", "backbone.backbone.norm."),
    (r"^backbone\.blocks\.", "backbone.backbone.blocks."),
    (r"^pyramid\.lateral\.", "backbone.PANLayer."),
    (r"^pyramid\.fuse\.", "backbone.CatConv."),
    (r"^top\.split\.descriptor\.", "backbone.WaveLifts.adapt_split.dim_project.0."),
    (r"^top\.split\.offset_a\.", "backbone.WaveLifts.adapt_split.offset_project_approx.0."),
    (r"^top\.split\.offset_d\.", "backbone.WaveLifts.adapt_split.offset_project_detail.0."),
    (r"^top\.split\.time_project\.", "backbone.WaveLifts.adapt_split.time_project."),
    (r"^top\.(spatial_pos|temporal_pos|class_pos)$", r"backbone.WaveLifts.\1"),
    (r"^top\.norm_a\.", "backbone.WaveLifts.xa_norm."),
    (r"^top\.norm_d\.", "backbone.WaveLifts.xd_norm."),
    (r"^top\.norm1\.", "backbone.WaveLifts.out_norm1."),
    (r"^top\.norm2\.", "backbone.WaveLifts.out_norm2."),
    # updater: query from the approximation, keys/values from the detail; predictor the reverse
    (r"^top\.update\.q\.", "backbone.WaveLifts.q_a."),
    (r"^top\.update\.kv\.", "backbone.WaveLifts.kv_d."),
    (r"^top\.update\.proj\.", "backbone.WaveLifts.project_a.0."),
    (r"^top\.predict\.q\.", "backbone.WaveLifts.q_d."),
    (r"^top\.predict\.kv\.", "backbone.WaveLifts.kv_a."),
    (r"^top\.predict\.proj\.", "backbone.WaveLifts.project_d.0."),
    (r"^top\.attn\.qkv\.", "backbone.WaveLifts.qkv."),
    (r"^top\.attn\.proj\.", "backbone.WaveLifts.project.0."),
    (r"^top\.mlp\.0\.", "backbone.WaveLifts.mlp.0."),
    (r"^top\.mlp\.2\.", "backbone.WaveLifts.mlp.3."),
    (r"^top\.compress\.", "backbone.WaveLifts.project_compress."),
    (r"^head\.fc\.", "head.head.1."),
)
_BLOCK_INNER = (
    (r"\.attn\.project\.", ".attn.project.0."),
    (r"\.attn\.(pool_[qkv])\.conv\.", r".attn.\1.pool."),
    (r"\.attn\.(pool_[qkv])\.norm\.", r".attn.\1.norm_act.0."),
    (r"\.mlp\.2\.", ".mlp.3."),
)


def authors_name(ours: str) -> str:
    """The authors' state-dict key of our IFDD parameter ``ours`` (paper geometry, any of the three rows)."""
    for pattern, repl in _PREFIX:
        if re.search(pattern, ours):
            theirs = re.sub(pattern, repl, ours)
            if ours.startswith("backbone.blocks."):
                for inner, inner_repl in _BLOCK_INNER:
                    theirs = re.sub(inner, inner_repl, theirs)
            return theirs
    raise KeyError(f"no authors' name for our parameter {ours!r}")


# --------------------------------------------------------------------------------------------
# the authors' model


def import_reference(ref_root: str, deps: str | None) -> dict:
    """Import the authors' model classes and losses from a checkout without running their package inits."""
    for extra in filter(None, [deps, ref_root]):
        if extra not in sys.path:
            sys.path.insert(0, extra)
    # core/__init__.py and core/utils/__init__.py pull in cv2 and friends: register bare packages
    for name in ("core", "core.model", "core.wave_methods", "core.utils"):
        mod = types.ModuleType(name)
        mod.__path__ = [str(Path(ref_root, *name.split(".")))]
        sys.modules.setdefault(name, mod)
    from core.model.backbone import MFViT_FPN
    from core.model.embedNet import embedNet_light
    from core.model.head import headNet
    from core.model.net_main import MFViT_Main
    from core.utils.loss import LiftingLoss, SoftTargetCrossEntropy

    return {"MFViT_FPN": MFViT_FPN, "embedNet_light": embedNet_light, "headNet": headNet,
            "MFViT_Main": MFViT_Main, "LiftingLoss": LiftingLoss, "SoftTargetCrossEntropy": SoftTargetCrossEntropy}


def build_reference(ref: dict, use_issm: bool, use_ladm: bool, frames: int, classes: int):
    """Their model as the DFEW experiment builds it from ``use_ISSM`` / ``use_LADM`` (after its flag rewiring)."""
    embed = ref["embedNet_light"](input_channel=3, input_time=frames, embed_dim=96, out_resolution=56)
    backbone = ref["MFViT_FPN"](type="MFViT_XS", use_stage=[2, 3], attention_dropout=0.0, use_WaveSF=use_ladm,
                                SSL=True, use_prompt=False, WaveSF_preUpdate=True, AdaptSplit=use_issm,
                                WaveNorm=True, WavePool=False, facial=False)
    head = ref["headNet"](num_classes=classes, embed_dim=768, dropout=0.5)
    return ref["MFViT_Main"](embedNet=embed, backbone=backbone, head=head, use_WaveSF=use_ladm or use_issm,
                             SSL=True, facial=False)


def load_mapped(theirs, written: dict) -> None:
    """Copy our filled tensors into their model by :func:`authors_name`; strict on names and shapes."""
    import torch

    target = theirs.state_dict()
    params = {n for n, _ in theirs.named_parameters()}
    mapped = {authors_name(k): v for k, v in written.items()}
    if len(mapped) != len(written):
        raise SystemExit("name map is not one-to-one")
    missing = sorted(params - set(mapped))
    unknown = sorted(set(mapped) - params)
    shapes = [f"{k}: {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in mapped.items()
              if k in target and tuple(v.shape) != tuple(target[k].shape)]
    if missing or unknown or shapes:
        raise SystemExit(f"name map mismatch: their params not filled {missing[:5]}, mapped names they lack "
                         f"{unknown[:5]}, shape mismatches {shapes[:5]}")
    with torch.no_grad():
        for name, param in theirs.named_parameters():
            param.copy_(mapped[name])


def _deterministic_train(model) -> None:
    """Train mode, but every dropout and stochastic-depth module (identity at eval) switched off."""
    import torch

    model.train()
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout) or type(mod).__name__ == "StochasticDepth":
            mod.eval()


def soft_targets(classes: tuple[int, ...], num_classes: int, smoothing: float):
    """Label-smoothed one-hot targets ``(B, K)``: on ``1 - eps + eps/K``, off ``eps/K``."""
    import torch

    t = torch.full((len(classes), num_classes), smoothing / num_classes)
    t[torch.arange(len(classes)), torch.tensor(classes)] += 1.0 - smoothing
    return t


def run_reference(ref: dict, model, x, targets, use_ladm: bool) -> dict:
    """Their eval logits and train-mode losses (their loss modules, their trainer's summation)."""
    import torch

    model.eval()
    with torch.no_grad():
        logits = model(x)  # (B, K)
    _deterministic_train(model)
    out_logits, pool_a, x_d = model(x)  # grad on: their LiftingLoss skips tensors without grad
    cls = ref["SoftTargetCrossEntropy"]()(out_logits, targets)
    lift = ref["LiftingLoss"]()(pool_a, x_d)  # pool_a (B, 7, 7), iterated over the batch
    total = cls + lift if use_ladm else cls  # their trainer adds it only when use_LADM (optimize_WaveSF)
    return {"logits": logits, "train_logits": out_logits.detach(), "cls_loss": cls.item(),
            "lift_loss": lift.item(), "lift_in_total": use_ladm, "total_loss": total.item()}


def run_ours(model, x, targets) -> dict:
    """Our eval logits and train-mode losses, computed the way the engine does."""
    import torch

    from ifdd_bench.engine.mixing import soft_target_cross_entropy
    from ifdd_bench.models.ifdd import lifting_loss

    model.eval()
    with torch.no_grad():
        logits = model(x)
        model.train()
        out = model(x)
    cls = soft_target_cross_entropy(out.logits, targets)
    # no_ladm has no lifting loss (lambda 0): the value it would have, from the pool_a it still computes
    lift = out.losses["lift"] if "lift" in out.losses else lifting_loss(out.extras["pool_a"], 0.1, "sum")
    total = cls + sum(out.losses.values())
    return {"logits": logits, "cls_loss": float(cls), "lift_loss": float(lift),
            "lift_in_total": "lift" in out.losses, "total_loss": float(total)}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="local checkout of github.com/CyberPegasus/IFDD")
    ap.add_argument("--reference-deps", default=None, help="extra sys.path entry holding loguru and einops")
    ap.add_argument("--commit", default=None,
                    help="the checkout's commit sha (default: `git rev-parse HEAD` in --reference, if it is a work tree)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"fixture path (default {DEFAULT_OUT.relative_to(ROOT)})")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fill rule and of the input clip")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma list of rows (default all; the test expects all three)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    import numpy as np
    import torch

    from ifdd_bench import registry
    from ifdd_bench.models.fill import FILL_RULE, deterministic_clip, fill_parameters

    commit = args.commit or _git_head(args.reference)
    if not commit:
        raise SystemExit("cannot tell the reference's commit: pass --commit SHA (e.g. from `git archive` of it)")
    ref = import_reference(args.reference, args.reference_deps)
    frames, size, classes = 16, 224, 7  # the authors' backbone is built for 8x56x56 tokens: 224 px only
    batch = len(TARGET_CLASSES)
    x = deterministic_clip((batch, 3, frames, size, size), args.seed)  # (B, 3, T, H, W) in [0, 1)
    targets = soft_targets(TARGET_CLASSES, classes, LABEL_SMOOTHING)  # (B, K)
    rows, report = {}, []
    for row in [r.strip() for r in args.rows.split(",") if r.strip()]:
        variant, use_issm, use_ladm = ROWS[row]
        t0 = time.perf_counter()
        ours = registry.create_model("ifdd", variant, frames=frames, num_classes=classes, img_size=size,
                                     overrides=NO_DROP)
        written = fill_parameters(ours, args.seed)
        torch.manual_seed(0)  # their constructors draw initial values we then overwrite
        theirs = build_reference(ref, use_issm, use_ladm, frames, classes)
        load_mapped(theirs, written)
        got = run_reference(ref, theirs, x, targets, use_ladm)
        mine = run_ours(ours, x, targets)
        train_eval = float((got["train_logits"] - got["logits"]).abs().max())
        diff = (mine["logits"] - got["logits"]).abs()
        scale = float(got["logits"].abs().max())
        report.append((row, float(diff.max()), float(diff.max()) / scale, got, mine, time.perf_counter() - t0))
        rows[row] = {
            "variant": variant, "authors_flags": {"use_ISSM": use_issm, "use_LADM": use_ladm},
            "logits": got["logits"].tolist(), "cls_loss": got["cls_loss"], "lift_loss": got["lift_loss"],
            "lift_in_total": got["lift_in_total"], "total_loss": got["total_loss"],
            "their_train_vs_eval_logits_max_abs": train_eval,
        }
        print(f"{row}: done in {time.perf_counter() - t0:.1f} s (their train-mode vs eval logits max |d| "
              f"{train_eval:.2e})", flush=True)
        del ours, theirs, written

    fixture = {
        "about": "IFDD outputs from the authors' code under a deterministic weight fill; checked by "
                 "tests/test_authors_parity.py, produced by benchmarks/make_authors_fixture.py (docs/parity.md)",
        "authors_repo": "https://github.com/CyberPegasus/IFDD",
        "authors_commit": commit,
        "made_with": {"torch": torch.__version__, "numpy": np.__version__, "device": "cpu", "dtype": "float32",
                      "command": "python benchmarks/make_authors_fixture.py --reference REF --reference-deps DEPS "
                                 f"--commit {commit} --seed {args.seed}"},
        "model": "ifdd",
        "geometry": {"batch": batch, "frames": frames, "img_size": size, "num_classes": classes},
        "our_overrides": NO_DROP,
        "fill": {"rule": FILL_RULE, "seed": args.seed, "keyed_by": "our parameter names"},
        "input": {"rule": "ifdd_bench.models.fill.deterministic_clip", "seed": args.seed,
                  "shape": [batch, 3, frames, size, size]},
        "targets": {"classes": list(TARGET_CLASSES), "label_smoothing": LABEL_SMOOTHING,
                    "loss": "soft-target cross-entropy, batch mean"},
        "lift": {"weight": 0.1, "beta": 1.0, "reduction": "sum over the batch of per-sample means (bug B1)"},
        "tolerance": TOLERANCE,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"\nwrote {out} ({out.stat().st_size} bytes); authors' commit {commit}\n")
    within = all(drel <= TOLERANCE["logits_rel"] and all(
        _rel(mine[k], got[k]) <= TOLERANCE["loss_rel"] for k in ("cls_loss", "lift_loss", "total_loss"))
        and mine["lift_in_total"] == got["lift_in_total"] for _, _, drel, got, mine, _ in report)
    print(f"{'row':8} {'max|dlogit|':>11} {'rel':>9} {'cls theirs':>12} {'cls ours':>12} {'lift theirs':>13} "
          f"{'lift ours':>13} {'total theirs':>13} {'total ours':>13} {'s':>5}")
    for row, dmax, drel, got, mine, secs in report:
        print(f"{row:8} {dmax:11.2e} {drel:9.2e} {got['cls_loss']:12.8f} {mine['cls_loss']:12.8f} "
              f"{got['lift_loss']:13.9f} {mine['lift_loss']:13.9f} {got['total_loss']:13.8f} "
              f"{mine['total_loss']:13.8f} {secs:5.1f}")
        print(f"{'':8} rel. differences: cls {_rel(mine['cls_loss'], got['cls_loss']):.1e}, lift "
              f"{_rel(mine['lift_loss'], got['lift_loss']):.1e}, total {_rel(mine['total_loss'], got['total_loss']):.1e}; "
              f"lift in total: theirs {got['lift_in_total']}, ours {mine['lift_in_total']}")
    print(f"(max|dlogit|: over the batch; rel: / max|their logit|; tolerance {TOLERANCE}) -> ours "
          + ("within tolerance" if within else "OUTSIDE TOLERANCE"))
    return 0 if within else 1


def _git_head(path: str) -> str | None:
    if not Path(path, ".git").exists():  # e.g. unpacked from `git archive`: do not pick up an enclosing repo
        return None
    try:
        return subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
