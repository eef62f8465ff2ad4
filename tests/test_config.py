from dataclasses import replace

import pytest

from ifdd_bench.config import (
    DataConfig, RunSpec, TrainConfig, apply_overrides, config_hash, from_dict, protocol_preset,
    route_overrides, to_dict, train_hash,
)
from ifdd_bench.errors import ConfigError


def test_overrides_are_typed():
    cfg = apply_overrides(TrainConfig(), ["epochs=3", "lr=1e-3", "mixup=false", "precision=bf16"])
    assert (cfg.epochs, cfg.lr, cfg.mixup, cfg.precision) == (3, 1e-3, False, "bf16")
    data = apply_overrides(DataConfig(), ["data_root=none", "size=64"])
    assert data.data_root is None and data.size == 64


@pytest.mark.parametrize("item, needle", [
    ("epoch=3", "did you mean: epochs"),
    ("epochs=three", "expects an integer"),
    ("mixup=maybe", "expects a boolean"),
    ("epochs", "key=value"),
])
def test_bad_overrides_name_the_key(item, needle):
    with pytest.raises(ConfigError, match=needle):
        apply_overrides(TrainConfig(), [item])


def test_scoped_routing():
    routed = route_overrides(["data.size=64", "epochs=2", "issm=false"],
                                    {"train": TrainConfig(), "data": DataConfig(), "model": _Model()})
    assert routed == {"train": ["epochs=2"], "data": ["size=64"], "model": ["issm=false"]}
    with pytest.raises(ConfigError, match="ambiguous"):
        route_overrides(["frames=8"], {"data": DataConfig(), "model": _Model()})
    with pytest.raises(ConfigError, match="unknown config key"):
        route_overrides(["nope=1"], {"data": DataConfig()})


def test_protocol_presets_and_hash():
    ref, uni = protocol_preset("reference"), protocol_preset("unified")
    assert ref.lr == 5e-5 and ref.selection == "test_war" and ref.schedule == "reference"
    assert uni.selection == "val_uar"
    assert train_hash(ref) != train_hash(uni)
    assert train_hash(ref) == train_hash(apply_overrides(ref, ["seed=7", "device=cpu"]))
    assert config_hash(ref) != config_hash(apply_overrides(ref, ["seed=7"]))
    with pytest.raises(ConfigError, match="unknown protocol"):
        protocol_preset("referense")


def test_round_trip_dict():
    cfg = apply_overrides(DataConfig(), ["fold=3"])
    assert from_dict(DataConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError):
        from_dict(DataConfig, {"bogus": 1})


def test_run_id_is_readable_part_plus_recipe_hash():
    spec = RunSpec(model="ifdd_tiny", variant="no_issm", data=DataConfig(fold=2), train=TrainConfig(seed=1))
    head, digest = spec.run_id.rsplit("-", 1)
    assert head == "ifdd_tiny-no_issm-synth-f2-s1-unified"
    assert len(digest) == 8 and int(digest, 16) >= 0 and digest == spec.recipe_hash


def test_recipe_hash_covers_what_changes_numbers_and_nothing_else():
    from dataclasses import replace

    spec = RunSpec(model="ifdd_tiny")
    same = [replace(spec, data=replace(spec.data, fold=3)), replace(spec, train=replace(spec.train, seed=4)),
            replace(spec, data=replace(spec.data, workers=4, cache_clips=True)),
            replace(spec, train=replace(spec.train, device="cpu", log_every=1)),
            replace(spec, runs_dir="elsewhere", results_dir="there")]
    assert {s.recipe_hash for s in same} == {spec.recipe_hash}
    other = [replace(spec, train=replace(spec.train, epochs=2)), replace(spec, train=replace(spec.train, lr=1e-3)),
             replace(spec, data=replace(spec.data, size=32)), replace(spec, data=replace(spec.data, eval_views=2)),
             replace(spec, model_overrides=(("drop_path", 0.1),))]
    hashes = [s.recipe_hash for s in other]
    assert spec.recipe_hash not in hashes and len(set(hashes)) == len(hashes)


from dataclasses import dataclass  # noqa: E402


@dataclass(frozen=True)
class _Model:
    issm: bool = True
    frames: int = 16


def test_the_earlier_amp_key_still_sets_the_precision():
    assert apply_overrides(TrainConfig(), ["amp=bf16"]).precision == "bf16"
    assert apply_overrides(TrainConfig(precision="bf16"), ["amp=none"]).precision == "fp32"
    assert route_overrides(["amp=fp16"], {"train": TrainConfig(), "data": DataConfig()})["train"] == ["amp=fp16"]
    assert from_dict(TrainConfig, {"amp": "none", "epochs": 2}).precision == "fp32"  # a stored config.json
    assert from_dict(TrainConfig, {"amp": "fp16"}).precision == "fp16"


def test_renamed_and_added_keys_leave_run_ids_and_hashes_as_they_were():
    """Hashes are computed on the names runs were recorded with: ``precision`` hashes as ``amp``
    (fp32 as none) and ``decode_device`` only when it is not cpu, so the committed run folders and
    result rows keep their ids."""
    from ifdd_bench.config import HASH_EXCLUDE
    from ifdd_bench.hashing import json_hash
    from ifdd_bench.spec import build_run_spec

    # the embedded recipe as it was when the literals were computed (lr 3e-4, no weight decay)
    spec = build_run_spec("ifdd_tiny", epochs=2, overrides=["lr=3e-4", "weight_decay=0.0"])
    assert spec.run_id == "ifdd_tiny-full-synth-f1-s0-unified-e480b16f"  # computed before the rename
    assert train_hash(spec.train) == "30d788d0"
    bf16 = replace(spec.train, precision="bf16")
    legacy = {k: v for k, v in to_dict(bf16).items() if k not in HASH_EXCLUDE and k != "precision"}
    assert train_hash(bf16) == json_hash({**legacy, "amp": "bf16"})
    assert replace(spec, data=replace(spec.data, clip_cache="/tmp/x", workers=3)).run_id == spec.run_id
    assert replace(spec, data=replace(spec.data, decode_device="cuda")).run_id != spec.run_id
