from dataclasses import dataclass

import pytest

from ifdd_bench import registry
from ifdd_bench.errors import ConfigError


@dataclass(frozen=True)
class _Cfg:
    num_classes: int = 7
    frames: int = 16
    img_size: int = 112
    width: int = 8
    switch: bool = True  # a component switch


def _dummy(cfg):
    """A dummy for registry tests."""
    return cfg


def _dummy_entry():
    """``_test_dummy`` registered until the generator is resumed once more (the teardown)."""
    registry.list_models()  # load the library's models first: they stay registered
    registry.register_model("_test_dummy", config_cls=_Cfg, defaults={"width": 4},
                            ablations={"full": {}, "off": {"switch": False}})(_dummy)
    try:
        yield "_test_dummy"
    finally:
        registry._REGISTRY.pop("_test_dummy", None)


@pytest.fixture
def dummy():
    """``_test_dummy`` registered for one test only, so no other test (in this worker) sees it."""
    yield from _dummy_entry()


def test_resolution_order(dummy):
    cfg = registry.create_model("_test_dummy", "off", num_classes=11, overrides=["width=6"])
    assert cfg == _Cfg(num_classes=11, width=6, switch=False)
    assert registry.resolve_config("_test_dummy").width == 4
    assert registry.ablations("_test_dummy") == {"full": {}, "off": {"switch": False}}


def test_unknown_names(dummy):
    with pytest.raises(ConfigError, match="unknown model"):
        registry.create_model("_test_dumy")
    with pytest.raises(ConfigError, match="unknown variant 'of'.*did you mean: off"):
        registry.create_model("_test_dummy", "of")
    with pytest.raises(ConfigError, match="unknown _test_dummy config key 'widht'"):
        registry.create_model("_test_dummy", overrides={"widht": 3})


def test_build_from_dict(dummy):
    assert registry.build_from_config("_test_dummy", {"num_classes": 3, "frames": 8, "img_size": 32,
                                                      "width": 2, "switch": True}).num_classes == 3


def test_config_needs_shape_fields():
    @dataclass(frozen=True)
    class Bad:
        width: int = 1

    with pytest.raises(TypeError):
        registry.register_model("_bad", config_cls=Bad)(lambda c: c)
    assert "_bad" not in registry.list_models()


def test_dummy_fixture_registers_it(dummy):
    assert dummy in registry.list_models()


def test_dummy_is_gone_after_its_tests():
    """The fixture's teardown removes the entry, whichever worker or order runs this test."""
    fixture = _dummy_entry()  # what the dummy fixture yields from
    name = next(fixture)
    assert name in registry.list_models()
    next(fixture, None)  # teardown
    assert "_test_dummy" not in registry.list_models()
