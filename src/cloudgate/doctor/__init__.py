"""`cloudgate doctor`: checks Claude Code's configuration end to end and says what to fix."""

from cloudgate.doctor.model import CheckResult, Finding, Report, Verdict
from cloudgate.doctor.runner import diagnose, failed_to_resolve

__all__ = ["CheckResult", "Finding", "Report", "Verdict", "diagnose", "failed_to_resolve"]
