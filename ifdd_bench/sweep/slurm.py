"""Slurm through submitit: the optional extra, ``run ablation``'s cluster options and multi-GPU jobs.

``submitit`` is an optional extra (``pip install 'ifdd-bench[slurm]'``): only ``--executor
submitit`` imports it, through :func:`require_submitit`, which ends in one clear message when it is
missing.

:func:`submitit_options` checks the cluster options of ``run ablation`` (``--slurm-account``,
``--slurm-partition``, ``--slurm-mem``, ``--slurm-time``, ``--slurm-constraint``, ``--slurm-extra
KEY=VALUE``, ``--gpus-per-job``, ``--timeout-min``, ``--cluster``) and returns them under submitit's
names. A job with ``--gpus-per-job N`` (N > 1) runs N tasks, one per GPU; each task is one DDP rank:
:func:`run_job_cell` gives it torchrun's variables (:func:`rank_environment`) before the engine
starts, so :func:`ifdd_bench.engine.distributed.init_distributed` joins the group exactly as under
``torchrun`` (NCCL on CUDA, gloo on the CPU) and only rank 0 writes files and result rows.

Example::

    >>> submitit_options(executor="submitit", account="lab", mem="64g", time="1-00:00:00", gpus_per_job=4)
    {'slurm_account': 'lab', 'slurm_mem': '64G', 'timeout_min': 1440, 'gpus_per_node': 4, 'tasks_per_node': 4}
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from typing import Any, Mapping, Sequence

from ifdd_bench.config import RunSpec
from ifdd_bench.errors import ConfigError
from ifdd_bench.sweep.pool import Runner, run_cell

#: ``pip install`` target that brings submitit
SLURM_EXTRA = "ifdd-bench[slurm]"
#: submitit clusters ``--cluster`` accepts
CLUSTERS = ("slurm", "local", "debug")
#: sbatch options with their own ``run ablation`` option (``--slurm-extra`` refuses them)
DEDICATED = {"account": "--slurm-account", "partition": "--slurm-partition", "mem": "--slurm-mem",
             "time": "--slurm-time", "constraint": "--slurm-constraint", "gpus-per-node": "--gpus-per-job",
             "ntasks-per-node": "--gpus-per-job", "gres": "--gpus-per-job", "job-name": None,
             "output": None, "error": None}
#: the variables torchrun sets and :func:`ifdd_bench.engine.distributed.init_distributed` reads
RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
#: the ports a multi-rank job's rank 0 listens on (one per job id, so concurrent jobs on a node differ)
PORT_RANGE = (20000, 60000)

_TIME_FORMS = "minutes (90), MM:SS, HH:MM:SS (01:30:00), D-HH, D-HH:MM or D-HH:MM:SS (1-12:00:00)"


def require_submitit(what: str = "--executor submitit") -> Any:
    """Import and return ``submitit``; raise :class:`ConfigError` naming the extra when it is missing."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(f"{what} needs submitit, which is not installed",
                          hint=f"pip install '{SLURM_EXTRA}' (or run the sweep with --executor local)") from None
    return submitit


def parse_slurm_time(text: str) -> int:
    """Minutes of a Slurm time limit (``90``, ``01:30:00``, ``1-12:00:00`` ...), rounded up, >= 1."""
    raw = str(text).strip()
    days, dash, rest = raw.partition("-")
    if not dash:
        days, rest = "0", raw
    parts = rest.split(":")
    ok = re.fullmatch(r"\d+", days) and all(re.fullmatch(r"\d+", p) for p in parts)
    if not ok or len(parts) > 3 or (dash and not 1 <= len(parts) <= 3):
        raise ConfigError(f"--slurm-time: {text!r} is not a Slurm time limit; write {_TIME_FORMS}")
    values = [int(p) for p in parts]
    if dash:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (values + [0, 0])[:3]
    elif len(values) == 3:  # HH:MM:SS
        hours, minutes, seconds = values
    else:  # MM or MM:SS
        hours, (minutes, seconds) = 0, (values + [0])[:2]
    if seconds > 59 or ((dash or len(values) == 3) and minutes > 59):
        raise ConfigError(f"--slurm-time: {text!r} has minutes or seconds above 59; write {_TIME_FORMS}")
    total = math.ceil(((int(days) * 24 + hours) * 60 + minutes) + seconds / 60)
    if total < 1:
        raise ConfigError(f"--slurm-time: {text!r} is no limit (Slurm's 0 means none); give a limit of at least "
                          "one minute, e.g. 3-00:00:00 (D-HH:MM:SS)")
    return total


def parse_slurm_mem(text: str) -> str:
    """A Slurm ``--mem`` value: an integer with an optional unit K, M, G or T (``64G``; no unit = MB).

    ``64GB``, ``64gb`` and ``64GiB`` are written the way Slurm reads them (``64G``); ``0`` asks for
    all the memory of the node, as in Slurm.
    """
    match = re.fullmatch(r"(\d+)\s*(?:([kmgt])(?:i?b)?)?", str(text).strip(), flags=re.IGNORECASE)
    if not match:
        raise ConfigError(f"--slurm-mem: {text!r} is not a memory size; write an integer with a unit K, M, G "
                          "or T, e.g. 64G or 32000M (no unit means megabytes, 0 all of the node's memory)")
    number, unit = match.groups()
    return f"{int(number)}{(unit or '').upper()}"


def parse_slurm_extra(items: Sequence[str]) -> dict[str, str | bool]:
    """``KEY=VALUE`` items (``--slurm-extra``, repeatable) as submitit's ``slurm_additional_parameters``.

    ``KEY`` is an sbatch long option without its dashes (``qos=high``, ``mail-type=END``); a bare
    ``KEY`` is a flag (``exclusive``). Options that have their own ``run ablation`` option, malformed
    keys and repeated keys raise :class:`ConfigError`.
    """
    extra: dict[str, str | bool] = {}
    for item in items:
        key, eq, value = str(item).partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
            raise ConfigError(f"--slurm-extra: {item!r} is not KEY=VALUE with KEY an sbatch option such as "
                              "qos=high, mail-type=END or exclusive")
        if key in DEDICATED:
            own = DEDICATED[key]
            raise ConfigError(f"--slurm-extra: {key} " + (f"has its own option; use {own}" if own else
                                                          "is set by the sweep itself and cannot be changed"))
        if key in extra:
            raise ConfigError(f"--slurm-extra: {key} is given twice")
        if eq and not value.strip():
            raise ConfigError(f"--slurm-extra: {item!r} has no value; write {key}=VALUE, or {key} for a flag")
        extra[key] = value.strip() if eq else True
    return extra


def submitit_options(*, executor: str = "submitit", cluster: str | None = None, partition: str | None = None,
                     account: str | None = None, mem: str | None = None, time: str | None = None,
                     constraint: str | None = None, extra: Sequence[str] = (), gpus_per_job: int | None = None,
                     timeout_min: int | None = None) -> dict[str, Any]:
    """Check ``run ablation``'s cluster options and return those given under submitit's names.

    Any of them, or ``executor="submitit"``, needs submitit installed (:func:`require_submitit`);
    given with another executor they raise :class:`ConfigError`, as do malformed values.
    ``gpus_per_job=N`` asks for N GPUs and N tasks (one DDP rank per GPU); ``time`` (Slurm's
    format) and ``timeout_min`` are the same limit, so only one of them may be given.
    """
    given = {"--cluster": cluster, "--slurm-partition": partition, "--slurm-account": account, "--slurm-mem": mem,
             "--slurm-time": time, "--slurm-constraint": constraint, "--slurm-extra": list(extra) or None,
             "--gpus-per-job": gpus_per_job, "--timeout-min": timeout_min}
    named = [name for name, value in given.items() if value is not None]
    if executor != "submitit" and not named:
        return {}
    require_submitit(", ".join(named) if named and executor != "submitit" else "--executor submitit")
    if executor != "submitit":
        verb = "applies" if len(named) == 1 else "apply"
        raise ConfigError(f"{', '.join(named)} only {verb} to submitit jobs; add --executor submitit")
    if cluster is not None and cluster not in CLUSTERS:
        raise ConfigError(f"--cluster: unknown submitit cluster {cluster!r}; valid: {', '.join(CLUSTERS)}")
    if time is not None and timeout_min is not None:
        raise ConfigError("--slurm-time and --timeout-min are the same limit; give one of them")
    if timeout_min is not None and timeout_min < 1:
        raise ConfigError(f"--timeout-min must be >= 1, got {timeout_min}")
    if gpus_per_job is not None and gpus_per_job < 1:
        raise ConfigError(f"--gpus-per-job must be >= 1, got {gpus_per_job}")
    if gpus_per_job and gpus_per_job > 1 and cluster == "debug":
        raise ConfigError(f"--gpus-per-job {gpus_per_job} runs {gpus_per_job} processes, one rank each; "
                          "--cluster debug runs a job inside this process; use --cluster local or slurm")
    options: dict[str, Any] = {
        "cluster": cluster, "slurm_partition": partition, "slurm_account": account,
        "slurm_mem": parse_slurm_mem(mem) if mem is not None else None,
        "slurm_constraint": constraint,
        "slurm_additional_parameters": parse_slurm_extra(extra) if extra else None,
        "timeout_min": parse_slurm_time(time) if time is not None else timeout_min,
        "gpus_per_node": gpus_per_job, "tasks_per_node": gpus_per_job,
    }
    for key in ("slurm_partition", "slurm_account", "slurm_constraint"):
        if options[key] is not None and not str(options[key]).strip():
            raise ConfigError(f"--{key.replace('_', '-')} is empty")
    return {key: value for key, value in options.items() if value is not None}


def make_executor(folder: str | os.PathLike, options: Mapping[str, Any], jobs: int = 1) -> tuple[Any, int]:
    """The ``submitit.AutoExecutor`` of a sweep's jobs and the torch threads of each task.

    ``options`` are :func:`submitit_options`'s. Defaults: a 24-hour limit, job name ``ifdd-bench``
    and, per task, 4 CPUs on a cluster or, for local jobs, this machine's cores split among
    ``jobs`` jobs x their ranks.
    """
    submitit = require_submitit()
    params = dict(options)
    ex = submitit.AutoExecutor(folder=str(folder), cluster=params.pop("cluster", None))
    ranks = int(params.get("tasks_per_node") or 1)
    local = ex.cluster in ("local", "debug")
    cpus = int(params.pop("cpus_per_task", max(1, (os.cpu_count() or 1) // (jobs * ranks)) if local else 4))
    ex.update_parameters(**{"timeout_min": 24 * 60, "cpus_per_task": cpus, "name": "ifdd-bench", **params})
    return ex, cpus


def check_ranks(specs: Sequence[RunSpec], ranks: int) -> None:
    """Refuse cells that cannot train as ``ranks`` DDP ranks, before any job is submitted.

    ``batch_size`` is the global batch, split evenly over the ranks; a device pinned to one GPU
    (``device=cuda:1``) would put every rank on the same GPU.
    """
    if ranks <= 1:
        return
    for spec in specs:
        cfg = spec.train
        if cfg.batch_size % ranks:
            raise ConfigError(f"batch_size {cfg.batch_size} of {spec.run_id} is not divisible by the {ranks} ranks of "
                              f"--gpus-per-job {ranks} (batch_size is the global batch)",
                              hint=f"-s batch_size={max(ranks, cfg.batch_size // ranks * ranks)}")
        if cfg.mixup and (cfg.batch_size // ranks) % 2:
            raise ConfigError(f"mixup needs an even batch per rank; batch_size {cfg.batch_size} / {ranks} ranks "
                              f"= {cfg.batch_size // ranks}")
        if str(cfg.device).strip().lower().startswith("cuda:"):
            raise ConfigError(f"device={cfg.device} pins all {ranks} ranks of --gpus-per-job {ranks} to one GPU",
                              hint="use -s device=cuda (rank k takes the job's GPU k)")


def rank_environment(job_env: Any) -> dict[str, str]:
    """The torchrun variables of one task of a submitit job (``job_env``: ``submitit.JobEnvironment``).

    Rank 0 of the job is the master: the first host of the job on Slurm, this machine for local
    jobs; its port is drawn from :data:`PORT_RANGE` by the job id, so every task of a job agrees on
    it and two jobs sharing a node do not.
    """
    local = job_env.cluster in ("local", "debug")
    digest = int(hashlib.sha256(str(job_env.job_id).encode()).hexdigest(), 16)
    low, high = PORT_RANGE
    return {
        "RANK": str(job_env.global_rank), "WORLD_SIZE": str(job_env.num_tasks), "LOCAL_RANK": str(job_env.local_rank),
        "LOCAL_WORLD_SIZE": str(job_env.num_tasks // max(1, job_env.num_nodes)),
        "MASTER_ADDR": "127.0.0.1" if local else str(job_env.hostnames[0]),
        "MASTER_PORT": str(low + digest % (high - low)),
    }


def run_job_cell(spec: RunSpec, runner: Runner | None = None, threads: int | None = None,
                 resume: bool = True) -> dict[str, Any]:
    """A submitit job's entry point: one cell, as one DDP rank when the job has several tasks.

    Sets this task's torchrun variables (:func:`rank_environment`) when the job runs more than one
    task (a one-task job drops any it inherited from the submitting shell), then trains through
    :func:`~ifdd_bench.sweep.pool.run_cell`. Every rank returns; rank 0's value is the job's result.
    """
    import submitit

    job_env = submitit.JobEnvironment()
    if job_env.num_tasks > 1:
        os.environ.update(rank_environment(job_env))
    else:
        for key in RANK_VARIABLES:
            os.environ.pop(key, None)
    return run_cell(spec, runner, threads, resume=resume)
