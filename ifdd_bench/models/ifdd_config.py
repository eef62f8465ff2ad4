"""IFDD's configuration and its named ablation variants, without torch.

:class:`IFDDConfig` holds every hyper-parameter and component switch (defaults: the published DFEW
model); :data:`ABLATIONS` names each ablation variant with its config overrides, its paper-style
row label and a one-line note, in the row order of the paper's ablation table. The model
(``ifdd_bench.models.ifdd``) builds from these; the report (``ifdd_bench.reports``) reads the
labels and derives each row's switches from here, so neither keeps a copy.

Example::

    >>> ABLATIONS["no_ladm"].label, ABLATIONS["no_ladm"].switches()
    ('+ISSM', {'split': 'issm', 'ladm': False, 'lift': False})
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from ifdd_bench.errors import ConfigError, suggest

#: attention formulations of the backbone and LADM (same numbers; speed differs by size)
ATTN_IMPLS = ("sdpa", "explicit")

#: input frame counts the embedding supports -> (conv temporal stride, temporal avg-pool)
FRAME_MODES = {8: (1, 1), 16: (2, 1), 32: (2, 2)}
TOKEN_FRAMES = 8  # T' after the embedding for every supported frame count
TOPS = ("auto", "ladm", "split_only", "gap")
ISSM_GRIDS = ("reference", "aligned")
LIFT_REDUCTIONS = ("sum", "mean")
#: input standardisation applied inside the embedding: name -> (per-channel mean, std) or None.
#: ``none`` is the reference (clips enter as RGB in [0, 1], spec 3); ``kinetics`` is torchvision's
#: video convention (mean 0.45, std 0.225 per channel), which a model trained from scratch needs
#: to start learning (measured on SynthDFER: docs/models.md, "Presets"; numbers in benchmarks/README.md).
INPUT_NORMS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "none": None,
    "kinetics": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),
}


@dataclass(frozen=True)
class IFDDConfig:
    """Every IFDD hyper-parameter and component switch; defaults = the published DFEW model."""

    # data shape (set by the engine from the dataset)
    num_classes: int = 7  # K (DFEW / FERV39k 7, MAFW 11)
    frames: int = 16  # input frames T: 8 | 16 (conv stride 2) | 32 (conv stride 2 + avg-pool 2) -> T'=8
    img_size: int = 224  # H = W; a multiple of 8 * patch_stride so every stage grid halves exactly
    in_chans: int = 3
    # none (reference: RGB in [0, 1] goes straight into the conv) | kinetics ((x - 0.45) / 0.225,
    # per channel, before the conv; no parameters, so counts and state dicts are unchanged)
    input_norm: str = "none"
    # backbone (a truncated MViTv2-S, "MFViT_XS")
    embed_kernel: tuple[int, ...] = (3, 7, 7)  # patch-embedding Conv3d kernel (t, h, w), odd sizes
    patch_stride: int = 4  # spatial stride of the patch embedding (stage-0 grid = img_size / patch_stride)
    widths: tuple[int, ...] = (96, 192, 384, 768)  # channels per stage
    depths: tuple[int, ...] = (1, 2, 5, 2)  # blocks per stage
    heads: tuple[int, ...] = (1, 2, 4, 8)  # attention heads per stage
    kv_strides: tuple[int, ...] = (8, 4, 2, 1)  # spatial k/v pooling stride per stage
    mlp_ratio: float = 4.0
    drop_path: float = 0.2  # backbone stochastic depth, rising linearly 0 -> drop_path over the blocks
    taps: tuple[int, ...] = (2, 3)  # stages fed to the pyramid; the last must be the last stage
    attn_impl: str = "sdpa"  # sdpa (fused kernel) | explicit (matmul-softmax-matmul, same numbers)
    # training memory: blocks whose input has at least this many tokens recompute their pooled
    # q/k/v and pooled skip in backward instead of storing them (paper size: blocks 0-3); 0 = never
    recompute_tokens: int = 4096
    # components (the ablation switches)
    issm: bool = True  # content-aware fractional split (ISSM); False -> lazy even/odd frame split
    ladm: bool = True  # LADM lifting top (update/predict/refine); False -> split-only (or GAP) top
    top: str = "auto"  # auto (ladm if ladm else split_only) | ladm | split_only | gap (mean of pyramid tokens)
    lambda_lift: float = 0.1  # weight of the lifting loss; 0 turns it off while LADM stays
    lift_reduction: str = "sum"  # sum over the batch of per-sample means (reference, bug B1) | mean
    update_first: bool = True  # LADM: update A from D, then predict D from the updated A; False -> predict first
    wave_norm: bool = True  # LADM: separate LayerNorms on both groups before lifting; False -> none
    issm_grid: str = "reference"  # reference (the authors' align_corners=False sampling, spec 6.1) | aligned (p = i)
    issm_range: float = 2.0  # ISSM receptive field: each slot moves at most +-issm_range frames
    issm_pool: int = 7  # ISSM descriptor: spatial adaptive-avg-pool size (capped at the token grid)
    issm_channels: int = 7  # ISSM descriptor: 1x1-conv output channels
    ladm_heads: int = 8  # heads of LADM's cross- and self-attention
    ladm_drop_path: float = 0.2  # DropPath of the detail refinement (whole-sample, as trained)
    head_dropout: float = 0.5  # dropout before the classifier
    # reference-parity dead parameters: LADM position tables and ISSM's time MLP are built but
    # never used by the authors' model; kept (frozen, requires_grad=False) so that sum(numel)
    # matches the reference. False drops them.
    parity_dead_params: bool = True
    # embedding + backbone keep their initial weights (requires_grad False, always in eval mode):
    # training fits pyramid, split, LADM and head on a fixed backbone (a frozen-backbone protocol;
    # meaningful with `pretrained`, a random frozen backbone being a random-features control)
    freeze_backbone: bool = False
    # embedding + backbone initialisation, never downloaded: a local torchvision K400 mvit_v2_s
    # state-dict file, a `run pretrain` weight file, or "synth-pretext" (shipped, ifdd_tiny geometry)
    pretrained: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # -- derived ----------------------------------------------------------------------------
    @property
    def top_kind(self) -> str:
        """The resolved top: ``ladm``, ``split_only`` or ``gap``."""
        if self.top == "auto":
            return "ladm" if self.ladm else "split_only"
        return self.top

    @property
    def stage_grids(self) -> tuple[int, ...]:
        """Spatial token grid side of each stage (56, 28, 14, 7 at 224 px)."""
        g = self.img_size // self.patch_stride
        return tuple(g // 2 ** s for s in range(len(self.widths)))

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """``(T', h, w)`` of the pyramid tokens the top works on."""
        g = self.stage_grids[-1]
        return (TOKEN_FRAMES, g, g)

    # -- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key, the value and the allowed values."""

        def bad(key: str, allowed: str) -> ConfigError:
            return ConfigError(f"IFDD config {key}={getattr(self, key)!r} is not supported; allowed: {allowed}")

        def choice(key: str, options: tuple) -> None:
            value = getattr(self, key)
            if value not in options:
                raise ConfigError(f"IFDD config {key}={value!r} is not supported{suggest(str(value), options)}; "
                                  f"allowed: {', '.join(map(str, options))}")

        if self.num_classes < 2:
            raise bad("num_classes", "an integer >= 2")
        if self.frames not in FRAME_MODES:
            raise ConfigError(f"IFDD config frames={self.frames!r} is not supported by the embedding; allowed: "
                              f"{', '.join(map(str, FRAME_MODES))} (16 for DFEW/FERV39k, 32 for MAFW)")
        if self.in_chans < 1:
            raise bad("in_chans", "an integer >= 1")
        n_stages = len(self.widths)
        if n_stages != 4 or len(self.depths) != 4 or len(self.heads) != 4 or len(self.kv_strides) != 4:
            raise ConfigError("IFDD config widths, depths, heads and kv_strides need 4 entries each (one per "
                              f"stage); got {len(self.widths)}, {len(self.depths)}, {len(self.heads)}, "
                              f"{len(self.kv_strides)}")
        if self.patch_stride < 1:
            raise bad("patch_stride", "an integer >= 1 (reference 4)")
        unit = 8 * self.patch_stride
        if self.img_size < unit or self.img_size % unit:
            raise ConfigError(f"IFDD config img_size={self.img_size!r} does not give integer pyramid ratios with "
                              f"patch_stride={self.patch_stride}; allowed: a multiple of {unit} (e.g. "
                              f"{2 * unit}, {7 * unit})")
        if len(self.embed_kernel) != 3 or any(k < 1 or k % 2 == 0 for k in self.embed_kernel):
            raise bad("embed_kernel", "three odd sizes (t, h, w), e.g. 3,7,7")
        for s, (w, d, h, kv) in enumerate(zip(self.widths, self.depths, self.heads, self.kv_strides)):
            if d < 1 or h < 1 or w < 1 or w % h:
                raise ConfigError(f"IFDD config stage {s}: widths={w}, depths={d}, heads={h}; allowed: "
                                  "depth >= 1 and a width divisible by the head count")
            if kv < 1 or self.stage_grids[s] % kv:
                raise ConfigError(f"IFDD config kv_strides[{s}]={kv} does not divide the stage grid "
                                  f"{self.stage_grids[s]}; allowed: a divisor of {self.stage_grids[s]}")
        if (not self.taps or list(self.taps) != sorted(set(self.taps)) or self.taps[-1] != n_stages - 1
                or self.taps[0] < 0):
            raise ConfigError(f"IFDD config taps={self.taps!r} is not supported; allowed: increasing stage "
                              f"indices ending with the last stage {n_stages - 1}, e.g. 2,3 (reference) or 3")
        choice("attn_impl", ATTN_IMPLS)
        choice("input_norm", tuple(INPUT_NORMS))
        if INPUT_NORMS[self.input_norm] is not None and self.in_chans != 3:
            raise ConfigError(f"IFDD config input_norm={self.input_norm!r} has 3-channel statistics but "
                              f"in_chans={self.in_chans}; allowed: input_norm=none or in_chans=3")
        choice("top", TOPS)
        choice("lift_reduction", LIFT_REDUCTIONS)
        choice("issm_grid", ISSM_GRIDS)
        if self.top == "ladm" and not self.ladm:
            raise ConfigError("IFDD config top='ladm' contradicts ladm=False; allowed: ladm=true, or "
                              "top=split_only / top=gap / top=auto")
        if self.top in ("split_only", "gap") and self.ladm:
            raise ConfigError(f"IFDD config top={self.top!r} replaces LADM but ladm=True; set ladm=false "
                              "as well (allowed with ladm=true: top=auto or top=ladm)")
        if self.lambda_lift < 0:
            raise bad("lambda_lift", "a number >= 0 (0 turns the lifting loss off)")
        if self.lambda_lift > 0 and self.top_kind != "ladm":
            raise ConfigError(f"IFDD config lambda_lift={self.lambda_lift} needs the LADM top, but the top is "
                              f"{self.top_kind!r}; allowed: lambda_lift=0 with ladm=false, or ladm=true")
        if self.issm and self.top_kind == "gap":
            raise ConfigError("IFDD config issm=True with top='gap': the GAP top has no split, so ISSM would "
                              "be unused; allowed: issm=false with top=gap")
        if not self.issm_range > 0:
            raise bad("issm_range", "a number > 0 (reference 2)")
        if self.issm_pool < 1 or self.issm_channels < 1:
            raise ConfigError(f"IFDD config issm_pool={self.issm_pool}, issm_channels={self.issm_channels}; "
                              "allowed: integers >= 1 (reference 7, 7)")
        if self.ladm_heads < 1 or self.widths[-1] % self.ladm_heads:
            raise ConfigError(f"IFDD config ladm_heads={self.ladm_heads} does not divide the last width "
                              f"{self.widths[-1]}; allowed: a divisor of {self.widths[-1]}")
        for key in ("drop_path", "ladm_drop_path", "head_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise bad(key, "a probability in [0, 1)")
        if self.mlp_ratio <= 0:
            raise bad("mlp_ratio", "a number > 0")
        if not isinstance(self.freeze_backbone, bool):
            raise bad("freeze_backbone", "true or false")
        if self.recompute_tokens < 0:
            raise bad("recompute_tokens", "an integer >= 0 (0 never recomputes)")


#: LaTeX of the lifting-loss symbol, for the report's row labels
LIFT_TEX = r"$\mathcal{L}_{\mathrm{lift}}$"


@dataclass(frozen=True)
class Ablation:
    """One named variant: config overrides over a preset, and how a paper table labels it."""

    overrides: Mapping[str, Any]
    label: str  # paper-style row label (plain text)
    note: str  # one line saying what the row changes
    block: int = 0  # 0: component ablation rows, 1: knob variants of the full model
    label_tex: str = ""  # the label in LaTeX when it differs from ``label``

    def switches(self) -> dict[str, Any]:
        """The components this variant runs (split ``issm`` | ``lazy`` | ``none``, LADM, L_lift),
        read off the resolved config rather than restated."""
        cfg = replace(IFDDConfig(), **dict(self.overrides))
        split = "issm" if cfg.issm else ("none" if cfg.top_kind == "gap" else "lazy")
        return {"split": split, "ladm": cfg.ladm, "lift": cfg.lambda_lift > 0}


#: named ablation variants (spec 10.2 + knobs), in the row order of the paper's ablation table
ABLATIONS: dict[str, Ablation] = {
    "gap": Ablation({"issm": False, "ladm": False, "top": "gap", "lambda_lift": 0.0}, "GAP head",
                    "mean over the pyramid tokens -> head; no split, no LADM"),
    "baseline": Ablation({"issm": False, "ladm": False, "lambda_lift": 0.0}, "Baseline (lazy split)",
                         "even/odd split, split-only top (the paper's baseline)"),
    "no_ladm": Ablation({"ladm": False, "lambda_lift": 0.0}, "+ISSM",
                        "content-aware split, split-only top (reference use_LADM=0)"),
    "no_issm_no_lift": Ablation({"issm": False, "lambda_lift": 0.0}, "+LADM",
                                "even/odd split, LADM, lambda_lift = 0"),
    "no_issm": Ablation({"issm": False}, "+LADM +L_lift",
                        "even/odd split, LADM with the lifting loss (reference use_ISSM=0)",
                        label_tex="+LADM +" + LIFT_TEX),
    "no_lift": Ablation({"lambda_lift": 0.0}, "+ISSM +LADM", "ISSM and LADM, lambda_lift = 0"),
    "full": Ablation({}, "IFDD (full)", "ISSM + LADM + lifting loss (the published model)"),
    "predict_first": Ablation({"update_first": False}, "full, predict-first",
                              "lifting order: predict before update (the classic order)", block=1),
    "no_wavenorm": Ablation({"wave_norm": False}, "full, no WaveNorm",
                            "no LayerNorm on the two groups before lifting", block=1),
    "aligned_grid": Ablation({"issm_grid": "aligned"}, "full, aligned ISSM grid",
                             "ISSM sampling grid with aligned corners, p = i (bug B8 fixed)", block=1),
    "lift_mean": Ablation({"lift_reduction": "mean"}, "full, mean L_lift",
                          "lifting loss reduced by mean instead of sum (bug B1 fixed)", block=1,
                          label_tex="full, mean " + LIFT_TEX),
}


def ablation_overrides() -> dict[str, dict[str, Any]]:
    """``{variant: config overrides}``, the form the model registry takes."""
    return {name: dict(a.overrides) for name, a in ABLATIONS.items()}
