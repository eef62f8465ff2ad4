"""What happened when a weight file was loaded into a module: the one report type of every loader
(IFDD's K400 / pretext initialisation in ``pretrained.py``, the baselines' ``baselines.weights``).

``summary()`` is the human-readable text that is logged; ``as_dict()`` the record that
``environment.json`` keeps next to the file's SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class WeightReport:
    """What happened when a weight file was loaded into a module."""

    path: str
    sha256: str
    kind: str
    matched: list[str] = field(default_factory=list)  # loaded tensors (target names)
    missing: list[str] = field(default_factory=list)  # target tensors the file lacks (left at init)
    unexpected: list[str] = field(default_factory=list)  # file tensors with no target
    mismatched: list[str] = field(default_factory=list)  # "name: file (..) vs model (..)"
    dropped: list[str] = field(default_factory=list)  # file tensors deliberately skipped (classifier)
    adapted: list[str] = field(default_factory=list)  # shape differs but the loader adapts it (timm)
    prefix: str = ""  # prefix stripped from the file's keys

    @property
    def fraction(self) -> float:
        """Share of the target's tensors that the file provides."""
        total = len(self.matched) + len(self.missing) + len(self.mismatched) + len(self.adapted)
        return (len(self.matched) + len(self.adapted)) / max(total, 1)

    def summary(self, limit: int = 8) -> str:
        """Multi-line human report: counts plus the first ``limit`` names of each list."""

        def names(items: list[str]) -> str:
            more = f", ... (+{len(items) - limit})" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        lines = [f"weights {self.path} (sha256 {self.sha256[:16]}, {self.kind}): "
                 f"{len(self.matched) + len(self.adapted)} tensors match, {len(self.missing)} missing, "
                 f"{len(self.unexpected)} unexpected, {len(self.mismatched)} shape mismatches"
                 + (f", prefix {self.prefix!r} stripped" if self.prefix else "")]
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("shape mismatch", self.mismatched), ("adapted", self.adapted),
                             ("dropped", self.dropped)):
            if items:
                lines.append(f"  {label}: {names(items)}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record for the run folder's environment.json."""
        return {"path": self.path, "sha256": self.sha256, "kind": self.kind,
                "mapped": len(self.matched) + len(self.adapted), "missing": self.missing,
                "unexpected": self.unexpected, "mismatched": self.mismatched, "dropped": self.dropped,
                "adapted": self.adapted}
