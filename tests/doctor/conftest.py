"""Fixtures for doctor scenarios (see scenarios.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.doctor.scenarios import Scenario, scenario_factory


@pytest.fixture
def make_scenario(tmp_path: Path) -> Iterator[Callable[..., Scenario]]:
    """`make_scenario(**emulator_settings)`: an emulator and a user's machine around it."""
    with scenario_factory(tmp_path) as make:
        yield make


@pytest.fixture
def scenario(make_scenario: Callable[..., Scenario]) -> Scenario:
    """An emulator with default behaviour."""
    return make_scenario()
