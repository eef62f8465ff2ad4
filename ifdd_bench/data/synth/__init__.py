"""SynthDFER: the embedded, controlled DFER benchmark (design/synthetic.md).

Procedurally drawn face videos whose label lives in the *change* of expression parameters over
time, mixed with emotion-irrelevant identity, context and motion, written in the official DFEW
layout so that the real DFEW reader loads them.

Example::

    >>> from ifdd_bench.data.synth import preset, generate, ensure_dataset
    >>> root = ensure_dataset("smoke")                     # doctest: +SKIP  (cached after the first call)
    >>> root = generate(preset("default", seed=1), "/tmp/synth")   # doctest: +SKIP
"""

from ifdd_bench.data.synth.config import GENERATOR_VERSION, PRESETS, SynthConfig, config_hash, preset, synth_config
from ifdd_bench.data.synth.dynamics import (
    EXPRESSION_PARAMS, PROTOTYPES, ClipParams, class_counts, clip_folds, clip_labels, hue_bin, sample_clip_params,
)
from ifdd_bench.data.synth.face import render_clip
from ifdd_bench.data.synth.writer import (
    SynthJob, SynthWritten, dataset_name, default_cache_dir, ensure_dataset, generate, is_complete, render_clip_frames,
    run_synth_job, synth_job,
)
from ifdd_bench.data.synth.preview import contact_sheet
from ifdd_bench.data.synth.truth import ClipTruth, TruthTable, load_meta, load_truth

__all__ = [
    "GENERATOR_VERSION", "PRESETS", "SynthConfig", "config_hash", "preset", "synth_config",
    "EXPRESSION_PARAMS", "PROTOTYPES", "ClipParams", "class_counts", "clip_folds", "clip_labels", "hue_bin",
    "sample_clip_params", "render_clip", "dataset_name", "default_cache_dir", "ensure_dataset", "generate",
    "is_complete", "render_clip_frames", "SynthJob", "SynthWritten", "synth_job", "run_synth_job", "contact_sheet",
    "ClipTruth", "TruthTable", "load_meta", "load_truth",
]
