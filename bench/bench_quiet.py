#!/usr/bin/env python3
"""A quiet market: the real stream sends nothing while a book does not change (spec 5.1). On the
simulator with no participants (only the bot's own quotes in the book), counted per simulated
hour: stream reconnects, REST book reads (the quiet book's confirmations), fail-closed events and
requests of every kind. Baseline in the same run: the same hour with the simulator's old
heartbeat (every book resent every 2 s), where no confirmation is needed. Goal (issue 13): no
reconnect while the connection answers pings, no fail-closed.

The hour runs on the simulator's manual clock (the bot's 2 s ticks driven one by one); then a
real-time minute at 1x checks the pings: the stream must stay connected without frames.

    python bench/bench_quiet.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import turbine_sim as ts
from harness import SIM_START, BotHarness


def hour(heartbeat: float, minutes: float) -> dict[str, Any]:
    sim = ts.start_sim(
        ts.SimConfig(
            manual_clock=True,
            start_time=SIM_START + 1,
            seed=5,
            participants=False,
            annual_vol=0.10,
            book_heartbeat_s=heartbeat,
        )
    )
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="quiet-"))
    h = BotHarness(sim, tmp).start()
    try:
        n = int(minutes * 60 / h.cfg.tick_s)
        c0 = sim.state()["counters"].get("requests", 0)
        h.tick(n)
        ev = h.events()
        out = {
            "sim_minutes": minutes,
            "reconnects": sum(1 for e in ev if e["event"] == "stream_connected") - 1,
            "book_confirms": h.slot.c.books_confirmed,
            "fail_closed": sum(1 for e in ev if e["event"] == "fail_closed"),
            "unconfirmed": sum(1 for e in ev if e["event"] == "book_unconfirmed"),
            "requests": sim.state()["counters"].get("requests", 0) - c0,
            "ws_frames": sim.state()["counters"].get("ws_frames", 0),
        }
        scale = 60.0 / minutes
        out["per_hour"] = {
            k: round(out[k] * scale, 1)
            for k in ("reconnects", "book_confirms", "fail_closed", "requests", "ws_frames")
        }
        return out
    finally:
        h.stop()
        sim.stop()


def real_minute(seconds: float) -> dict[str, Any]:
    """1x, real clock: the connection must stay up on pings alone."""
    sim = ts.start_sim(
        ts.SimConfig(speed=1.0, seed=5, participants=False, annual_vol=0.0001, market_age_s=5)
    )
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="quiet-rt-"))
    h = BotHarness(sim, tmp, requote_tolerance=0.3, order_refresh_s=3600)
    h.start(wait_quotes=False)  # on the simulator's real clock
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
        ev = h.events()
        return {
            "real_seconds": seconds,
            "reconnects": sum(1 for e in ev if e["event"] == "stream_connected") - 1,
            "fail_closed": sum(1 for e in ev if e["event"] == "fail_closed"),
            "ws_frames": sim.state()["counters"].get("ws_frames", 0),
            "connected": h.bot.feed.connected,
        }
    finally:
        h.stop()
        sim.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    minutes = 15.0 if a.quick else 60.0
    quiet = hour(0.0, minutes)
    beat = hour(2.0, minutes)
    rt = real_minute(30.0 if a.quick else 90.0)
    res = {"quiet": quiet, "heartbeat_baseline": beat, "real_time": rt}
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"per simulated hour ({minutes:g} simulated minutes, scaled), no participants")
    print(f"{'':30}{'quiet stream':>14}{'heartbeat 2 s':>15}")
    for k in ("reconnects", "book_confirms", "fail_closed", "requests", "ws_frames"):
        print(f"{k:30}{quiet['per_hour'][k]:>14}{beat['per_hour'][k]:>15}")
    print(
        f"real time at 1x for {rt['real_seconds']:g} s with no frame: reconnects "
        f"{rt['reconnects']}, fail_closed {rt['fail_closed']}, frames {rt['ws_frames']}, "
        f"connected {rt['connected']}"
    )
    print("goal: no reconnect while the connection answers pings, no fail-closed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
