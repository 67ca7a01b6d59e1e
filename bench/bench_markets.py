#!/usr/bin/env python3
"""Several markets in one process: what quoting BTC:15, BTC:60 and ETH:15 together costs
against quoting BTC:15 alone, on the same seeded simulator (participants on, BTC and ETH
paths, 15- and 60-minute markets), through bench_soak.run_day.

Figures: requests per simulated minute in total and per market (one stream, one pacer, one
claims round and one price poll per asset are shared; positions are polled per market), tick
time with I/O, the bot's CPU per simulated hour, PnL per market, orders left after a rollover,
errors. A second pair of runs holds the portfolio to tight limits (net exposure 10 USDC, open
notional 12 USDC) and samples the portfolio after every step to show they hold all day.

    python bench/bench_markets.py [--hours 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import spike_bot as sb
from bench_soak import print_rows, run_day

SIM = {"assets": ("BTC", "ETH"), "intervals": (15, 60)}
THREE = "BTC:15,BTC:60,ETH:15"
TIGHT = {"max_net_exposure": 10.0, "max_open_notional": 12.0}


class Watch:
    """Samples the portfolio after every engine step (the bench's own instrumentation)."""

    def __init__(self) -> None:
        self.max_net = 0.0
        self.max_open = 0.0
        self.samples = 0
        self._step = sb.Bot.step

    def __enter__(self) -> Watch:
        watch = self

        def step(bot: sb.Bot) -> None:
            watch._step(bot)
            notional, net = bot.risk.portfolio()
            watch.max_open = max(watch.max_open, notional)
            watch.max_net = max(watch.max_net, abs(net))
            watch.samples += 1

        sb.Bot.step = step  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        sb.Bot.step = self._step  # type: ignore[method-assign]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--quick", action="store_true", help="1 simulated hour each")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    hours = 1.0 if a.quick else a.hours
    rows = []
    for label, markets, extra in (
        ("BTC:15 alone", "BTC:15", {}),
        ("three markets", THREE, {}),
        ("three, tight limits", THREE, TIGHT),
    ):
        with Watch() as w:
            r = run_day(hours, a.seed, {"markets": markets, **extra}, "spike_bot", SIM)
        n = len(markets.split(","))
        r.update(
            label=label,
            n_markets=n,
            requests_per_min_per_market=round(r["requests_per_min"] / n, 1),
            max_abs_net_exposure=round(w.max_net, 3),
            max_open_notional=round(w.max_open, 3),
            steps_sampled=w.samples,
        )
        rows.append(r)
    one, three, tight = rows
    ratio = three["requests_per_min"] / max(1e-9, one["requests_per_min"])
    keys = [
        "n_markets",
        "requests_per_min",
        "requests_per_min_per_market",
        "orders",
        "fills",
        "pnl_usdc",
        "max_abs_net_exposure",
        "max_open_notional",
        "tick_p50_ms",
        "tick_p99_ms",
        "cpu_s_per_sim_hour",
        "orders_left_after_rollover",
        "errors",
        "sim_invariants_ok",
    ]
    print_rows(rows, keys, 22)
    print(
        f"three markets cost {ratio:.2f}x the requests of one (3.00x if nothing were shared)\n"
        f"tight limits: open notional peaked at {tight['max_open_notional']} (limit "
        f"{TIGHT['max_open_notional']}); net exposure at {tight['max_abs_net_exposure']} (limit "
        f"{TIGHT['max_net_exposure']}: it stops new risk, while resting quotes that fill and "
        f"the fair value moving can carry it past)"
    )
    summary = {
        "markets_request_ratio_3_vs_1": round(ratio, 2),
        "tight_max_net_exposure": tight["max_abs_net_exposure"],
        "tight_max_open_notional": tight["max_open_notional"],
        "three_markets_errors": three["errors"] + tight["errors"],
    }
    if a.json:
        print(json.dumps({"rows": rows, **summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
