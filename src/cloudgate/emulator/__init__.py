"""A faithful fake of Vertex AI, Amazon Bedrock and the Anthropic API serving Claude, with faults.

The shared fake model lives in `engine`; each platform has its own module (`vertex` with
`google_oauth`, `bedrock` with `bedrock_profiles`, `anthropic_api`) that speaks that platform's
URLs, auth and error shapes, so one request gets the same answer on every platform.
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
