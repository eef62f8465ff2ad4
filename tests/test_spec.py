"""One run spec for every command: the builder, and `run train` / sweep cells agreeing on it."""

from __future__ import annotations

import pytest

import test_engine_fixtures as fx
from ifdd_bench import sweep
from ifdd_bench.errors import ConfigError
from ifdd_bench.spec import EMBEDDED_DATA, EMBEDDED_TRAIN, build_run_spec


def test_native_geometry_epochs_warmup_clamp_and_frames_keep_uv_equal_t():
    spec = build_run_spec(fx.TEST_MODEL, seed=3, epochs=2, overrides=("frames=6",), runs_dir="r", results_dir="s")
    assert (spec.data.frames, spec.data.segments, spec.data.size) == (6, 6, 8)  # size: the model's native
    assert (spec.train.seed, spec.train.epochs, spec.train.warmup_epochs) == (3, 2, 0)
    assert (spec.runs_dir, spec.results_dir) == ("r", "s")
    ref = build_run_spec(fx.TEST_MODEL, dataset="dfew", data_root="/data/dfew", protocol="reference",
                         overrides=("epochs=4",))
    assert ref.train.warmup_epochs == 3  # --set epochs clamps the warm-up as --epochs does
    kept = build_run_spec(fx.TEST_MODEL, dataset="dfew", data_root="/d", protocol="reference",
                          overrides=("epochs=4", "warmup_epochs=9"))
    assert kept.train.warmup_epochs == 9  # unless the user sets it


def test_reference_protocol_carries_the_reference_data_recipe():
    ref = build_run_spec(fx.TEST_MODEL, dataset="mafw", data_root="/data/mafw", fold=2, protocol="reference")
    d = ref.data
    assert (d.sampling, d.frames, d.frame_stride, d.eval_sampling, d.train_aug) == (
        "consecutive", 32, 2, "random", "reference")
    assert ref.train.schedule == "reference" and ref.train.selection == "test_war" and ref.train.mixup
    assert d.data_root == "/data/mafw" and d.fold == 2


def test_embedded_benchmark_recipe_applies_to_run_train_too():
    spec = build_run_spec(fx.TEST_MODEL)
    assert spec.train.epochs == EMBEDDED_TRAIN["epochs"] and spec.train.warmup_epochs == 0
    assert spec.data.train_aug == EMBEDDED_DATA["train_aug"] and spec.data.cache_clips
    real = build_run_spec(fx.TEST_MODEL, dataset="synth", data_root="/some/synth")
    assert real.train.epochs == 100 and real.data.train_aug == "unified" and not real.data.cache_clips


@pytest.mark.parametrize("item, needle", [
    ("model.img_size=64", "data.size"), ("img_size=64", "data.size"), ("model.num_classes=3", "classes"),
    ("model.frames=8", "data.frames"), ("nope=1", "unknown config key"), ("lr=fast", "expects a number"),
])
def test_refusals(item, needle):
    with pytest.raises(ConfigError, match=needle):
        build_run_spec(fx.TEST_MODEL, overrides=(item,))


def test_real_dataset_needs_its_folder_and_unknown_names_are_listed():
    with pytest.raises(ConfigError, match="needs --data-root"):
        build_run_spec(fx.TEST_MODEL, dataset="dfew")
    with pytest.raises(ConfigError, match="dfeww"):
        build_run_spec(fx.TEST_MODEL, dataset="dfeww")
    with pytest.raises(ConfigError, match="variant"):
        build_run_spec(fx.TEST_MODEL, "nope")


@pytest.mark.parametrize("dataset, root, protocol", [("synth", None, "unified"), ("dfew", "/d", "reference"),
                                                     ("mafw", "/m", "reference"), ("ferv39k", "/f", "unified")])
def test_a_sweep_cell_is_the_spec_run_train_builds(dataset, root, protocol):
    """The divergence this module exists for: the same request gives the same spec on both paths."""
    plan = sweep.plan_sweep(fx.TEST_MODEL, "full,wide", dataset=dataset, data_root=root, folds="1", seeds="2",
                            epochs=3, protocol=protocol, overrides=["lr=1e-3", "model.aux_weight=0.5"],
                            runs_dir="r", results_dir="s")
    for cell in plan.cells():
        single = build_run_spec(fx.TEST_MODEL, cell.spec.variant, dataset=dataset, data_root=root, fold=1, seed=2,
                                epochs=3, protocol=protocol, overrides=["lr=1e-3", "model.aux_weight=0.5"],
                                runs_dir="r", results_dir="s")
        assert cell.spec == single and cell.run_id == single.run_id


def test_baseline_cells_take_the_shared_overrides_at_their_own_geometry():
    plan = sweep.plan_sweep("ifdd", "full", dataset="dfew", data_root="/d", folds="1", baselines="r3d_18",
                            protocol="reference", overrides=["lr=1e-3", "model.drop_path=0.2"])
    ifdd, base = plan.cells()
    assert ifdd.spec.data.size == 224 and base.spec.data.size == 112  # each model's native input
    assert ifdd.spec.model_overrides == (("drop_path", 0.2),) and base.spec.model_overrides == ()
    assert ifdd.spec.train.lr == base.spec.train.lr == 1e-3
    assert ifdd.spec.data.sampling == base.spec.data.sampling == "consecutive"


def test_different_settings_never_share_a_run_folder():
    a = build_run_spec(fx.TEST_MODEL, epochs=2)
    b = build_run_spec(fx.TEST_MODEL, epochs=3)
    c = build_run_spec(fx.TEST_MODEL, epochs=2, overrides=("lr=1e-2",))
    assert len({a.run_id, b.run_id, c.run_id}) == 3
    assert a.run_id == build_run_spec(fx.TEST_MODEL, epochs=2).run_id


def test_precision_and_compile_options_become_overrides_that_set_wins_over():
    from ifdd_bench.spec import option_overrides

    assert option_overrides() == []
    spec = build_run_spec("ifdd_tiny", overrides=option_overrides(precision="bf16", compile=True))
    assert spec.train.precision == "bf16" and spec.train.compile
    later = build_run_spec("ifdd_tiny", overrides=[*option_overrides(precision="bf16"), "precision=fp32"])
    assert later.train.precision == "fp32"
