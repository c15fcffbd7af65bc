"""What a doctor run produces: one verdict per check, with the explanation and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    """How a check came out; only FAIL makes the run fail."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"


@dataclass(slots=True)
class Finding:
    """A verdict with its plain-language reason and what to do about it.

    `cause` is a short stable name for the diagnosis (`not-enabled`, `quota`, ...) that tests
    and scripts can rely on while the wording of `message` improves.
    """

    verdict: Verdict
    message: str
    fix: str = ""
    cause: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CheckResult:
    """One check's outcome as shown to people and to scripts."""

    id: str
    title: str
    verdict: Verdict
    message: str
    fix: str = ""
    cause: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, check_id: str, title: str, finding: Finding) -> CheckResult:
        """A result carrying `finding` under this check's id and title."""
        return cls(
            check_id,
            title,
            finding.verdict,
            finding.message,
            finding.fix,
            finding.cause,
            dict(finding.details),
        )

    @classmethod
    def skipped(cls, check_id: str, title: str, reason: str) -> CheckResult:
        """A check not run because something it depends on failed or does not apply."""
        return cls(check_id, title, Verdict.SKIPPED, reason)

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "id": self.id,
            "title": self.title,
            "verdict": str(self.verdict),
            "message": self.message,
            "fix": self.fix,
            "cause": self.cause,
            "details": self.details,
        }


@dataclass(slots=True)
class Report:
    """Every check of one run, in the order they ran."""

    platform: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether any check failed."""
        return any(c.verdict is Verdict.FAIL for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 when every check is ok, warn or skipped; 1 when any failed."""
        return 1 if self.failed else 0

    def get(self, check_id: str) -> CheckResult | None:
        """The check with this id, if it ran."""
        return next((c for c in self.checks if c.id == check_id), None)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (what `cloudgate doctor --json` prints)."""
        return {
            "ok": not self.failed,
            "platform": self.platform,
            "checks": [c.to_json() for c in self.checks],
        }
