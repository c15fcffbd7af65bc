"""A faithful fake of Google Vertex AI serving Claude (and Google OAuth), with fault injection.

The shared fake model lives in `engine`; each platform gets its own module (`vertex`, and later
Bedrock and the Anthropic API) that speaks that platform's URLs, auth and error shapes.
"""

from cloudgate.emulator.app import (
    EmulatorApp,
    EmulatorState,
    RecordedRequest,
    create_emulator_app,
    run_emulator,
)
from cloudgate.emulator.config import AuthorizedUser, EmulatorConfig
from cloudgate.emulator.faults import Fault, FaultSet
from cloudgate.emulator.google_oauth import write_service_account_key

__all__ = [
    "AuthorizedUser",
    "EmulatorApp",
    "EmulatorConfig",
    "EmulatorState",
    "Fault",
    "FaultSet",
    "RecordedRequest",
    "create_emulator_app",
    "run_emulator",
    "write_service_account_key",
]
