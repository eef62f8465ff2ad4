"""``ifdd-bench``: each command is its options, a call of ``ifdd_bench`` and a display call of
:mod:`ifdd_bench.console` (click lives here only, rich there). A :class:`~ifdd_bench.errors.BenchError`
is printed as one message with a non-zero exit code; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ifdd_bench import console as show
from ifdd_bench.console import err_console
from ifdd_bench.errors import BenchError


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
            err_console.print(f"[bold red]error:[/] {err}", highlight=False)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]; finished work is kept, re-run the same command to resume")
            sys.exit(130)

    return wrapper


def command(group: click.Group, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """``group.command`` with the BenchError handler applied."""
    return lambda fn: group.command(*args, **kwargs)(_handle_errors(fn))


def gpu_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--precision`` and ``--compile`` of the training commands (docs/gpu.md)."""
    fn = click.option("--compile", "compile_", is_flag=True,
                      help="torch.compile the model (falls back to eager with a message if compiling fails).")(fn)
    return click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
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


run = click.Group("run", help="Train models and run ablation sweeps.")
data = click.Group("data", help="Generate SynthDFER, validate real datasets, benchmark loading.")
viz = click.Group("viz", help="Figures from trained checkpoints.")
runs = click.Group("runs", help="Maintain run folders.")
for _group in (run, data, viz, runs):
    main.add_command(_group)


@command(main, "models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_cmd(as_json: bool) -> None:
    """List registered models and their ablation variants."""
    from ifdd_bench.registry import describe_models
    show.models(describe_models(), as_json)


@command(data, "check")
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


@command(data, "bench")
@click.option("--clips", default=42, show_default=True, type=int, help="Clips per generated dataset.")
@click.option("--workers", "workers_csv", default="0,1,2", show_default=True, help="DataLoader worker counts.")
@click.option("--decoders", default="pil,torchvision,auto", show_default=True, help="Decoders to compare.")
@click.option("--repeats", default=1, show_default=True, type=int, help="Passes per cell (median reported).")
@click.option("--model", default="ifdd_tiny", show_default=True,
              help="Also time this model's training step on --device and compare ('none' to skip).")
@click.option("--device", default="cpu", show_default=True, help="Device of the model's training step: cpu or cuda.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
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


@command(data, "import")
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


@command(data, "synth")
@click.option("--preset", "preset_name", default="default", show_default=True, help="smoke | default | hard")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder to write (DFEW layout). Default: the cache folder that runs use.")
@click.option("--set", "sets", multiple=True, metavar="KNOB=VALUE",
              help="Knob override, repeatable: clips=300, frames=16, size=64, seed=1, context_bias=0.8 ...")
@click.option("--workers", type=int, default=None, help="Worker processes (default: all usable CPUs).")
@click.option("--force", is_flag=True, help="Replace --out if it already exists.")
def data_synth_cmd(preset_name, out, sets, workers, force) -> None:
    """Generate the SynthDFER benchmark in the official DFEW layout."""
    from ifdd_bench.data.synth import run_synth_job, synth_config, synth_job
    job = synth_job(synth_config(preset_name, sets), out, workers=workers, force=force)
    if job.ready:
        return show.synth_ready(job)
    with show.synth_bar(job.cfg) as progress:
        written = run_synth_job(job, progress=progress)
    show.synth_written(written)


@command(data, "preview")
@click.option("--preset", "preset_name", default="default", show_default=True, help="smoke | default | hard")
@click.option("--out", type=click.Path(path_type=Path), default=Path("synth_preview.png"), show_default=True,
              help="PNG file to write.")
@click.option("--per-class", default=2, show_default=True, type=int, help="Clips shown per class (1..20).")
@click.option("--cell", default=None, type=int, help="Displayed frame size in pixels (default: max(size, 64)).")
@click.option("--set", "sets", multiple=True, metavar="KNOB=VALUE", help="Knob override, repeatable.")
def data_preview_cmd(preset_name: str, out: Path, per_class: int, cell: int | None, sets: tuple[str, ...]) -> None:
    """Contact sheet of SynthDFER clips: one clip per row, frames left to right, apex framed in red."""
    from ifdd_bench.data.synth import contact_sheet, synth_config
    cfg = synth_config(preset_name, sets)
    show.preview_written(contact_sheet(cfg, out, per_class=per_class, cell=cell), cfg, per_class)


@command(data, "probe")
@click.option("--preset", "preset_name", default="default", show_default=True, help="smoke | default | hard")
@click.option("--clips", default=2100, show_default=True, type=int, help="Clips sampled (parameters only, no pixels).")
@click.option("--set", "sets", multiple=True, metavar="KNOB=VALUE", help="Knob override, repeatable.")
def data_probe_cmd(preset_name: str, clips: int, sets: tuple[str, ...]) -> None:
    """Where the label lives: a linear classifier on views of the expression parameters (seconds)."""
    from ifdd_bench.data.synth import synth_config
    from ifdd_bench.data.synth.probe import parameter_probe
    cfg = synth_config(preset_name, sets, clips=clips)
    show.probe_table(cfg, parameter_probe(cfg))


@command(run, "train")
@click.option("--model", required=True, help="Registered model (see `ifdd-bench models`).")
@click.option("--variant", default=None, help="Ablation variant of the model (default: full).")
@click.option("--dataset", default="synth", show_default=True, help="synth | dfew | ferv39k | mafw")
@click.option("--data-root", default=None, help="Dataset folder as shipped (synth: embedded SynthDFER when absent).")
@click.option("--fold", default=1, show_default=True, type=int, help="Official fold (1..5; FERV39k: 1).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--protocol", default="unified", show_default=True, help="reference | unified")
@click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Config override, repeatable: epochs=3, lr=1e-4, data.size=64, model.drop_path=0.1 ...")
@click.option("--epochs", default=None, type=int, help="Shortcut for --set epochs=N (warm-up clamped to N-1).")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N (default: the config's, auto).")
@click.option("--runs-dir", default="runs", show_default=True)
@click.option("--results-dir", default="results", show_default=True)
@click.option("--restart", is_flag=True, help="Train from scratch even if the run folder holds a checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print the result row as JSON instead of the summary.")
@gpu_options
def train_cmd(model, variant, dataset, data_root, fold, seed, protocol, sets, epochs, device, runs_dir,
              results_dir, restart, as_json, precision, compile_) -> None:
    """Train one model on one dataset fold under the shared protocol (resumes when re-run).

    Runs alone or under `torchrun --nproc_per_node N` (DistributedDataParallel; only rank 0
    writes). Writes runs/<run_id>/ and appends a row to results/runs.csv.
    """
    from ifdd_bench.engine.run import train_run
    from ifdd_bench.spec import build_run_spec, option_overrides
    spec = build_run_spec(model, variant, dataset=dataset, data_root=data_root, fold=fold, seed=seed,
                          protocol=protocol, epochs=epochs, device=device, runs_dir=runs_dir, results_dir=results_dir,
                          overrides=[*option_overrides(precision=precision, compile=compile_), *sets])
    with show.TrainProgress(as_json) as progress:
        row = train_run(spec, progress=progress, resume=not restart)
    show.train_result(row, progress, as_json)


@command(run, "pretrain")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Weight file to write (refused if it exists); a resumable <out>.state.pt sits next to it meanwhile.")
@click.option("--model", default="ifdd_tiny", show_default=True, help="IFDD model whose backbone is pre-trained.")
@click.option("--clips", default=3000, show_default=True, type=int, help="Pretext training clips.")
@click.option("--val-clips", default=200, show_default=True, type=int, help="Held-out pretext clips (R^2 per epoch).")
@click.option("--epochs", default=10, show_default=True, type=int)
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Peak AdamW learning rate (one-cycle).")
@click.option("--seed", default=0, show_default=True, type=int, help="Initialisation and shuffling seed.")
@click.option("--threads", default=None, type=int, help="Torch threads (default: torch's).")
def pretrain_cmd(out, model, clips, val_clips, epochs, lr, seed, threads) -> None:
    """Pre-train an IFDD embedding + backbone on the emotion-free facial-motion pretext.

    The stand-in for the paper's Kinetics-400 initialisation on a CPU: SynthDFER clips of a disjoint
    seed with no emotion at all, whose faces move anyway; the backbone regresses which face part
    moved when. Load the result with `--set model.pretrained=PATH`.
    """
    from ifdd_bench.pretext.train import pretext_config, pretrain
    cfg = pretext_config(threads=threads, model=model, clips=clips, val_clips=val_clips, epochs=epochs, lr=lr,
                         seed=seed)
    with show.PretrainProgress(out) as progress:
        meta = pretrain(cfg, out, progress=progress, threads=threads)
    show.pretrained(out, meta)


@command(main, "predict")
@click.option("--checkpoint", required=True, metavar="RUN_DIR_OR_FILE",
              help="A run folder (uses best.pt) or a checkpoint file.")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--top", default=3, show_default=True, type=int, help="Classes listed per clip in the table.")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print all class probabilities as JSON.")
def predict_cmd(checkpoint, paths, top, device, as_json):
    """Classify frame folders or video files with a trained checkpoint."""
    from ifdd_bench.engine.predict import predict
    show.predictions(predict(paths, checkpoint=checkpoint, device=device), top, as_json)


@command(main, "eval")
@click.argument("source", metavar="RUN_DIR_OR_CHECKPOINT", type=click.Path())
@click.option("--dataset", default=None, help="synth | dfew | ferv39k | mafw [default: the run's own].")
@click.option("--data-root", default=None, help="Dataset folder as shipped [default: the run's own].")
@click.option("--fold", default=None, type=int, help="Fold to evaluate [default: the run's own].")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="val: the unified protocol's hold-out of the train fold, drawn as in training.")
@click.option("--views", default=None, type=int, help="Temporal views averaged per clip [default: the run's].")
@click.option("-s", "--set", "sets", multiple=True, metavar="data.KEY=VALUE",
              help="Data config override, repeatable (data.eval_sampling=center, data.frames=16 ...).")
@click.option("--device", default="auto", show_default=True)
@click.option("--results-dir", default="results", show_default=True, help="Folder whose evals.csv gets the row.")
@click.option("--json", "as_json", is_flag=True, help="Print the result row as JSON.")
def eval_cmd(source, dataset, data_root, fold, split, views, sets, device, results_dir, as_json):
    """Evaluate a trained run (or checkpoint) on a dataset split.

    Writes predictions.csv and metrics.json to <run>/evals/<eval_id>/ and one row (kind=eval) to
    <results-dir>/evals.csv. Examples:

    \b
      ifdd-bench eval runs/ifdd-full-dfew-f1-s0-reference-1a2b3c4d --fold 2
      ifdd-bench eval runs/<run_id> --views 2 --split test
    """
    from ifdd_bench.engine.evaluate import evaluate_run
    result = evaluate_run(source, dataset=dataset, data_root=data_root, fold=fold, split=split, views=views,
                          overrides=sets, device=device, results_dir=results_dir)
    show.evaluation(result, results_dir, as_json)


@command(runs, "migrate")
@click.option("--runs-dir", default="runs", show_default=True)
@click.option("--results-dir", default="results", show_default=True)
@click.option("--dry-run", is_flag=True, help="List the renames without writing.")
def runs_migrate_cmd(runs_dir, results_dir, dry_run):
    """Rename run folders of the older identity scheme (no recipe hash) and their result rows.

    \b
      ifdd-bench runs migrate --dry-run
      ifdd-bench runs migrate --runs-dir runs --results-dir results
    """
    from ifdd_bench.engine.migrate import migrate_runs
    show.migration(migrate_runs(runs_dir, results_dir, dry_run=dry_run), dry_run)


@command(run, "ablation")
@click.option("--model", default=None, help="Model to ablate [default: ifdd_tiny_pretext; ifdd with --data-root].")
@click.option("--variants", default=None,
              help="Comma list of variants or 'all' [default: baseline,no_ladm,no_issm_no_lift,no_issm,no_lift,full,gap].")
@click.option("--baselines", default=None, help="Comma list of baseline models (name or name:variant) under the same protocol.")
@click.option("--dataset", default="synth", show_default=True, help="synth | dfew | ferv39k | mafw.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset folder as shipped (default: the embedded SynthDFER benchmark).")
@click.option("--folds", default=None, help="Folds, e.g. 1-5 or 1,3 [default: 1 on SynthDFER, all official folds otherwise].")
@click.option("--seeds", default=None, help="Seeds, e.g. 0,1,2 or 0-2 [default: 0].")
@click.option("--epochs", type=int, default=None, help="Epochs per run (overrides the protocol's).")
@click.option("--protocol", default="unified", show_default=True, help="unified | reference.")
@click.option("-s", "--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Config override for every cell: lr=1e-3, data.eval_views=2, model.drop_path=0.1 (repeatable).")
@click.option("--executor", type=click.Choice(["local", "submitit"]), default="local", show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Cells run at once (local processes or submitit jobs) [default: 2 for the embedded "
                   "SynthDFER sweep on a machine with 2+ cores, else 1].")
@click.option("--cluster", default=None, help="submitit cluster: slurm | local | debug [default: auto-detect].")
@click.option("--partition", default=None, help="Slurm partition (submitit).")
@click.option("--gpus-per-job", type=int, default=None, help="GPUs per submitit job.")
@click.option("--timeout-min", type=int, default=None, help="Time limit per submitit job in minutes [default: 1440].")
@click.option("--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True)
@click.option("--results-dir", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--restart", is_flag=True, help="Train unfinished cells from scratch instead of resuming their last.pt.")
@click.option("--dry-run", is_flag=True, help="Print the grid and which cells would run, then stop.")
@click.option("--no-report", is_flag=True, help="Do not render tables and plots into the results folder at the end.")
@gpu_options
def ablation_cmd(model, variants, baselines, dataset, data_root, folds, seeds, epochs, protocol, overrides,
                 executor, jobs, cluster, partition, gpus_per_job, timeout_min, runs_dir, results_dir, restart,
                 dry_run, no_report, precision, compile_) -> None:
    """Run an ablation grid (variants x folds x seeds), skipping cells already in runs.csv.

    With no arguments: IFDD-tiny's ablation on the embedded SynthDFER benchmark on the CPU,
    ending with the summary table and the rendered report in the results folder.
    """
    from ifdd_bench import sweep
    from ifdd_bench.spec import option_overrides
    overrides = [*option_overrides(precision=precision, compile=compile_), *overrides]
    plan = sweep.plan_sweep(model, variants, baselines=baselines, dataset=dataset, data_root=data_root,
                            folds=folds, seeds=seeds, epochs=epochs, protocol=protocol, overrides=overrides,
                            runs_dir=runs_dir, results_dir=results_dir)
    status = sweep.sweep_status(plan, executor=executor, jobs=jobs)
    show.sweep_status(status, executor, dry_run=dry_run)
    if dry_run:
        return
    options = sweep.submitit_options(cluster=cluster, partition=partition, gpus_per_job=gpus_per_job,
                                     timeout_min=timeout_min)
    with show.sweep_bar(len(status.todo)) as progress:
        outcome = sweep.run_sweep(plan, executor=executor, jobs=status.jobs, submitit_options=options,
                                  resume=not restart, progress=progress)
    from ifdd_bench.reports.render import render_sweep_report  # pandas: not needed for --dry-run
    command_line = "ifdd-bench " + " ".join(sys.argv[1:]) if len(sys.argv) > 1 else "ifdd-bench run ablation"
    show.sweep_report(render_sweep_report(plan, sweep.summarize(plan), command=command_line, render=not no_report))
    show.sweep_outcome(outcome)
    if outcome.failed:
        sys.exit(3)


def _csv_list(value: str, option: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise click.BadParameter(f"{option} needs at least one value")
    return items


@command(main, "profile")
@click.argument("models", nargs=-1)
@click.option("--all", "all_models", is_flag=True, help="Profile every registered model (variant full).")
@click.option("--frames", type=int, default=None, help="Frames T (default: each model's native T).")
@click.option("--size", type=int, default=None, help="Frame size H=W (default: each model's native size).")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch of the latency / train-step rows.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (cuda:N).")
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
@click.option("--out", type=click.Path(dir_okay=False), default="results/profile.csv", show_default=True,
              help="CSV the rows are appended to.")
@click.option("--no-write", is_flag=True, help="Print only; append nothing to --out.")
def profile_cmd(models, all_models, frames, size, batch, device, precision, mode, compile_, by_module, depth,
                throughput, max_batch, iters, warmup, max_seconds, threads, cudnn_benchmark, complexity_only,
                in_process, reported, out, no_write) -> None:
    """Parameters, MACs, FLOPs, latency, throughput, train-step time and peak memory.

    MODEL[:VARIANT]... are registry names (see `ifdd-bench models`). Every row states its input
    shape, counters (name, version, unit), device, versions and precision, and is appended to --out.

    \b
    ifdd-bench profile ifdd --mode train --batch 2     # train step vs the authors' 10.3 s / 4.5 GB
    ifdd-bench profile --all --complexity-only --reported
    ifdd-bench profile ifdd_tiny former_dfer --device cuda --precision fp32,bf16
    """
    from ifdd_bench.engine import profile as prof
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


@command(main, "report")
@click.option("--results-dir", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Folder with runs.csv (and per_class.csv, profile.csv).")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Run folders with history.csv / predictions.csv (curves, confusion matrices).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Output folder  [default: RESULTS_DIR/report]")
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


@command(viz, "splits")
@click.option("--checkpoint", type=click.Path(exists=False), default=None,
              help="IFDD run folder (uses best.pt, else last.pt) or checkpoint file.")
@click.option("--capture", "capture_file", type=click.Path(dir_okay=False), default=None,
              help="Re-render from an existing capture.npz instead of running a checkpoint (no torch).")
@click.option("--clips", default=None, help="Comma list of clip ids to draw [default: the first 4 with an expression].")
@click.option("--split", default="test", show_default=True, help="train | val | test: the clips to capture.")
@click.option("--limit", type=int, default=None, help="Capture only the first N clips of the split.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset folder, when it moved since training (default: the one in the checkpoint).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: <run folder>/splits].")
@click.option("--device", default="cpu", show_default=True)
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
