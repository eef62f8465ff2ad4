"""How many CPUs this process may use (no torch): the one count behind loader workers, SynthDFER
generation workers, the sweep pool's threads and the default number of sweep jobs.

``os.cpu_count()`` counts the machine's CPUs; under ``taskset``, a Slurm allocation or a container
with a CPU set the process may run on fewer, and planning threads for all of them oversubscribes
the ones it has.
"""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one, else ``os.cpu_count()``; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)
