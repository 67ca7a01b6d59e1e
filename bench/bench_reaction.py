#!/usr/bin/env python3
"""Reaction: on the simulator (real clock), the time from a book change that makes a resting
quote stale (fair value moves past the requote tolerance) to the replacing order arriving at
the simulator; p50 and p99. Baseline in the same run: the same bot with the stream's wake-up
switched off, i.e. a pure 2 s tick (expected ~1 s).

    python bench/bench_reaction.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from eth_account import Account

import spike_bot as sb
import turbine_sim as ts
from harness import creds_for


class NoWake(threading.Event):
    """An event the stream can set without waking the loop: a pure heartbeat tick."""

    def set(self) -> None:
        return None


def measure(samples: int, wake: bool) -> list[float]:
    sim = ts.start_sim(
        ts.SimConfig(
            speed=1.0, participants=False, annual_vol=0.0001, seed=4, market_age_s=5
        )
    )
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    kid, secret = creds_for(sim, key)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="react-"))
    cfg = sb.validate(
        sb.Config(
            host=sim.base_url,
            log_file=str(tmp / "bot.log"),
            state_file=str(tmp / "s.json"),
            rate_limit_per_s=10_000,
            status_every_s=0,
            order_refresh_s=3600,
        )
    )
    metrics = sb.Metrics("reaction")
    ex = sb.TurbineExchange(cfg, sb.Signer(key, 137), sb.BearerAuth(kid, secret), metrics)
    log = sb.EventLog(cfg.log_file, "reaction")
    bot = sb.Bot(cfg, ex, sim.clock, log, metrics)
    if not wake:
        bot.feed.wake = NoWake()
    arrivals: list[float] = []
    real_place = sim.app.ex.place

    def place(*a: Any, **kw: Any) -> Any:  # runs on the simulator's loop thread
        arrivals.append(time.perf_counter())
        return real_place(*a, **kw)

    sim.app.ex.place = place
    th = threading.Thread(target=bot.run, daemon=True)
    th.start()
    deadline = time.time() + 20
    while len(arrivals) < 2 and time.time() < deadline:
        time.sleep(0.01)
    mover = "0x" + "6d" * 20
    out: list[float] = []
    state = {"on": False}

    def flip() -> float:
        """Put up (or take down) a two-sided book 0.16 above the model: the micro-price term
        moves fair value by ~0.05, past the 0.03 tolerance."""
        ex = sim.app.ex
        mid = next(iter(ex.current.values()))
        ex.ledger.ensure(mover, 10**15)
        ex.ledger.allowance[mover] = ts.MAX_UINT
        if not state["on"]:
            p = ex.true_probability(ex.markets[mid])
            state["orders"] = [
                ex.place_internal(
                    mover, mid, ts.BUY, ts.YES, round((p + 0.15) * 1e6), 50_000_000, False
                ),
                ex.place_internal(
                    mover, mid, ts.SELL, ts.YES, round((p + 0.17) * 1e6), 50_000_000, False
                ),
            ]
        else:
            for o in state["orders"]:
                if o.status == "open":
                    ex._cancel(o)
        state["on"] = not state["on"]
        sim.app.flush()
        return time.perf_counter()

    rng = random.Random(9)
    for _ in range(samples):
        # a random phase against the 2 s tick, so the tick-only baseline is not phase-locked
        time.sleep(0.25 + (rng.random() * cfg.tick_s if not wake else 0.0))
        n = len(arrivals)
        t0 = sim.call(flip)
        end = time.perf_counter() + 5
        while len(arrivals) == n and time.perf_counter() < end:
            time.sleep(0.0005)
        if len(arrivals) > n:
            out.append((arrivals[n] - t0) * 1000)
    bot.stop()
    th.join(20)
    log.close()
    sim.stop()
    return sorted(out)


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    n = 10 if a.quick else 40
    ours = measure(n, wake=True)
    base = measure(max(6, n // 2), wake=False)
    res = {
        "samples": len(ours),
        "reaction_p50_ms": round(pct(ours, 0.5), 2),
        "reaction_p99_ms": round(pct(ours, 0.99), 2),
        "tick_only_p50_ms": round(pct(base, 0.5), 1),
        "tick_only_p99_ms": round(pct(base, 0.99), 1),
    }
    res["reaction_speedup"] = round(res["tick_only_p50_ms"] / res["reaction_p50_ms"], 1)
    print(f"{'book change -> replacing order at the exchange':48} {'p50 ms':>8} {'p99 ms':>8}")
    print(
        f"{'stream wakes the loop (spike_bot)':48} {res['reaction_p50_ms']:8.1f} "
        f"{res['reaction_p99_ms']:8.1f}   (goal p50 < 25 ms)"
    )
    print(
        f"{'baseline: pure 2 s tick':48} {res['tick_only_p50_ms']:8.1f} "
        f"{res['tick_only_p99_ms']:8.1f}"
    )
    print(f"{res['reaction_speedup']}x faster than the tick alone")
    if a.json:
        print(json.dumps({"bench": "reaction", **res}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
