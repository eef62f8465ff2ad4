"""Optional packages: which extra of ``pip install 'ifdd-bench[EXTRA]'`` brings each, and the one check
that a feature's package is installed before the feature starts work (no torch, no imports of the
packages themselves: :func:`importlib.util.find_spec` only looks).

::

    require("tensorboard", extra="tensorboard", feature="--log tensorboard")   # ConfigError if missing
"""

from __future__ import annotations

import importlib.util

from ifdd_bench.errors import ConfigError


def installed(module: str) -> bool:
    """True when the top-level ``module`` can be imported (it is not imported here)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed install counts as missing
        return False


def require(*modules: str, extra: str, feature: str) -> None:
    """Raise :class:`ConfigError` naming ``feature``, the missing packages and the extra that installs
    them, unless every top-level module in ``modules`` is installed."""
    missing = [m for m in modules if not installed(m)]
    if missing:
        which = ", ".join(repr(m) for m in missing)
        raise ConfigError(f"{feature} needs the package{'s' if len(missing) > 1 else ''} {which}, "
                          f"which {'are' if len(missing) > 1 else 'is'} not installed",
                          hint=f"pip install 'ifdd-bench[{extra}]'")
