import pytest

from ifdd_bench.config import (
    DataConfig, RunSpec, TrainConfig, apply_overrides, config_hash, from_dict, protocol_preset,
    split_scoped_overrides, to_dict, train_hash,
)
from ifdd_bench.errors import ConfigError


def test_overrides_are_typed():
    cfg = apply_overrides(TrainConfig(), ["epochs=3", "lr=1e-3", "mixup=false", "amp=bf16"])
    assert (cfg.epochs, cfg.lr, cfg.mixup, cfg.amp) == (3, 1e-3, False, "bf16")
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
    routed = split_scoped_overrides(["data.size=64", "epochs=2", "issm=false"],
                                    {"train": TrainConfig(), "data": DataConfig(), "model": _Model()})
    assert routed == {"train": ["epochs=2"], "data": ["size=64"], "model": ["issm=false"]}
    with pytest.raises(ConfigError, match="ambiguous"):
        split_scoped_overrides(["frames=8"], {"data": DataConfig(), "model": _Model()})
    with pytest.raises(ConfigError, match="unknown config key"):
        split_scoped_overrides(["nope=1"], {"data": DataConfig()})


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


def test_run_id():
    spec = RunSpec(model="ifdd_tiny", variant="no_issm", data=DataConfig(fold=2), train=TrainConfig(seed=1))
    assert spec.run_id == "ifdd_tiny-no_issm-synth-f2-s1-unified"


from dataclasses import dataclass  # noqa: E402


@dataclass(frozen=True)
class _Model:
    issm: bool = True
    frames: int = 16
