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
    by_severity: dict[str, int] = field(default_factory=dict)    # in the order of the rule's thresholds
    severities: tuple[str, ...] = ()     # the rule's severities, most severe (its first threshold's) first
    unknown: tuple[str, ...] = ()        # counts not known: the server sent only the candidates (pushdown)

    def add(self, other: Counts) -> None:
        """Add the counts of another batch of the same rule."""
        self.series += other.series
        self.samples += other.samples
        self.invalid += other.invalid
        self.filtered += other.filtered
        self.alerts += other.alerts
        self.severities = self.severities or other.severities
        self.unknown = tuple(dict.fromkeys(self.unknown + other.unknown))
        for k, v in other.by_severity.items():
            self.by_severity[k] = self.by_severity.get(k, 0) + v
        self.by_severity = self.in_order(self.by_severity)

    def shown(self, name: str) -> str:
        """A count as the summary prints it: `?` when it is not known."""
        return "?" if name in self.unknown else str(getattr(self, name))

    def known(self, name: str) -> int | None:
        """A count, None when it is not known."""
        return None if name in self.unknown else int(getattr(self, name))

    def in_order(self, by: dict[str, int]) -> dict[str, int]:
        """Counts per severity listed as the rule's thresholds list them (others after, by name)."""
        rank = {name: i for i, name in enumerate(self.severities)}
        return {k: by[k] for k in sorted(by, key=lambda k: (rank.get(k, len(rank)), k))}
