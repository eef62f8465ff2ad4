"""``ifdd-bench``: each command is its options, a call of ``ifdd_bench`` and a display call of
:mod:`ifdd_bench.console` (click lives here only, rich there). A :class:`~ifdd_bench.errors.BenchError`
is printed as one message with a non-zero exit code; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from ifdd_bench import console as show
from ifdd_bench.console import err_console
from ifdd_bench.config import DEFAULT_DEVICE, PRECISIONS
from ifdd_bench.errors import BenchError
from ifdd_bench.recipe import shipped_recipes
from ifdd_bench.spec import REQUEST_DEFAULTS
from ifdd_bench.sweep.plan import (DEFAULT_DATASET, DEFAULT_MODEL, DEFAULT_PROTOCOL, DEFAULT_REAL_MODEL,
                                   DEFAULT_VARIANTS)


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn BenchError (and Ctrl-C) into a clean message + exit code unless --debug is on."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool((ctx.find_root().obj or {}).get("debug"))
        try:
            return fn(*args, **kwargs)
        except BenchError as err:
            if debug:
                raise
            show.error(err)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]; finished work is kept, re-run the same command to resume")
            sys.exit(130)

    return wrapper


def command(group: click.Group, name: str, *, examples: Sequence[str] = (), **kwargs: Any
            ) -> Callable[[Callable[..., Any]], click.Command]:
    """``group.command`` with the BenchError handler applied and ``examples`` (two or three command
    lines, each with an optional ``# comment``) shown at the end of its ``--help``; every command
    gives them (tests/test_cli.py)."""
    epilog = "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    return lambda fn: group.command(name, epilog=epilog, **kwargs)(_handle_errors(fn))


def out_dir_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--out-dir`` (a folder; ``--out`` always names a file) as the keyword ``out_dir``; the folder's
    old spelling ``--out`` still works with a deprecation message."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, out_dir: str | None = None, old_out: str | None = None, **kwargs: Any) -> Any:
            if old_out is not None:
                if out_dir is not None:
                    raise click.UsageError("give --out-dir only (--out is its deprecated spelling here)")
                err_console.print("[yellow]deprecated:[/] --out names a file in every command now; use --out-dir "
                                  "for this folder", highlight=False)
                out_dir = old_out
            return fn(*args, out_dir=out_dir, **kwargs)

        wrapper = click.option("--out", "old_out", type=click.Path(file_okay=False), default=None, hidden=True)(wrapper)
        return click.option("--out-dir", "out_dir", type=click.Path(file_okay=False), default=None, help=help)(wrapper)

    return decorate


def set_option(help: str, metavar: str = "KEY=VALUE") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-s/--set KEY=VALUE`` (repeatable) as the keyword ``sets``, in every command that builds a config."""
    return click.option("-s", "--set", "sets", multiple=True, metavar=metavar, help=help)


def device_option(help: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--device`` with the one default of every command: ``auto`` (cuda when torch sees a GPU, else cpu)."""
    return click.option("--device", default=DEFAULT_DEVICE, show_default=True, metavar="auto|cpu|cuda|cuda:N",
                        help=help or "auto: cuda when torch sees a GPU, else cpu.")


def gpu_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--precision`` and ``--compile`` of the training commands (docs/gpu.md)."""
    fn = click.option("--compile", "compile_", is_flag=True,
                      help="torch.compile the model (falls back to eager with a message if compiling fails).")(fn)
    return click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                        help="Autocast precision (bf16: no loss scaling; fp16: GradScaler, CUDA only) [default: "
                             "the config's, fp32]; same meaning as on `profile`.")(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
@click.version_option(package_name="ifdd-bench")
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """Benchmark and ablation toolkit for dynamic facial expression recognition (IFDD)."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose or debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


#: ``--log`` of ``run train`` and ``run ablation``
log_option = click.option("--log", "loggers", multiple=True, metavar="LOGGER",
                          help="Also log to tensorboard (event files in the run folder's tb/) or wandb (offline "
                               "unless WANDB_MODE is set); repeatable or a comma list. The CSV files are always "
                               "written.")

run = click.Group("run", help="Train models and run ablation sweeps.")
data = click.Group("data", help="Generate SynthDFER, validate real datasets, benchmark loading.")
viz = click.Group("viz", help="Figures from trained checkpoints.")
runs = click.Group("runs", help="Maintain run folders.")
config_group = click.Group("config", help="Recipes: print the resolved run spec.")
for _group in (run, data, viz, runs, config_group):
    main.add_command(_group)


@command(main, "models", examples=[
    "ifdd-bench models                     # table of models, families, variants",
    "ifdd-bench models --json > models.json   # the same as JSON: model, family, variants, description"])
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_cmd(as_json: bool) -> None:
    """List registered models and their ablation variants."""
    from ifdd_bench.registry import describe_models
    show.models(describe_models(), as_json)


@command(data, "check", examples=[
    "ifdd-bench data check --dataset dfew --data-root /data/DFEW",
    "ifdd-bench data check --dataset mafw --data-root /data/MAFW --fold 1 --images decode",
    "ifdd-bench data check --dataset ferv39k --data-root /data/FERV39k --json > check.json"])
@click.option("--dataset", type=click.Choice(["dfew", "ferv39k", "mafw", "synth"]), required=True)
@click.option("--data-root", type=click.Path(path_type=Path), required=True, help="Dataset folder as shipped.")
@click.option("--fold", "folds", type=int, multiple=True, help="Fold(s) to check (default: all).")
@click.option("--frame-source", default="default", show_default=True,
              help="dfew: 16f|raw|video; ferv39k: facecrop|video; mafw: frames|faces|video.")
@click.option("--label-order", default="official", show_default=True, help="mafw: official|dferclip; ferv39k: official|dfew.")
@click.option("--clip-len", default=16, show_default=True, type=int, help="Frames a clip needs before padding.")
@click.option("--images", type=click.Choice(["header", "decode", "none"]), default="header", show_default=True,
              help="Frame scan: file markers (fast), full decode (slow), or none.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def data_check_cmd(dataset, data_root, folds, frame_source, label_order, clip_len, images, as_json) -> None:
    """Validate a dataset folder: counts vs the official numbers, missing/short/unreadable clips.

    Exits 1 when something would break training (missing files or folders, malformed lines, unknown
    labels, zero-frame or unreadable clips); warnings (short clips, a few bad frames, counts that
    differ from the official ones) are handled by documented rules and do not fail the check.
    """
    from ifdd_bench.data.check import check_dataset
    with show.DataBar(err_console) as bar:
        report = check_dataset(dataset, data_root, folds=list(folds) or None, frame_source=frame_source,
                               label_order=label_order, clip_len=clip_len, images=images, progress=bar)
    show.check_report(report, as_json)
    if not report.ok:
        sys.exit(1)


@command(data, "bench", examples=[
    "ifdd-bench data bench                               # 42 clips, 0/1/2 workers, three decoders",
    "ifdd-bench data bench --workers 0,4 --decoders pil --model none"])
@click.option("--clips", default=42, show_default=True, type=int, help="Clips per generated dataset.")
@click.option("--workers", "workers_csv", default="0,1,2", show_default=True, help="DataLoader worker counts.")
@click.option("--decoders", default="pil,torchvision,auto", show_default=True, help="Decoders to compare.")
@click.option("--repeats", default=1, show_default=True, type=int, help="Passes per cell (median reported).")
@click.option("--model", default="ifdd_tiny", show_default=True,
              help="Also time this model's training step on --device and compare ('none' to skip).")
@device_option()
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Autocast of the model's step [default: fp32 on cpu, bf16 on cuda].")
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON.")
def data_bench_cmd(clips: int, workers_csv: str, decoders: str, repeats: int, model: str, device: str,
                   precision: str | None, as_json: bool) -> None:
    """Loader throughput (clips/s) for 16x112x112 and 16x224x224 clips on generated JPEG folders,
    against what the model's training step consumes on --device (decoders: pil,torchvision,auto,cuda)."""
    from ifdd_bench.data.loader_bench import parse_bench_options
    from ifdd_bench.engine.overhead import data_bench
    workers, names = parse_bench_options(workers_csv, decoders, clips=clips, repeats=repeats)
    with show.DataBar(err_console) as bar:
        result = data_bench(clips=clips, workers=workers, decoders=names, repeats=repeats, model=model,
                            device=device, precision=precision, progress=bar)
    show.data_bench(result, as_json)


@command(data, "import", examples=[
    "ifdd-bench data import --dataset dfew --data-root /data/DFEW --fold 1 --train set_1_train.txt --test set_1_test.txt",
    "ifdd-bench data import --dataset mafw --data-root /data/MAFW --train train.txt --test test.txt --label-order dfew"])
@click.option("--dataset", type=click.Choice(["dfew", "ferv39k", "mafw"]), required=True)
@click.option("--data-root", type=click.Path(path_type=Path), required=True,
              help="Root to write ifdd_splits/ into (then train with this --data-root).")
@click.option("--fold", default=1, show_default=True, type=int)
@click.option("--train", "train_list", type=click.Path(path_type=Path), required=True, help="Training list file.")
@click.option("--test", "test_list", type=click.Path(path_type=Path), required=True, help="Test list file.")
@click.option("--label-order", default=None, help="Order of integer labels: dfew | official | alphabetical.")
@click.option("--base", type=click.Path(path_type=Path), default=None,
              help="Folder relative clip paths start from (default: the list file's folder).")
def data_import_cmd(dataset, data_root, fold, train_list, test_list, label_order, base) -> None:
    """Import Former-DFER / DFER-CLIP / MAE-DFER style lists ('<dir> [num_frames] <label>')."""
    from ifdd_bench.data.lists import import_lists
    with show.DataBar(err_console) as bar:
        summary = import_lists(dataset, data_root, fold, {"train": train_list, "test": test_list},
                               label_order=label_order, base=base, progress=bar)
    show.imported(summary, dataset, data_root, fold)


@command(data, "crop", examples=[
    "ifdd-bench data crop MAFW/data/clips --out-dir MAFW/data/faces      # then data.frame_source=faces",
    "ifdd-bench data crop DFEW/Clip/original --out-dir DFEW/Clip/clip_224x224 --workers 8",
    "ifdd-bench data crop my_videos/ --out-dir my_faces/ --margin 0.25"])
@click.argument("input_dir", type=click.Path(path_type=Path))
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write <clip>/1.jpg..N.jpg face crops into (resumes when re-run).")
@click.option("--size", default=224, show_default=True, type=int, help="Crop side in pixels (the datasets': 224).")
@click.option("--margin", default=0.2, show_default=True, type=float,
              help="Added on each side of the detected face box, as a fraction of its side.")
@click.option("--min-face", default=0.08, show_default=True, type=float,
              help="Smallest face looked for, as a fraction of the frame's shorter side.")
@click.option("--detect-every", default=2, show_default=True, type=int,
              help="Run the detector on every k-th frame (the smoothed track fills the others).")
@click.option("--workers", default=1, show_default=True, type=int, help="Clips cropped at once (threads).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_crop_cmd(input_dir, out_dir, size, margin, min_face, detect_every, workers, as_json) -> None:
    """Turn a folder of raw videos (or raw frame folders) into face-crop frame folders.

    Each clip's largest face is detected, followed, smoothed and cropped to a square; clip
    INPUT_DIR/a/b.mp4 becomes OUT_DIR/a/b/1.jpg..N.jpg, the layout the readers take. Clips without
    a face are skipped and listed (also in OUT_DIR/face_crop.json); the exit code is 1 only when no
    clip could be cropped. Needs the [face] extra (OpenCV).
    """
    from ifdd_bench.data.facecrop import crop_folder
    from ifdd_bench.data.faces import CropConfig
    cfg = CropConfig(size=size, margin=margin, min_face=min_face, detect_every=detect_every)
    with show.DataBar(err_console) as bar:
        summary = crop_folder(input_dir, out_dir, cfg, workers=workers, progress=bar)
    show.crop_summary(summary, as_json)
    if not summary.ok:
        sys.exit(1)


@command(data, "synth", examples=[
    "ifdd-bench data synth                                      # the default preset into the cache runs read",
    "ifdd-bench data synth --preset smoke --out-dir /tmp/synth-smoke",
    "ifdd-bench data synth -s clips=300 -s frames=32 --out-dir /data/synth-32f --force"])
@click.option("--preset", "preset_name", default="default", show_default=True, help="smoke | default | hard")
@out_dir_option("Folder to write (DFEW layout). Default: the cache folder that runs use.")
@set_option("Knob override, repeatable: clips=300, frames=16, size=64, seed=1, context_bias=0.8 ...", "KNOB=VALUE")
@click.option("--workers", type=int, default=None, help="Worker processes (default: all usable CPUs).")
@click.option("--force", is_flag=True, help="Replace --out-dir if it already exists.")
def data_synth_cmd(preset_name, out_dir, sets, workers, force) -> None:
    """Generate the SynthDFER benchmark in the official DFEW layout."""
    from ifdd_bench.data.synth import run_synth_job, synth_config, synth_job
    job = synth_job(synth_config(preset_name, sets), Path(out_dir) if out_dir else None, workers=workers, force=force)
    if job.ready:
        return show.synth_ready(job)
    with show.synth_bar(job.cfg) as progress:
        written = run_synth_job(job, progress=progress)
    show.synth_written(written)


@command(data, "preview", examples=[
    "ifdd-bench data preview --out sheet.png",
    "ifdd-bench data preview --preset hard --per-class 3 --cell 96 --out hard.png"])
@click.option("--preset", "preset_name", default="default", show_default=True, help="smoke | default | hard")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("synth_preview.png"),
              show_default=True, help="PNG file to write.")
@click.option("--per-class", default=2, show_default=True, type=int, help="Clips shown per class (1..20).")
@click.option("--cell", default=None, type=int, help="Displayed frame size in pixels (default: max(size, 64)).")
@set_option("Knob override, repeatable.", "KNOB=VALUE")
def data_preview_cmd(preset_name: str, out: Path, per_class: int, cell: int | None, sets: tuple[str, ...]) -> None:
    """Contact sheet of SynthDFER clips: one clip per row, frames left to right, apex framed in red."""
    from ifdd_bench.data.synth import contact_sheet, synth_config
    cfg = synth_config(preset_name, sets)
    show.preview_written(contact_sheet(cfg, out, per_class=per_class, cell=cell), cfg, per_class)


@command(data, "probe", examples=[
    "ifdd-bench data probe                          # where the label lives in the default preset",
    "ifdd-bench data probe --preset hard -s context_bias=0.8"])
@click.option("--preset", "preset_name", default="default", show_default=True, help="smoke | default | hard")
@click.option("--clips", default=2100, show_default=True, type=int, help="Clips sampled (parameters only, no pixels).")
@set_option("Knob override, repeatable.", "KNOB=VALUE")
def data_probe_cmd(preset_name: str, clips: int, sets: tuple[str, ...]) -> None:
    """Where the label lives: a linear classifier on views of the expression parameters (seconds)."""
    from ifdd_bench.data.synth import synth_config
    from ifdd_bench.data.synth.probe import parameter_probe
    cfg = synth_config(preset_name, sets, clips=clips)
    show.probe_table(cfg, parameter_probe(cfg))


def _default(key: str) -> str:
    return f"[default: {REQUEST_DEFAULTS[key]}]"


def config_option(command_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--config FILE.yaml|NAME``: a recipe file or a shipped recipe's name (docs/recipes.md)."""
    return click.option("--config", "config", default=None, metavar="FILE.yaml|NAME",
                        help=f"Recipe: a YAML file or a shipped recipe ({', '.join(shipped_recipes())}); the "
                             f"options and -s/--set of {command_name} override it.")


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options that build one run's spec: ``run train`` and ``config show`` take the same ones."""
    options = [
        config_option("the command"),
        click.option("--model", default=None, help="Registered model (see `ifdd-bench models`); required without a "
                                                   "recipe that names one."),
        click.option("--variant", default=None, help="Ablation variant of the model [default: full]."),
        click.option("--dataset", default=None, help=f"synth | dfew | ferv39k | mafw  {_default('dataset')}"),
        click.option("--data-root", default=None, help="Dataset folder as shipped (synth: embedded SynthDFER when absent)."),
        click.option("--fold", default=None, type=int, help=f"Official fold (1..5; FERV39k: 1).  {_default('fold')}"),
        click.option("--seed", default=None, type=int, help=_default("seed")),
        click.option("--protocol", default=None, help=f"reference | unified  {_default('protocol')}"),
        set_option("Config override, repeatable: epochs=3, lr=1e-4, data.size=64, model.drop_path=0.1 ..."),
        click.option("--epochs", default=None, type=int, help="Shortcut for --set epochs=N (warm-up clamped to N-1)."),
        click.option("--device", default=None, metavar="auto|cpu|cuda|cuda:N",
                     help=f"[default: the recipe's, else {DEFAULT_DEVICE}: cuda when torch sees a GPU, else cpu]"),
        click.option("--runs-dir", default=None, help=_default("runs_dir")),
        click.option("--results-dir", default=None, help=_default("results_dir")),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@command(run, "train", examples=[
    "ifdd-bench run train --model ifdd_tiny_pretext --variant no_issm        # embedded SynthDFER, CPU",
    "ifdd-bench run train --config dfew-reference --data-root /data/DFEW --fold 2 -s device=cuda",
    "ifdd-bench run train --config my_recipe.yaml -s lr=1e-4 --epochs 30"])
@run_options
@click.option("--restart", is_flag=True, help="Train from scratch even if the run folder holds a checkpoint.")
@log_option
@click.option("--json", "as_json", is_flag=True, help="Print the result row as JSON instead of the summary.")
@gpu_options
def train_cmd(config, model, variant, dataset, data_root, fold, seed, protocol, sets, epochs, device, runs_dir,
              results_dir, restart, loggers, as_json, precision, compile_) -> None:
    """Train one model on one dataset fold under the shared protocol (resumes when re-run).

    Runs alone or under `torchrun --nproc_per_node N` (DistributedDataParallel; only rank 0
    writes). Writes runs/<run_id>/ and appends a row to results/runs.csv. `ifdd-bench config show`
    with the same options prints the run it trains.
    """
    from ifdd_bench.engine.run import train_run
    from ifdd_bench.spec import option_overrides, run_spec
    spec = run_spec(config, model=model, variant=variant, dataset=dataset, data_root=data_root, fold=fold, seed=seed,
                    protocol=protocol, epochs=epochs, device=device, runs_dir=runs_dir, results_dir=results_dir,
                    overrides=[*option_overrides(precision=precision, compile=compile_), *sets], loggers=loggers)
    with show.TrainProgress(as_json) as progress:
        row = train_run(spec, progress=progress, resume=not restart)
    show.train_result(row, progress, as_json)


@command(config_group, "show", examples=[
    "ifdd-bench config show --config dfew-reference --data-root /data/DFEW     # the paper's DFEW run",
    "ifdd-bench config show --model ifdd_tiny -s lr=1e-3 > my_recipe.yaml     # a recipe to edit and cite",
    "ifdd-bench config show --config my_recipe.yaml --fold 3"])
@run_options
@gpu_options
def config_show_cmd(config, model, variant, dataset, data_root, fold, seed, protocol, sets, epochs, device, runs_dir,
                    results_dir, precision, compile_) -> None:
    """Print the fully resolved run spec that `run train` with the same options trains, as YAML.

    It names the run id and its recipe hash (the run's training identity), and reads back as a
    recipe: `--config` of the printed file trains the same run. A spec that `run train` would refuse
    (an unknown optimiser, a fold out of range, ...) is refused here with the same message.
    """
    from ifdd_bench.engine.run import validate_spec
    from ifdd_bench.recipe import spec_yaml
    from ifdd_bench.spec import option_overrides, run_spec
    sets = [*option_overrides(precision=precision, compile=compile_), *sets]
    spec = run_spec(config, model=model, variant=variant, dataset=dataset, data_root=data_root, fold=fold, seed=seed,
                    protocol=protocol, epochs=epochs, overrides=sets, device=device, runs_dir=runs_dir,
                    results_dir=results_dir)
    validate_spec(spec)
    show.spec_yaml(spec_yaml(spec))


@command(run, "pretrain", examples=[
    "ifdd-bench run pretrain --out /tmp/my_pretext.pt --threads 2",
    "ifdd-bench run pretrain --out pretext_ifdd.pt --model ifdd --clips 6000 -s batch_size=8"])
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Weight file to write (refused if it exists); a resumable <out>.state.pt sits next to it meanwhile.")
@click.option("--model", default="ifdd_tiny", show_default=True, help="IFDD model whose backbone is pre-trained.")
@click.option("--clips", default=3000, show_default=True, type=int, help="Pretext training clips.")
@click.option("--val-clips", default=200, show_default=True, type=int, help="Held-out pretext clips (R^2 per epoch).")
@click.option("--epochs", default=10, show_default=True, type=int)
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Peak AdamW learning rate (one-cycle).")
@click.option("--seed", default=0, show_default=True, type=int, help="Initialisation and shuffling seed.")
@click.option("--threads", default=None, type=int, help="Torch threads (default: torch's).")
@set_option("Pretext config override, repeatable: objective=expression-motion, mask_ratio=0.75, batch_size=32, render_size=112 ...")
def pretrain_cmd(out, model, clips, val_clips, epochs, lr, seed, threads, sets) -> None:
    """Pre-train an IFDD embedding + backbone on emotion-free SynthDFER clips.

    The stand-in for the paper's Kinetics-400 initialisation on a CPU: SynthDFER clips of a disjoint
    seed with no emotion at all, whose faces move anyway; by default the backbone reconstructs
    hidden parts of each clip from the rest (masked-video modelling). Load the result with
    `--set model.pretrained=PATH`.
    """
    from ifdd_bench.pretext.train import pretext_config, pretrain
    cfg = pretext_config(threads=threads, overrides=sets, model=model, clips=clips, val_clips=val_clips,
                         epochs=epochs, lr=lr, seed=seed)
    with show.PretrainProgress(out) as progress:
        meta = pretrain(cfg, out, progress=progress, threads=threads)
    show.pretrained(out, meta)


@command(main, "predict", examples=[
    "ifdd-bench predict --checkpoint runs/RUN_ID clips/00017 talk.mp4",
    "ifdd-bench predict --checkpoint runs/RUN_ID already_cropped.mp4 --no-crop --json"])
@click.option("--checkpoint", required=True, metavar="RUN_DIR_OR_FILE",
              help="A run folder (uses best.pt) or a checkpoint file.")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--top", default=3, show_default=True, type=int, help="Classes listed per clip in the table.")
@device_option()
@click.option("--crop/--no-crop", default=None,
              help="Face-crop the clips first [default: video files yes, frame folders no]; needs the [face] extra.")
@click.option("--json", "as_json", is_flag=True, help="Print all class probabilities as JSON.")
def predict_cmd(checkpoint, paths, top, device, crop, as_json):
    """Classify frame folders or video files with a trained checkpoint.

    A video file is a raw clip: its largest face is found, followed and cropped like the datasets'
    224x224 face crops before it is classified, and a video without a face ends in an error. Frame
    folders are taken as face crops already. --no-crop classifies whole frames; --crop crops folders too.

    \b
    ifdd-bench predict --checkpoint runs/RUN_ID phone_clip.mp4
    ifdd-bench predict --checkpoint runs/RUN_ID --no-crop already_cropped.mp4 DFEW/Clip/clip_224x224_16f/00001
    """
    from ifdd_bench.engine.predict import predict
    show.predictions(predict(paths, checkpoint=checkpoint, device=device, crop=crop), top, as_json)


@command(main, "eval", examples=[
    "ifdd-bench eval runs/ifdd-full-dfew-f1-s0-reference-1a2b3c4d --fold 2",
    "ifdd-bench eval runs/RUN_ID --perturb shuffle,reverse,single,freeze-apex,half-rate",
    "ifdd-bench eval runs/RUN_ID --dataset mafw --data-root /data/MAFW -s data.eval_sampling=center"])
@click.argument("source", metavar="RUN_DIR_OR_CHECKPOINT", type=click.Path())
@click.option("--dataset", default=None, help="synth | dfew | ferv39k | mafw [default: the run's own].")
@click.option("--data-root", default=None, help="Dataset folder as shipped [default: the run's own].")
@click.option("--fold", default=None, type=int, help="Fold to evaluate [default: the run's own].")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="val: the unified protocol's hold-out of the train fold, drawn as in training.")
@click.option("--views", default=None, type=int, help="Temporal views averaged per clip [default: the run's].")
@set_option("Data config override, repeatable (data.eval_sampling=center, data.frames=16 ...).", "data.KEY=VALUE")
@device_option()
@click.option("--perturb", default=None, metavar="LIST",
              help="Temporal-reliance probes, a comma list of shuffle, reverse, single, freeze-apex (SynthDFER "
                   "only), half-rate, or 'all': also score the clips perturbed, with ΔUAR/ΔWAR to the clean input.")
@click.option("--results-dir", default="results", show_default=True,
              help="Folder whose evals.csv gets the row (and probes.csv the probe rows).")
@click.option("--json", "as_json", is_flag=True, help="Print the result row as JSON.")
def eval_cmd(source, dataset, data_root, fold, split, views, sets, device, perturb, results_dir, as_json):
    """Evaluate a trained run (or checkpoint) on a dataset split.

    Writes predictions.csv and metrics.json to <run>/evals/<eval_id>/ and one row (kind=eval) to
    <results-dir>/evals.csv; with --perturb also one row per perturbation to <results-dir>/probes.csv
    (docs/probes.md).
    """
    from ifdd_bench.engine.evaluate import evaluate_run
    result = evaluate_run(source, dataset=dataset, data_root=data_root, fold=fold, split=split, views=views,
                          overrides=sets, device=device, perturb=perturb, results_dir=results_dir)
    show.evaluation(result, results_dir, as_json)


@command(main, "export", examples=[
    "ifdd-bench export runs/RUN_ID",
    "ifdd-bench export runs/RUN_ID/best.pt --format onnx --out-dir deploy/"])
@click.argument("source", metavar="RUN_DIR_OR_CHECKPOINT", type=click.Path())
@click.option("--format", "formats", default="pt2,onnx", show_default=True,
              help="Comma list of pt2 (torch.export) and onnx (needs the export extra).")
@click.option("--out-dir", default=None, type=click.Path(file_okay=False),
              help="Folder for model.pt2 / model.onnx / export.json  [default: <run folder>/export]")
@click.option("--batch", default=2, show_default=True, type=int,
              help="Batch of the check input (a batch one larger is checked too; the batch dimension is dynamic).")
@click.option("--atol", default=1e-4, show_default=True, type=float,
              help="Largest accepted absolute logit difference between the export and the eager model.")
@click.option("--json", "as_json", is_flag=True, help="Print export.json instead of the summary.")
def export_cmd(source, formats, out_dir, batch, atol, as_json):
    """Export a trained run to torch.export (.pt2) and ONNX, each checked against the eager model.

    Exits 1 when an export's logits differ from the eager model's by more than --atol.
    """
    from ifdd_bench.engine.export import export_run
    with show.exporting() as progress:
        result = export_run(source, formats, out_dir, batch=batch, atol=atol, progress=progress)
    show.exported(result, as_json)
    if not result["ok"]:
        sys.exit(1)


@command(runs, "migrate", examples=[
    "ifdd-bench runs migrate --dry-run",
    "ifdd-bench runs migrate --runs-dir runs --results-dir results"])
@click.option("--runs-dir", default="runs", show_default=True)
@click.option("--results-dir", default="results", show_default=True)
@click.option("--dry-run", is_flag=True, help="List the renames without writing.")
def runs_migrate_cmd(runs_dir, results_dir, dry_run):
    """Rename run folders of the older identity scheme (no recipe hash) and their result rows."""
    from ifdd_bench.engine.migrate import migrate_runs
    show.migration(migrate_runs(runs_dir, results_dir, dry_run=dry_run), dry_run)


@command(run, "ablation", examples=[
    "ifdd-bench run ablation --dry-run                   # the default grid, nothing trained",
    "ifdd-bench run ablation --config dfew-reference --data-root /data/DFEW -s device=cuda",
    "ifdd-bench run ablation --variants full,no_issm --seeds 0-2 --baselines former_dfer_tiny,c3d_tiny"])
@config_option("run ablation")
@click.option("--model", default=None,
              help=f"Model to ablate [default: the recipe's, else {DEFAULT_MODEL}; {DEFAULT_REAL_MODEL} with --data-root].")
@click.option("--variants", default=None,
              help=f"Comma list of variants or 'all' [default: {','.join(DEFAULT_VARIANTS)}].")
@click.option("--baselines", default=None,
              help="Comma list of baseline models (name or name:variant) under the same protocol, or 'none' "
                   "[default: static_control for the default ablation on SynthDFER, none otherwise].")
@click.option("--dataset", default=None, help=f"synth | dfew | ferv39k | mafw  [default: {DEFAULT_DATASET}]")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset folder as shipped (default: the embedded SynthDFER benchmark).")
@click.option("--folds", default=None, help="Folds, e.g. 1-5 or 1,3 [default: 1 on SynthDFER, all official folds otherwise].")
@click.option("--seeds", default=None, help="Seeds, e.g. 0,1,2 or 0-2 [default: 0].")
@click.option("--epochs", type=int, default=None, help="Epochs per run (overrides the protocol's).")
@click.option("--protocol", default=None, help=f"unified | reference  [default: {DEFAULT_PROTOCOL}]")
@set_option("Config override for every cell: lr=1e-3, data.eval_views=2, model.drop_path=0.1 (repeatable).")
@click.option("--executor", type=click.Choice(["local", "submitit"]), default="local", show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Cells run at once (local processes or submitit jobs) [default: 2 for the embedded "
                   "SynthDFER sweep on a machine with 2+ cores, else 1].")
@click.option("--cluster", default=None, help="submitit cluster: slurm | local | debug [default: auto-detect].")
@click.option("--slurm-partition", "--partition", "partition", default=None, help="Slurm partition.")
@click.option("--slurm-account", "account", default=None, help="Slurm account to charge.")
@click.option("--slurm-mem", "mem", default=None, help="Memory per node: 64G, 32000M (Slurm --mem; no unit = MB).")
@click.option("--slurm-time", "time_limit", default=None,
              help="Time limit per job: minutes, HH:MM:SS or D-HH:MM:SS [default: 1-00:00:00].")
@click.option("--slurm-constraint", "constraint", default=None, help="Slurm node features, e.g. a100 or 'a100|h100'.")
@click.option("--slurm-extra", "extra", multiple=True, metavar="KEY=VALUE",
              help="Any other sbatch option: qos=high, mail-type=END, exclusive (repeatable).")
@click.option("--gpus-per-job", type=click.IntRange(min=1), default=None,
              help="GPUs per job; N > 1 trains each cell as N DDP ranks, one per GPU.")
@click.option("--timeout-min", type=click.IntRange(min=1), default=None,
              help="Time limit per job in minutes (as --slurm-time) [default: 1440].")
@click.option("--runs-dir", type=click.Path(file_okay=False), default=None, help=_default("runs_dir"))
@click.option("--results-dir", type=click.Path(file_okay=False), default=None, help=_default("results_dir"))
@click.option("--restart", is_flag=True, help="Train unfinished cells from scratch instead of resuming their last.pt.")
@click.option("--dry-run", is_flag=True, help="Print the grid and which cells would run, then stop.")
@click.option("--no-report", is_flag=True, help="Do not render tables and plots into the results folder at the end.")
@click.option("--probes/--no-probes", default=True, show_default=True,
              help="Probe every trained cell's temporal reliance (eval --perturb) into probes.csv.")
@click.option("--perturb", default=None, metavar="LIST",
              help="Perturbations of the probes [default: shuffle,reverse,single,freeze-apex,half-rate; "
                   "freeze-apex on SynthDFER only].")
@log_option
@gpu_options
def ablation_cmd(config, model, variants, baselines, dataset, data_root, folds, seeds, epochs, protocol, sets,
                 executor, jobs, cluster, partition, account, mem, time_limit, constraint, extra, gpus_per_job,
                 timeout_min, runs_dir, results_dir, restart, dry_run, no_report, probes, perturb,
                 loggers, precision, compile_) -> None:
    """Run an ablation grid (variants x folds x seeds), skipping cells already in runs.csv.

    With no arguments: the ablation of {model} on the embedded SynthDFER benchmark on the CPU, with
    the static control beside it, ending with the summary table and the rendered report in the
    results folder. Each trained cell is then probed on its test split with its frames perturbed
    (docs/probes.md); cells whose probes.csv rows exist are not probed again.
    --executor submitit and the cluster options need pip install 'ifdd-bench[slurm]'.
    """
    from ifdd_bench import sweep
    from ifdd_bench.recipe import load_recipe
    options = sweep.submitit_options(executor=executor, cluster=cluster, partition=partition, account=account,
                                     mem=mem, time=time_limit, constraint=constraint, extra=extra,
                                     gpus_per_job=gpus_per_job, timeout_min=timeout_min)
    from ifdd_bench.spec import option_overrides
    sets = [*option_overrides(precision=precision, compile=compile_), *sets]
    plan = sweep.plan_sweep(model, variants, baselines=baselines, dataset=dataset, data_root=data_root,
                            folds=folds, seeds=seeds, epochs=epochs, protocol=protocol, overrides=sets,
                            runs_dir=runs_dir, results_dir=results_dir,
                            recipe=load_recipe(config) if config is not None else None, probes=probes,
                            perturb=perturb, loggers=loggers)
    status = sweep.sweep_status(plan, executor=executor, jobs=jobs)
    show.sweep_status(status, executor, dry_run=dry_run)
    if dry_run:
        return
    with show.sweep_bar(len(status.todo)) as progress:
        outcome = sweep.run_sweep(plan, executor=executor, jobs=status.jobs, submitit_options=options,
                                  resume=not restart, progress=progress)
    from ifdd_bench.reports.render import render_sweep_report  # pandas: not needed for --dry-run
    command_line = "ifdd-bench " + " ".join(sys.argv[1:]) if len(sys.argv) > 1 else "ifdd-bench run ablation"
    show.sweep_report(render_sweep_report(plan, sweep.summarize(plan), command=command_line, render=not no_report))
    show.sweep_outcome(outcome)
    if outcome.failed:
        sys.exit(3)


ablation_cmd.help = (ablation_cmd.help or "").format(model=DEFAULT_MODEL)  # the one definition of the default


def _csv_list(value: str, option: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise click.BadParameter(f"{option} needs at least one value")
    return items


@command(main, "profile", examples=[
    "ifdd-bench profile ifdd --mode train --batch 2 --device cpu  # train step vs the authors' 10.3 s / 4.5 GB",
    "ifdd-bench profile --all --complexity-only --reported",
    "ifdd-bench profile ifdd_tiny former_dfer --device cuda --precision fp32,bf16 --results-dir results_gpu"])
@click.argument("models", nargs=-1)
@click.option("--all", "all_models", is_flag=True, help="Profile every registered model (variant full).")
@click.option("--frames", type=int, default=None, help="Frames T (default: each model's native T).")
@click.option("--size", type=int, default=None, help="Frame size H=W (default: each model's native size).")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch of the latency / train-step rows.")
@device_option()
@click.option("--precision", default="fp32", show_default=True, help="Comma list of fp32, bf16, fp16 (autocast).")
@click.option("--mode", default="infer", show_default=True, help="Comma list of infer (eval forward), train (fwd+bwd+AdamW).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model before warm-up.")
@click.option("--by-module", is_flag=True, help="Print params and fvcore MACs per module.")
@click.option("--depth", type=int, default=2, show_default=True, help="Module depth of --by-module.")
@click.option("--throughput/--no-throughput", default=None,
              help="Sweep batch sizes until out of memory (default: on for cuda, off for cpu).")
@click.option("--max-batch", type=int, default=None, help="Cap of the throughput sweep (default 8 on cpu, 4096 on cuda).")
@click.option("--iters", type=int, default=None, help="Timed repetitions (default 20 cpu / 100 cuda).")
@click.option("--warmup", type=int, default=None, help="Untimed warm-up repetitions (default 3 cpu / 10 cuda).")
@click.option("--max-seconds", type=float, default=None, help="Stop timing a row after this long (>= 5 repetitions).")
@click.option("--threads", type=int, default=None, help="torch.set_num_threads for the timed rows.")
@click.option("--cudnn-benchmark", is_flag=True, help="Set torch.backends.cudnn.benchmark while timing.")
@click.option("--complexity-only", is_flag=True, help="Only params / MACs / FLOPs (no timing).")
@click.option("--in-process", is_flag=True,
              help="Time in this process (cpu peak RSS then includes earlier work; default: a fresh process per row).")
@click.option("--reported", is_flag=True, help="Show our params/MACs beside the literature's reported numbers.")
@click.option("--results-dir", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Folder whose profile.csv gets the rows (the one `report --results-dir` reads).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="CSV file the rows are appended to instead  [default: RESULTS_DIR/profile.csv]")
@click.option("--no-write", is_flag=True, help="Print only; append nothing.")
def profile_cmd(models, all_models, frames, size, batch, device, precision, mode, compile_, by_module, depth,
                throughput, max_batch, iters, warmup, max_seconds, threads, cudnn_benchmark, complexity_only,
                in_process, reported, results_dir, out, no_write) -> None:
    """Parameters, MACs, FLOPs, latency, throughput, train-step time and peak memory.

    MODEL[:VARIANT]... are registry names (see `ifdd-bench models`). Every row states its input
    shape, counters (name, version, unit), device, versions and precision, and is appended to
    RESULTS_DIR/profile.csv (or --out).
    """
    from ifdd_bench.engine import profile as prof
    out = prof.profile_csv(results_dir, out)
    if reported and not models and not all_models:
        with show.counting() as progress:
            return show.reported(prof.reported_rows(prof.load_measured(out), progress=progress))
    request = prof.ProfileRequest(
        models=models, all_models=all_models, frames=frames, size=size, batch=batch, device=device,
        precisions=_csv_list(precision, "--precision"), modes=_csv_list(mode, "--mode"), compile=compile_,
        timing=not complexity_only, throughput=throughput, max_batch=max_batch,
        warmup=warmup, iterations=iters, max_seconds=max_seconds, threads=threads,
        cudnn_benchmark=cudnn_benchmark, isolate=False if in_process else None,
        by_module=by_module, module_depth=depth)
    with show.profiling() as progress:
        rows = prof.profile(request, progress=progress)
    show.profile_rows(rows)
    if not no_write:
        show.appended(prof.write_rows(out, rows), out)
    if reported:
        with show.counting() as progress:
            show.reported(prof.reported_rows(rows, progress=progress))


@command(main, "report", examples=[
    "ifdd-bench report                                          # results/*.csv -> results/report/",
    "ifdd-bench report --results-dir results_gpu --runs-dir runs_gpu --no-plots",
    "ifdd-bench report --filter dataset=dfew --reference full --out-dir /tmp/dfew-report"])
@click.option("--results-dir", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Folder with runs.csv (and per_class.csv, profile.csv).")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Run folders with history.csv / predictions.csv (curves, confusion matrices).")
@out_dir_option("Output folder  [default: RESULTS_DIR/report]")
@click.option("--format", "formats", default="latex,md", show_default=True, help="Comma list of latex, md.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Also write PNG + PDF figures.")
@click.option("--allow-mixed", is_flag=True, help="Render rows of different protocols / train hashes together.")
@click.option("--reference", default="full", show_default=True,
              help="Variant (or baseline model) the paired statistics compare against.")
@click.option("--filter", "filters", multiple=True, metavar="COLUMN=VALUE",
              help="Keep only runs.csv rows with this value (repeatable), e.g. train_hash=1a2b3c4d.")
@click.option("--literature", "literature_path", default=None, type=click.Path(dir_okay=False),
              help="Reported-numbers CSV  [default: ifdd_bench/reports/literature.csv]")
@click.option("--readme", "readme_path", default=None, type=click.Path(dir_okay=False),
              help="Also rewrite this README's generated blocks (headline results, model table); loads torch.")
def report_cmd(results_dir, runs_dir, out_dir, formats, plots, allow_mixed, reference, filters, literature_path,
               readme_path) -> None:
    """Render paper-ready tables (LaTeX, Markdown) and plots from the results CSVs (no torch)."""
    from ifdd_bench.reports.render import render_report
    command_line = "ifdd-bench report " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "ifdd-bench report"
    if readme_path:
        from ifdd_bench.reports.readme import check_readme
        check_readme(readme_path, plots=plots)  # before the render: a wrong --readme writes nothing
    with show.rendering() as progress:
        result = render_report(results_dir, runs_dir, out_dir, formats=formats, plots=plots,
                               allow_mixed=allow_mixed, reference=reference, filters=filters,
                               literature_path=literature_path, command=command_line.strip(), progress=progress)
    show.report(result)
    if readme_path:
        from ifdd_bench.readme_models import update_readme
        show.readme_updated(readme_path, update_readme(readme_path, result, result.out_dir))


@command(viz, "splits", examples=[
    "ifdd-bench viz splits --checkpoint runs/RUN_ID --out-dir my-splits     # RUN_ID: a trained IFDD run",
    "ifdd-bench viz splits --capture my-splits/capture.npz --clips 00001,00002 --out-dir again"])
@click.option("--checkpoint", type=click.Path(exists=False), default=None,
              help="IFDD run folder (uses best.pt, else last.pt) or checkpoint file.")
@click.option("--capture", "capture_file", type=click.Path(dir_okay=False), default=None,
              help="Re-render from an existing capture.npz instead of running a checkpoint (no torch).")
@click.option("--clips", default=None, help="Comma list of clip ids to draw [default: the first 4 with an expression].")
@click.option("--split", default="test", show_default=True, help="train | val | test: the clips to capture.")
@click.option("--limit", type=int, default=None, help="Capture only the first N clips of the split.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset folder, when it moved since training (default: the one in the checkpoint).")
@out_dir_option("Output folder [default: <run folder>/splits].")
@device_option()
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--threshold", type=float, default=0.5, show_default=True,
              help="Expression tokens: token intensity >= threshold x the clip's peak (SynthDFER).")
def viz_splits_cmd(checkpoint, capture_file, clips, split, limit, data_root, out_dir, device, batch_size,
                   threshold) -> None:
    """Figure of ISSM's split per clip and, on SynthDFER, how often the detail group lands on
    the expression frames compared with the lazy even/odd split."""
    from ifdd_bench.reports import slots
    names = slots.check_split_options(checkpoint, capture_file, clips, threshold, batch_size)
    if capture_file is None:
        from ifdd_bench.engine.capture import capture_target, capture_to
        checkpoint_file, out = capture_target(checkpoint, out_dir)
        with show.capture_bar() as progress:
            capture_file = capture_to(checkpoint_file, out, split=split, clips=names, limit=limit,
                                      data_root=data_root, batch_size=batch_size, device=device, progress=progress)
    show.split_figures(slots.render_split_figures(capture_file, out_dir, clips=names, threshold=threshold))


if __name__ == "__main__":  # pragma: no cover
    main()
