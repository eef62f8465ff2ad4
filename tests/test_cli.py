"""One meaning per option across the commands of cli.py: examples in every --help, -s/--set, --out a
file and --out-dir a folder, one --device default, the run ablation help's default model."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import cli
from ifdd_bench.config import DEFAULT_DEVICE
from ifdd_bench.sweep import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def _commands(group: click.Group = cli.main, prefix: str = "ifdd-bench") -> list[tuple[str, click.Command]]:
    """Every leaf command with its full name, groups walked recursively."""
    out = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += _commands(command, f"{prefix} {name}")
        else:
            out.append((f"{prefix} {name}", command))
    return out


COMMANDS = _commands()


def _options(command: click.Command) -> dict[str, click.Option]:
    return {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}


@pytest.mark.parametrize("name, command", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_help_shows_two_or_three_examples_of_itself(name, command):
    text = CliRunner().invoke(cli.main, [*name.split()[1:], "--help"], terminal_width=200).output
    examples = text.split("Examples:", 1)[1].strip().splitlines() if "Examples:" in text else []
    examples = [line.strip() for line in examples if line.strip()]
    assert 2 <= len(examples) <= 3, text
    assert all(line.startswith(name + " ") for line in examples), examples


@pytest.mark.parametrize("name, command", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_options_mean_one_thing_in_every_command(name, command):
    options = _options(command)
    if "--set" in options:
        assert "-s" in options["--set"].opts and options["--set"].multiple
    out = options.get("--out")
    if out is not None and not out.hidden:  # --out: always a file
        assert isinstance(out.type, click.Path) and not out.type.dir_okay, name
    if "--out-dir" in options:  # --out-dir: always a folder
        assert isinstance(options["--out-dir"].type, click.Path) and not options["--out-dir"].type.file_okay
    if "--device" in options:  # None: the run's config, whose default is the same
        assert options["--device"].default in (DEFAULT_DEVICE, None), name


def test_commands_that_build_a_config_take_set():
    with_set = {name for name, command in COMMANDS if "--set" in _options(command)}
    assert {"ifdd-bench run train", "ifdd-bench run ablation", "ifdd-bench run pretrain", "ifdd-bench eval",
            "ifdd-bench config show", "ifdd-bench data synth", "ifdd-bench data preview",
            "ifdd-bench data probe"} <= with_set
    writers = {name for name, command in COMMANDS if "--results-dir" in _options(command)}
    assert {"ifdd-bench run train", "ifdd-bench run ablation", "ifdd-bench profile", "ifdd-bench eval",
            "ifdd-bench report", "ifdd-bench runs migrate"} <= writers


def test_ablation_help_names_the_default_model_from_its_definition():
    text = CliRunner().invoke(cli.main, ["run", "ablation", "--help"], terminal_width=200).output
    flat = re.sub(r"\s+", " ", text)
    assert f"the ablation of {DEFAULT_MODEL} on the embedded SynthDFER" in flat
    assert f"else {DEFAULT_MODEL};" in flat


def test_out_dir_is_the_folder_and_the_old_out_still_works(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIXTURES, results)
    runner = CliRunner()
    new = runner.invoke(cli.main, ["report", "--results-dir", str(results), "--no-plots", "--out-dir",
                                   str(tmp_path / "new")])
    assert new.exit_code == 0, new.output
    assert (tmp_path / "new" / "summary.csv").exists() and "deprecated" not in new.output
    old = runner.invoke(cli.main, ["report", "--results-dir", str(results), "--no-plots", "--out", str(tmp_path / "old")])
    assert old.exit_code == 0, old.output
    assert "deprecated" in old.output and (tmp_path / "old" / "summary.csv").exists()
    both = runner.invoke(cli.main, ["report", "--results-dir", str(results), "--out", "a", "--out-dir", "b"])
    assert both.exit_code == 2 and "--out-dir only" in both.output


def test_pretrain_set_is_checked_before_anything_is_written(tmp_path):
    out = tmp_path / "w.pt"
    res = CliRunner().invoke(cli.main, ["run", "pretrain", "--out", str(out), "-s", "batch_sise=8"])
    assert res.exit_code == 2 and "unknown pretext config key 'batch_sise'" in res.output
    assert "batch_size" in res.output and not out.exists() and not list(tmp_path.iterdir())
