"""Recipe files: shipped recipes resolve to the same runs as the command line, `config show` reads
back, the command line overrides a recipe, and bad recipes fail with file, line and key."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

import cli
from ifdd_bench import sweep
from ifdd_bench.errors import ConfigError
from ifdd_bench.recipe import load_recipe, parse_recipe, shipped_recipes, spec_yaml
from ifdd_bench.spec import build_run_spec, run_spec


def _flat(text: str) -> str:
    """CLI text without whitespace (rich wraps long lines, paths included, mid-word)."""
    return re.sub(r"\s+", "", text)


def _invoke(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def _write(tmp_path, text: str, name: str = "r.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------------------------
# shipped recipes = the equivalent command-line request


@pytest.mark.parametrize("dataset", ["dfew", "ferv39k", "mafw"])
def test_reference_recipes_are_the_reference_preset(dataset):
    recipe = run_spec(f"{dataset}-reference", data_root="/data/x")
    cli_request = build_run_spec("ifdd", dataset=dataset, data_root="/data/x", protocol="reference")
    assert recipe == cli_request and recipe.run_id == cli_request.run_id
    assert recipe.data.size == 224 and recipe.train.schedule == "reference"


@pytest.mark.parametrize("model, dataset", [("r3d_18", "mafw"), ("ifdd", "dfew"), ("former_dfer", "ferv39k")])
def test_unified_recipe_is_the_unified_protocol_at_the_models_geometry(model, dataset):
    recipe = run_spec("unified", model=model, dataset=dataset, data_root="/d")
    assert recipe == build_run_spec(model, dataset=dataset, data_root="/d", protocol="unified")


def test_synth_default_is_the_no_argument_run_and_sweep():
    assert run_spec("synth-default") == build_run_spec(sweep.DEFAULT_MODEL)
    recipe_plan = sweep.plan_sweep(recipe=load_recipe("synth-default"))
    plain = sweep.plan_sweep()
    assert recipe_plan.sweep_id == plain.sweep_id
    assert [c.spec for c in recipe_plan.cells()] == [c.spec for c in plain.cells()]


def test_synth_frozen_trains_the_frozen_model_with_its_features_memoised():
    spec = run_spec("synth-frozen", variant="no_ladm")
    default = build_run_spec(sweep.DEFAULT_MODEL, "no_ladm")
    assert spec.model == "ifdd_tiny_frozen" and spec.train.feature_cache_mb > 0
    assert (spec.train.epochs, spec.train.lr) == (40, 1e-3) and spec.data == default.data
    assert spec.recipe_hash != default.recipe_hash


def test_every_shipped_recipe_is_listed_and_found_by_name_or_file():
    assert {"dfew-reference", "ferv39k-reference", "mafw-reference", "unified", "synth-default", "synth-frozen"} <= set(
        shipped_recipes())
    by_name, by_file = load_recipe("mafw-reference"), load_recipe("mafw-reference.yaml")
    assert by_name.values == by_file.values and by_name.items == by_file.items


# --------------------------------------------------------------------------------------------
# config show


def test_config_show_reads_back_as_the_same_run(tmp_path):
    shown = _invoke("config", "show", "--config", "dfew-reference", "--data-root", str(tmp_path), "--fold", "3",
                    "-s", "lr=1e-4")
    assert shown.exit_code == 0, shown.output
    spec = run_spec("dfew-reference", data_root=str(tmp_path), fold=3, overrides=["lr=1e-4"])
    assert f"run_id: {spec.run_id}" in shown.output and f"recipe_hash: {spec.recipe_hash}" in shown.output
    saved = _write(tmp_path, shown.output, "shown.yaml")
    assert run_spec(saved) == spec
    cli_request = _invoke("config", "show", "--model", "ifdd", "--dataset", "dfew", "--protocol", "reference",
                          "--data-root", str(tmp_path), "--fold", "3", "--set", "lr=1e-4")
    assert cli_request.output == shown.output  # recipe file and command line: one spec, one run id
    assert _invoke("config", "show", "--config", saved).output == shown.output


def test_shown_recipe_pins_its_identity(tmp_path):
    text = spec_yaml(build_run_spec("ifdd_tiny", epochs=2))
    edited = _write(tmp_path, text.replace("lr: 0.001", "lr: 0.002"))
    with pytest.raises(ConfigError, match=r"line 3: the recipe pins run_id"):
        run_spec(edited)
    unpinned = _write(tmp_path, "\n".join(line for line in text.replace("lr: 0.001", "lr: 0.002").splitlines()
                                          if not line.startswith(("run_id", "recipe_hash", "train_hash"))), "u.yaml")
    assert run_spec(unpinned).train.lr == 0.002
    with pytest.raises(ConfigError, match="resolves to"):
        run_spec(_write(tmp_path, text, "pinned.yaml"), fold=2)  # a command-line option changed the run


# --------------------------------------------------------------------------------------------
# precedence


def test_command_line_options_and_set_override_the_recipe(tmp_path):
    path = _write(tmp_path, "model: ifdd_tiny\ndataset: synth\nfold: 2\nseed: 4\nepochs: 3\n"
                            "set:\n  lr: 1.0e-3\n  data:\n    eval_views: 2\n  model.drop_path: 0.1\n")
    spec = run_spec(path)
    assert (spec.data.fold, spec.train.seed, spec.train.epochs, spec.train.lr, spec.data.eval_views) == (
        2, 4, 3, 1e-3, 2)
    assert spec.model_overrides == (("drop_path", 0.1),)
    assert spec == build_run_spec("ifdd_tiny", fold=2, seed=4, epochs=3,
                                  overrides=["lr=1.0e-3", "data.eval_views=2", "model.drop_path=0.1"])
    over = run_spec(path, fold=1, seed=0, epochs=5, overrides=["lr=2e-3", "model.drop_path=0.2"])
    assert (over.data.fold, over.train.seed, over.train.epochs, over.train.lr) == (1, 0, 5, 2e-3)
    assert over.model_overrides == (("drop_path", 0.2),)


def test_later_epochs_and_frames_clamp_the_recipes_warmup_and_segments():
    spec = run_spec("mafw-reference", data_root="/d", epochs=4, overrides=["data.frames=16"])
    assert spec.train.warmup_epochs == 3  # the recipe's 10, clamped as --epochs does without a recipe
    assert (spec.data.frames, spec.data.segments) == (16, 16)  # U * V == T kept over the recipe's 32
    assert spec == build_run_spec("ifdd", dataset="mafw", data_root="/d", protocol="reference", epochs=4,
                                  overrides=["data.frames=16"])


def test_ablation_reads_the_sweep_keys_and_the_command_line_wins(tmp_path):
    path = _write(tmp_path, "model: ifdd_tiny\nvariants: [full, no_issm]\nfolds: 1-2\nseeds: [0, 1]\n"
                            "baselines: c3d_tiny\nset:\n  model.drop_path: 0.1\n  lr: 1.0e-3\n")
    plan = sweep.plan_sweep(recipe=load_recipe(path))
    assert (plan.model, plan.variants, plan.folds, plan.seeds) == ("ifdd_tiny", ("full", "no_issm"), (1, 2), (0, 1))
    baseline = [c for c in plan.cells() if c.role == "baseline"][0].spec
    assert baseline.model == "c3d_tiny" and baseline.train.lr == 1e-3 and baseline.model_overrides == ()
    assert plan.first.model_overrides == (("drop_path", 0.1),)
    narrowed = sweep.plan_sweep(variants="full", seeds="3", recipe=load_recipe(path))
    assert (narrowed.variants, narrowed.seeds, narrowed.folds) == (("full",), (3,), (1, 2))
    with pytest.raises(ConfigError, match="not read by run train"):
        run_spec(path)


# --------------------------------------------------------------------------------------------
# bad recipes: file, line, key; nothing written


@pytest.mark.parametrize("text, needles", [
    ("model: ifdd_tiny\nset:\n  lr: 1.0e-3\n  data.sizee: 64\n", ["line 4", "sizee", "did you mean: size"]),
    ("model: ifdd_tiny\nprotocl: unified\n", ["line 2", "protocl", "did you mean: protocol"]),
    ("model: ifdd_tiny\nlr: 1.0e-3\n", ["line 2", "'lr' is a --set key", "set:"]),
    ("model: ifdd_tiny\nset:\n  lr: [1\n", ["line 4", "not valid YAML"]),
    ("model: ifdd_tiny\nset:\n  train:\n    lr: fast\n", ["line 4", "expects a number"]),
    ("model: ifdd_tiny\nfold: one\n", ["line 2", "fold", "integer"]),
    ("model: ifdd_tiny\nmodel: ifdd\n", ["line 2", "twice"]),
    ("model: ifdd_tiny\nepochs: 3\nset:\n  epochs: 4\n", ["epochs is given twice"]),
    ("- model: ifdd_tiny\n", ["YAML mapping"]),
    ("", ["empty"]),
    ("model: ifdd_tiny\non: 3\n", ["line 2", "not read as text"]),
    ("model: ifdd_tiny\nset:\n  1: 3\n", ["line 3", "not read as text"]),
    ("<<: {model: ifdd_tiny}\n", ["line 1", "not read as text"]),
    ("model: ifdd_tiny\ndataset: dfw\n", ["unknown dataset", "dfew"]),
])
def test_bad_recipe_names_file_line_and_key(tmp_path, text, needles):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        run_spec(path)
    message = str(err.value)
    assert path in message
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize("text, needle, option", [
    ("model: ifdd_tiny\nvariants: [full, gapp]\n", "line 2: variants: unknown variant 'gapp'", "variants"),
    ("model: ifdd_tiny\nfolds: 9\n", "line 2: folds: synth has folds 1-5; got 9", "folds"),
    ("model: ifdd_tiny\nseed: -3\n", "line 2: seed: must be in 0..2^63-1", "seeds"),
    ("model: ifdd_tiny\nbaselines: c3dd\n", "line 2: baselines: unknown model 'c3dd'", "baselines"),
])
def test_bad_sweep_key_names_the_recipe_line_not_the_option(tmp_path, text, needle, option):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        sweep.plan_sweep(recipe=load_recipe(path))
    assert str(err.value).startswith(f"{path}, {needle}")
    # the same bad value on the command line overrides the recipe and is not blamed on it
    bad = {"variants": "gapp", "folds": "9", "seeds": "-3", "baselines": "c3dd"}[option]
    with pytest.raises(ConfigError) as err:
        sweep.plan_sweep(recipe=load_recipe(path), **{option: bad})
    assert path not in str(err.value)


def test_recipe_for_another_model_or_family_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="the recipe is for model 'ifdd', but --model ifdd_tiny"):
        run_spec("dfew-reference", model="ifdd_tiny", data_root="/d")
    ifdd_keys = _write(tmp_path, "set:\n  model.ladm_heads: 4\n")
    assert run_spec(ifdd_keys, model="ifdd_tiny").model_overrides == (("ladm_heads", 4),)
    with pytest.raises(ConfigError) as err:
        run_spec(ifdd_keys, model="r3d_18")
    message = str(err.value)
    assert "line 2" in message and "'ladm_heads'" in message and "do not apply to r3d_18" in message
    with pytest.raises(ConfigError, match="no model given"):
        run_spec(_write(tmp_path, "dataset: synth\n", "nomodel.yaml"))
    with pytest.raises(ConfigError, match="did you mean: dfew-reference"):
        load_recipe("dfew-referense")


def test_cli_refuses_a_bad_recipe_and_writes_nothing(tmp_path):
    bad = _write(tmp_path, "model: ifdd_tiny\nset:\n  warmup_epoch: 1\n")
    runs, results = tmp_path / "runs", tmp_path / "results"
    for command in (["run", "train"], ["run", "ablation", "--no-report"]):
        out = _invoke(*command, "--config", bad, "--runs-dir", str(runs), "--results-dir", str(results))
        assert out.exit_code == 2, out.output
        assert _flat(f"{bad}, line 3: unknown config key 'warmup_epoch'") in _flat(out.output)
        assert "warmup_epochs" in out.output  # the closest valid key
    assert not runs.exists() and not results.exists()
    other = _invoke("run", "ablation", "--config", "mafw-reference", "--model", "ifdd_tiny", "--data-root",
                    str(tmp_path), "--dry-run")
    assert other.exit_code == 2 and "the recipe is for model 'ifdd'" in other.output


def test_parse_recipe_keeps_lines_of_nested_set_entries():
    recipe = parse_recipe("model: ifdd\nset:\n  train:\n    lr: 1.0e-4\n  data.size: 96\n", "inline")
    assert recipe.overrides == (("train.lr=0.0001", 4), ("data.size=96", 5))
    assert recipe.where("model") == "inline, line 1"


def test_config_show_refuses_what_run_train_would_refuse():
    shown = _invoke("config", "show", "--model", "ifdd_tiny", "-s", "optimizer=adamx")
    assert shown.exit_code != 0 and "unknown optimizer 'adamx'" in shown.output and "run_id" not in shown.output
    assert _invoke("config", "show", "--model", "ifdd_tiny", "--fold", "6").exit_code != 0


def test_config_show_takes_the_training_precision_options():
    shown = _invoke("config", "show", "--model", "ifdd_tiny", "--precision", "bf16")
    assert shown.exit_code == 0, shown.output
    assert f"run_id: {run_spec(model='ifdd_tiny', overrides=['precision=bf16']).run_id}" in shown.output
