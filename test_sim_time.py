"""turbine_sim's time: the model moves exactly with the clock at every speed.

A seed's price path, markets, resolutions and participant trades up to simulated time T must not
depend on how T was reached: one advance, thousands of 20 ms advances, or the real-time ticker at
any speed. The ticker is driven here through an injected real-time source, never by sleeping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

import turbine_sim as ts
from conftest import SIM_START, free_port, wait_until

START = SIM_START + 0.37  # not on a whole second: the grid must not care
T = 2_000.0  # simulated seconds: two rollovers (900 s, 1800 s) and two resolutions


class FakeReal:
    """A real-time source the test moves by hand."""

    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def cfg(**kw: Any) -> ts.SimConfig:
    kw.setdefault("seed", 11)
    kw.setdefault("start_time", START)
    return ts.SimConfig(**kw)


def fingerprint(app: ts.SimApp) -> dict[str, Any]:
    ex = app.ex
    return {
        "prices": {a: list(h) for a, h in ex.price_hist.items()},
        "markets": sorted(
            (m.market_id, m.start, m.end, m.strike, m.final_price, m.resolved, m.outcome)
            for m in ex.markets.values()
        ),
        "trades": {mid: list(d) for mid, d in ex.trades.items()},
        "counters": {k: v for k, v in ex.counters.items() if k not in ("requests", "ws_frames")},
    }


def by_one_advance(duration: float) -> dict[str, Any]:
    app = ts.SimApp(cfg(manual_clock=True))
    app.advance(duration)
    assert app.ex.t == pytest.approx(START + duration)
    return fingerprint(app)


def by_small_advances(duration: float, step: float) -> dict[str, Any]:
    app = ts.SimApp(cfg(manual_clock=True))
    end = START + duration
    while app.clock.now() + step < end:
        app.advance(step)
    app.advance(end - app.clock.now())
    return fingerprint(app)


def by_ticker(duration: float, speed: float, real_step: float = 0.02) -> dict[str, Any]:
    real = FakeReal()
    app = ts.SimApp(cfg(speed=speed), ts.Clock(START, speed, False, real=real))
    r0 = real.t
    last = r0 + duration / speed
    n = 0
    while real.t + real_step < last:
        real.t += real_step
        app.tick()
        n += 1
    real.t = last
    app.tick()
    assert app.ex.t == pytest.approx(START + duration, abs=1e-6)
    assert n >= duration / speed / real_step - 2  # it really went in 20 ms steps
    return fingerprint(app)


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    fp = by_one_advance(T)
    # the run is not trivially empty: it moved, rolled, resolved and traded
    assert len(fp["prices"]["BTC"]) == T + 1
    assert fp["counters"]["rollovers"] == 2 and fp["counters"]["resolved"] == 2
    assert fp["counters"]["trades"] > 20 and fp["counters"]["noise_orders"] > 20
    assert len({round(p, 6) for _, p in fp["prices"]["BTC"]}) > T / 2
    return fp


@pytest.mark.parametrize("speed", [1.0, 7.0, 60.0, 720.0])
def test_ticker_at_speed_equals_one_advance(reference: dict[str, Any], speed: float) -> None:
    assert by_ticker(T, speed) == reference


def test_manual_clock_in_20ms_steps_equals_one_advance(reference: dict[str, Any]) -> None:
    assert by_small_advances(T, 0.02) == reference


@pytest.mark.parametrize("speed", [0.1, 1000.0])
def test_extreme_speeds(speed: float) -> None:
    duration = 40.0 if speed < 1 else T
    assert by_ticker(duration, speed) == by_one_advance(duration)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(min_value=0.001, max_value=97.0), min_size=1, max_size=60))
def test_any_sequence_of_advances_equals_one_advance(chunks: list[float]) -> None:
    app = ts.SimApp(cfg(manual_clock=True))
    for c in chunks:
        app.advance(c)
    total = app.clock.now() - START
    assert fingerprint(app) == by_one_advance(total)


def test_one_x_runs_on_the_wall_clock_and_rolls_on_time() -> None:
    """At 1x with no start time the simulator's time is the wall clock: the market in progress
    is a partial one, and it rolls over exactly at its endTime with prices moving and
    participants trading in between."""
    wall = SIM_START + 437.25  # 7 min 17 s into a quarter hour
    real = FakeReal(wall)
    clock = ts.Clock(wall, 1.0, False, real=real)
    clock._real0 = clock._start
    app = ts.SimApp(ts.SimConfig(seed=3), clock)
    first = app.ex.markets[app.ex.current[("BTC", 15)]]
    assert (first.start, first.end) == (SIM_START, SIM_START + 900)  # partial: started before us
    assert app.ex.t == pytest.approx(wall)
    p0 = app.ex.prices["BTC"]
    while real.t < first.end - 0.5:
        real.t += 0.02
        app.tick()
        assert app.ex.current[("BTC", 15)] == first.market_id  # not a moment early
    assert app.ex.prices["BTC"] != p0
    assert app.ex.counters["trades"] > 0 and app.ex.counters["noise_orders"] > 0
    while real.t < first.end + 0.1:
        real.t += 0.02
        app.tick()
    second = app.ex.markets[app.ex.current[("BTC", 15)]]
    assert second.market_id != first.market_id and second.start == first.end
    assert first.closed and not first.resolved
    while real.t < first.end + app.cfg.resolve_delay_s + 0.1:
        real.t += 0.02
        app.tick()
    assert first.resolved and first.outcome in (ts.YES, ts.NO)


def test_default_clock_at_1x_is_wall_time_and_compressed_starts_on_a_boundary() -> None:
    c = ts.default_clock(ts.SimConfig())
    assert abs(c.now() - time.time()) < 0.05
    c60 = ts.default_clock(ts.SimConfig(speed=60))
    assert c60.now() % 900 == pytest.approx(1.0, abs=0.5)


@pytest.mark.parametrize("speed", [1.0, 100.0])
def test_standalone_process_moves_time(speed: float) -> None:
    """`python turbine_sim.py` as a user runs it: time, prices and participants move at 1x
    and at speed; at 1x its clock is the wall clock."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "turbine_sim.py", "--port", str(port), "--speed", str(speed)],
        cwd=os.path.dirname(os.path.abspath(__file__)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def state() -> dict[str, Any] | None:
            try:
                return requests.get(base + "/sim/state", timeout=2).json()
            except requests.RequestException:
                return None

        s0 = wait_until(state, timeout=20)
        if speed == 1.0:
            assert abs(s0["time"] - time.time()) < 1.0
        wait_until(lambda: (s := state()) and s["prices"] != s0["prices"], timeout=10)
        time.sleep(3.0)
        s1 = state()
        assert s1 is not None
        assert s1["time"] - s0["time"] >= 3.0 * speed * 0.8
        if speed > 1:
            assert s1["counters"].get("noise_orders", 0) + s1["counters"].get("trades", 0) > 0
        qm = requests.get(base + "/api/v1/quick-markets/BTC", timeout=2).json()["quickMarket"]
        assert qm["endTime"] > s1["time"] - 1  # never a market whose end has long passed
    finally:
        proc.terminate()
        proc.wait(timeout=10)
