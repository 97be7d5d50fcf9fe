"""What happened to a rule's samples (kept apart so that a run can be planned without pyarrow)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Counts:
    """What happened to a rule's samples."""

    series: int = 0
    samples: int = 0
    invalid: int = 0         # dropped by `valid`
    filtered: int = 0        # dropped by `where`
    alerts: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        """Add the counts of another batch of the same rule."""
        self.series += other.series
        self.samples += other.samples
        self.invalid += other.invalid
        self.filtered += other.filtered
        self.alerts += other.alerts
        for k, v in other.by_severity.items():
            self.by_severity[k] = self.by_severity.get(k, 0) + v
