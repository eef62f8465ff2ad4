"""Settings shared by every test module.

The suite runs as ``pytest -n 2`` on two cores: each xdist worker is its own process, and torch's
default of one intra-op thread per core would give four busy threads on two cores, which slows
every torch test (OpenMP threads spin while they wait). Each worker therefore runs torch with one
thread. torch is never imported here: torch-free test modules (reports, config, results) collect
and run without paying for the import, and the subprocess checks that torch stays out of
``ifdd_bench.reports`` are unaffected.
"""
from __future__ import annotations

import sys

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before each test: one torch thread, if torch is loaded in this worker.

    Checked per test (a cheap call) rather than once, because code under test may change the
    count and not restore it (``latency.measure`` applies ``--threads``). A module that imports
    torch only inside a test body gets one thread from its next test on.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
