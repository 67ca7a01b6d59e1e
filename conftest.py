"""Shared fixtures: a simulator on loopback with a manual clock, and well-known test keys.

The keys are the public Anvil/Hardhat development keys (and freshly generated ones); none holds
value anywhere.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account

import turbine_sim
from harness import (  # noqa: F401 -- re-exported for the tests
    SIM_START,
    BotHarness,
    creds_for,
    free_port,
    quiet_sim_cfg,
    wait_until,
)

ROOT = pathlib.Path(__file__).parent
VECTORS_PATH = ROOT / "tests_data" / "signing-vectors.json"
# Well-known development key #0 (Anvil/Hardhat), the key the reference vectors were made with.
TEST_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
SETTLEMENT = turbine_sim.CHAINS[137]["settlement"]


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return json.loads(VECTORS_PATH.read_text())


@pytest.fixture
def sim() -> Iterator[turbine_sim.Sim]:
    s = turbine_sim.start_sim(
        turbine_sim.SimConfig(manual_clock=True, start_time=SIM_START + 1, seed=7)
    )
    yield s
    s.stop()


@pytest.fixture
def fresh_key() -> str:
    return "0x" + Account.create().key.hex().removeprefix("0x")


@pytest.fixture
def qsim() -> Iterator[turbine_sim.Sim]:
    """A simulator with no participants: only the test and the bot trade."""
    s = turbine_sim.start_sim(quiet_sim_cfg())
    yield s
    s.stop()
