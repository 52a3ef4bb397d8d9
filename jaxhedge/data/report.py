"""Drop reports: what a loading/cleaning step removed and why (reason -> count, in order).

Every data step that removes rows returns one, so a bad row is never silently kept or
silently lost. Reports add (``a + b`` merges counts, keeping first-seen order), print as
one line per reason and serialise to JSON.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["DropReport"]


@dataclass
class DropReport:
    """Ordered ``reason -> number of rows dropped``; ``n_in``/``n_out`` rows before/after."""

    counts: dict[str, int] = field(default_factory=dict)
    n_in: int = 0
    n_out: int = 0

    def add(self, reason: str, n: int) -> None:
        """Count ``n`` more rows under ``reason`` (zero counts are not recorded)."""
        n = int(n)
        if n:
            self.counts[reason] = self.counts.get(reason, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __add__(self, other: "DropReport") -> "DropReport":
        out = DropReport(dict(self.counts), self.n_in, other.n_out)
        for k, v in other.counts.items():
            out.add(k, v)
        return out

    def to_dict(self) -> dict:
        return {"n_in": self.n_in, "n_out": self.n_out, "dropped": dict(self.counts)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __str__(self) -> str:
        lines = [f"{self.n_in} rows in, {self.n_out} kept, {self.total} dropped"]
        lines += [f"  {k}: {v}" for k, v in self.counts.items()]
        return "\n".join(lines)
