"""Learning-rate schedules: IFDD's exact per-epoch table (spec 11.2, bug B5) and the clean cosine."""

import math

import pytest
import torch

from ifdd_bench.config import protocol_preset
from ifdd_bench.engine.schedule import build_scheduler, lr_table, reference_lr

# spec 11.2, "Resulting values". The spec also lists e70 1.363e-5 and e90 2.302e-6 ("approx."); those
# two disagree with the spec's own formula, which gives exactly those values at e69 and e89 (an
# off-by-one in the table). The formula is what the reference code computes, so we test it there.
SPEC_TABLE = {0: 1.000e-6, 1: 1.070e-5, 5: 4.950e-5, 9: 8.830e-5, 10: 5.000e-5, 20: 4.851e-5,
              50: 2.955e-5, 99: 5.151e-7}
SPEC_SHIFTED = {69: 1.363e-5, 89: 2.302e-6}


def test_reference_table_reproduces_spec_11_2():
    table = lr_table(protocol_preset("reference"))
    assert len(table) == 100
    for epoch, value in {**SPEC_TABLE, **SPEC_SHIFTED}.items():
        assert table[epoch] == pytest.approx(value, rel=5e-4), epoch


def test_reference_warmup_overshoots_then_drops_bug_b5():
    table = lr_table(protocol_preset("reference"))
    assert max(table) == table[9] > 5e-5  # peak of the warm-up, not the run's lr
    assert table[10] == pytest.approx(5e-5)  # cosine starts at the run's peak lr
    target = 1e-6 + (1e-4 - 1e-6) * (1 + math.cos(math.pi * 9 / 99)) / 2
    assert table[3] == pytest.approx(1e-6 + 3 * (target - 1e-6) / 10)
    assert all(a >= b for a, b in zip(table[10:], table[11:]))  # monotone decay after warm-up
    assert reference_lr(5) == pytest.approx(table[5])


def test_cosine_schedule_warms_up_to_peak_then_decays_to_min():
    cfg = protocol_preset("unified", epochs=20, warmup_epochs=5, lr=3e-4, min_lr=1e-6, warmup_lr=1e-6)
    table = lr_table(cfg)
    assert table[0] == pytest.approx(1e-6)
    assert table[5] == pytest.approx(3e-4)  # warm-up ends exactly at the peak
    assert table[2] == pytest.approx(1e-6 + 2 * (3e-4 - 1e-6) / 5)
    # half-cosine over the 15 post-warm-up epochs
    assert table[12] == pytest.approx(1e-6 + 0.5 * (3e-4 - 1e-6) * (1 + math.cos(math.pi * 7 / 15)))
    assert table[-1] > 1e-6 and table[-1] < table[-2]


def test_scheduler_sets_the_epoch_lr_on_the_optimizer_and_restores_from_state():
    cfg = protocol_preset("reference")
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([param], lr=cfg.lr)
    sched = build_scheduler(opt, cfg)
    sched.step(9)
    assert opt.param_groups[0]["lr"] == pytest.approx(8.830e-5, rel=5e-4)
    state = sched.state_dict()
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=cfg.lr)
    sched2 = build_scheduler(opt2, cfg)
    sched2.load_state_dict(state)
    sched2.step(10)
    assert opt2.param_groups[0]["lr"] == pytest.approx(5e-5)


def test_unknown_schedule_lists_valid():
    from ifdd_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="cosine"):
        lr_table(protocol_preset("unified", schedule="linear"))
