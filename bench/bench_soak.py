#!/usr/bin/env python3
"""Soak and trading quality: spike_bot through simulated hours (default 24 h = 96 markets) on
turbine_sim's manual clock with the default participants, at full speed.

Reports requests per simulated minute, orders, fills, fill rate, PnL, max inventory,
tick time (with I/O), open orders left after each rollover, errors, resident memory at start
and end and CPU seconds per simulated hour. The baseline in the same run is the same bot with a
tolerance of 0 and a refresh of one tick, i.e. cancel-and-replace of every quote every tick.

    python bench/bench_soak.py [--hours 24] [--quick] [--json] [--seed 11]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from eth_account import Account

import spike_bot as sb
import turbine_sim as ts
from harness import SIM_START, creds_for


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_day(
    hours: float, seed: int, overrides: dict[str, Any] | None = None, label: str = "spike_bot"
) -> dict[str, Any]:
    sim = ts.start_sim(ts.SimConfig(manual_clock=True, start_time=SIM_START, seed=seed))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="soak-"))
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    addr = Account.from_key(key).address.lower()
    kid, secret = creds_for(sim, key)
    cfg = sb.Config(
        host=sim.base_url,
        log_file=str(tmp / "bot.log"),
        state_file=str(tmp / "state.json"),
        rate_limit_per_s=10_000,
        status_every_s=0,
        bot_name=label,
    )
    for k, v in (overrides or {}).items():
        setattr(cfg, k, v)
    sb.validate(cfg)
    metrics = sb.Metrics(label)
    ex = sb.TurbineExchange(cfg, sb.Signer(key, 137), sb.BearerAuth(kid, secret), metrics)
    log = sb.EventLog(cfg.log_file, label)
    bot = sb.Bot(cfg, ex, sim.clock, log, metrics)
    th = threading.Thread(target=bot.run, daemon=True)
    rss0 = rss_mb()
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    th.start()
    while bot.m is None:
        time.sleep(0.001)
    left_after_rollover: list[int] = []
    rolls = 0
    steps = int(hours * 3600 / cfg.tick_s)
    warm_req, warm_t = 0, 0.0
    for i in range(steps):
        before = bot.c.ticks
        sim.advance(cfg.tick_s)
        deadline = time.perf_counter() + 10
        while bot.c.ticks <= before and time.perf_counter() < deadline:
            time.sleep(0.0002)
        if bot.c.rollovers != rolls:
            rolls = bot.c.rollovers
            old = [
                o
                for o in sim.state()["open_orders"]
                if o["trader"] == addr and o["marketId"] != bot.m.qm.market_id
            ]
            left_after_rollover.append(len(old))
        if i == int(steps * 0.05):  # skip start-up for the steady-state rate
            warm_req, warm_t = metrics.requests_total, sim.clock.now()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    req_per_min = (metrics.requests_total - warm_req) / max(1.0, (sim.clock.now() - warm_t) / 60)
    bot.stop()
    th.join(30)
    log.close()
    rss1 = rss_mb()
    events = [json.loads(x) for x in pathlib.Path(cfg.log_file).read_text().splitlines()]
    fills = [e for e in events if e["event"] == "fill"]
    shutdown = events[-1] if events and events[-1]["event"] == "shutdown" else {}
    r, u = shutdown.get("realized", 0.0), shutdown.get("unrealized", 0.0)
    markets = max(1, rolls)
    placed = bot.c.placed_size
    ticks = sorted(bot.tick_times) or [0.0]
    st = sim.state()
    sim.stop()
    return {
        "label": label,
        "sim_hours": hours,
        "markets": rolls,
        "wall_s": round(wall, 1),
        "orders": bot.c.orders,
        "cancels": bot.c.cancels,
        "requests": metrics.requests_total,
        "requests_per_min": round(req_per_min, 1),
        "fills": len(fills),
        "fill_rate": round(bot.c.filled_size / placed, 6) if placed else 0.0,
        "filled_shares": bot.c.filled_size,
        "pnl_usdc": round(r + u, 4),
        "pnl_per_market_usdc": round((r + u) / markets, 4),
        "max_inventory": max([abs(e["position"]) for e in fills] or [0.0]),
        "claimed_usdc": round(bot.c.claimed_usdc, 4),
        "tick_p50_ms": round(ticks[len(ticks) // 2] * 1000, 3),
        "tick_p99_ms": round(ticks[int(len(ticks) * 0.99)] * 1000, 3),
        "orders_left_after_rollover": max(left_after_rollover or [0]),
        "errors": sum(1 for e in events if e["level"] == "ERROR" or e["event"] == "error"),
        "fail_closed": bot.c.fail_closed,
        "rss_start_mb": round(rss0, 1),
        "rss_end_mb": round(rss1, 1),
        "rss_growth_mb": round(rss1 - rss0, 1),
        "cpu_s_per_sim_hour": round(cpu / hours, 2),
        "sim_invariants_ok": st["invariants_ok"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--quick", action="store_true", help="1 simulated hour each")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-baseline", action="store_true")
    a = ap.parse_args()
    hours = 1.0 if a.quick else a.hours
    ours = run_day(hours, a.seed)
    rows = [ours]
    if not a.no_baseline:
        # cancel-and-replace every quote every tick: tolerance 0, refresh = one tick
        rows.append(
            run_day(
                hours,
                a.seed,
                {"requote_tolerance": 0.0, "order_refresh_s": 2.0},
                "replace_every_tick",
            )
        )
    keys = [
        "sim_hours",
        "markets",
        "wall_s",
        "orders",
        "requests_per_min",
        "fills",
        "fill_rate",
        "pnl_usdc",
        "pnl_per_market_usdc",
        "max_inventory",
        "claimed_usdc",
        "tick_p50_ms",
        "tick_p99_ms",
        "orders_left_after_rollover",
        "errors",
        "fail_closed",
        "rss_start_mb",
        "rss_end_mb",
        "rss_growth_mb",
        "cpu_s_per_sim_hour",
        "sim_invariants_ok",
    ]
    print(f"{'figure':28}" + "".join(f"{r['label']:>20}" for r in rows))
    for k in keys:
        print(f"{k:28}" + "".join(f"{r[k]!s:>20}" for r in rows))
    if len(rows) == 2:
        red = rows[1]["requests_per_min"] / max(ours["requests_per_min"], 1e-9)
        print(f"request reduction vs replace-every-tick: {red:.1f}x")
    if a.json:
        out = {"bench": "soak", **{k: ours[k] for k in keys}}
        if len(rows) == 2:
            out["baseline_requests_per_min"] = rows[1]["requests_per_min"]
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
