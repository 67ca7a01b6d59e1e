"""turbine_sim's Pyth Hermes (the settlement oracle's price service): latest and the SSE stream
from the model's own price path, the API key, and the stream faults the bot's fallback needs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import turbine_sim as ts
from conftest import SIM_START, wait_until

BTC = "0x" + ts.PYTH_FEEDS["BTC"]


@pytest.fixture
def hsim() -> Iterator[ts.Sim]:
    s = ts.start_sim(
        ts.SimConfig(manual_clock=True, start_time=SIM_START + 1, seed=4, participants=False)
    )
    yield s
    s.stop()


def latest(sim: ts.Sim, *ids: str, key: str | None = None) -> requests.Response:
    return requests.get(
        sim.base_url + "/v2/updates/price/latest",
        params=[("ids[]", i) for i in ids],
        headers={"Authorization": f"Bearer {key}"} if key else None,
        timeout=5,
    )


class SSE:
    """A minimal server-sent-events reader on requests' streaming (the test's own client)."""

    def __init__(self, sim: ts.Sim, *ids: str) -> None:
        self.r = requests.get(
            sim.base_url + "/v2/updates/price/stream",
            params=[("ids[]", i) for i in ids],
            stream=True,
            timeout=5,
        )
        self.events: list[dict[str, Any]] = []
        self.ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self.r.iter_lines():
                if line.startswith(b"data:"):
                    self.events.append(json.loads(line[5:]))
        except requests.RequestException:
            pass
        self.ended = True


def test_latest_parses_as_the_official_market_maker_reads_it(hsim: ts.Sim) -> None:
    assert latest(hsim, ts.PYTH_FEEDS["BTC"].upper()).status_code == 200  # no 0x, any case
    r = latest(hsim, BTC)
    assert r.status_code == 200
    d = r.json()
    assert d["binary"]["encoding"] == "hex" and d["binary"]["data"]
    p = d["parsed"][0]
    assert "0x" + p["id"] == BTC  # ids come back without 0x
    price = int(p["price"]["price"]) * 10 ** p["price"]["expo"]  # examples/market_maker.py
    assert price == pytest.approx(hsim.state()["prices"]["BTC"], rel=1e-9)
    assert p["price"]["publish_time"] == int(hsim.clock.now())
    assert isinstance(p["price"]["price"], str) and isinstance(p["price"]["expo"], int)
    hsim.advance(5)
    p2 = latest(hsim, BTC).json()["parsed"][0]
    assert p2["price"]["publish_time"] == p["price"]["publish_time"] + 5
    assert latest(hsim, "0x" + "ab" * 32).status_code == 404  # unknown feed
    assert latest(hsim).status_code == 404
    assert hsim.state()["counters"].get("requests", 0) == 0  # not counted as Turbine's


def test_stream_follows_the_price_path_and_its_faults(hsim: ts.Sim) -> None:
    s = SSE(hsim, BTC)
    wait_until(lambda: s.events, 5)
    t0 = s.events[-1]["parsed"][0]["price"]["publish_time"]
    for _ in range(5):
        hsim.advance(1)
        time.sleep(0.05)
    wait_until(lambda: s.events[-1]["parsed"][0]["price"]["publish_time"] == t0 + 5, 5)
    last = s.events[-1]["parsed"][0]["price"]
    assert int(last["price"]) * 10 ** last["expo"] == pytest.approx(
        hsim.state()["prices"]["BTC"], rel=1e-9
    )
    # frozen: connected, silent
    hsim.fault("hermes_freeze")
    n = len(s.events)
    hsim.advance(10)
    time.sleep(0.2)
    assert len(s.events) == n and not s.ended
    hsim.clear_fault("hermes_freeze")
    wait_until(lambda: len(s.events) > n, 5)
    # dropped, refused while the fault stands, then back
    hsim.fault("hermes_drop", refuse=True)
    wait_until(lambda: s.ended, 5)
    r = requests.get(
        hsim.base_url + "/v2/updates/price/stream", params={"ids[]": BTC}, timeout=5
    )
    assert r.status_code == 503
    hsim.clear_fault("hermes_drop")
    s2 = SSE(hsim, BTC)
    wait_until(lambda: s2.events, 5)
    s2.r.close()


def test_api_key_required_when_configured() -> None:
    sim = ts.start_sim(
        ts.SimConfig(manual_clock=True, start_time=SIM_START + 1, hermes_api_key="k-123")
    )
    try:
        assert latest(sim, BTC).status_code == 401
        assert latest(sim, BTC, key="wrong").status_code == 401
        assert latest(sim, BTC, key="k-123").status_code == 200
        assert "k-123" not in latest(sim, BTC).text
    finally:
        sim.stop()
