#!/usr/bin/env python3
"""Bad replies beyond the known list (issue 20): random corruptions of every read the bot
acts on, one at a time, against each bot on turbine_sim's manual clock, and what happened.

    python bench/bench_adversary.py [--rules 40] [--seed 1] [--kinds spike,official] [--json]

Each rule picks an endpoint (orders, positions, quick market, order book, claim-data, failed
trades, price, balances), a mutation (truncated body; a field set to null, a negative, 1e30, a
string, a list; a foreign row added) and stays on for 10 ticks, then 4 good ticks follow.
Outcomes checked after every rule: the engine thread is alive, no loss limit tripped, no
position reconciled from the bad data, realized PnL unchanged (nothing trades but the bot: no
participants), at most one order a side, and quoting back within the 4 good ticks. At the end
the bot stops and no order is left. The baseline is the same run with no corruption (the
number of orders placed and requests, in the same run)."""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import sys
import tempfile
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import turbine_sim as ts
from harness import BotHarness, quiet_sim_cfg

READS = [  # path prefix, where the rows are, fields worth lying about
    ("/api/v1/orders", "orders", ["marketId", "trader", "filledSize", "size", "price", "side",
                                  "status", "orderHash"]),
    ("/api/v1/positions", "positions", ["yesShares", "noShares", "marketId", "userAddress"]),
    ("/api/v1/quick-markets/BTC", "quickMarket", ["marketId", "asset", "startPrice", "endTime",
                                                  "startTime", "contractAddress"]),
    ("/api/v1/orderbook", "", ["bids", "asks"]),
    ("/api/v1/users/", "markets", ["market_address", "winning_balance", "winning_outcome",
                                   "resolved"]),
    ("/api/v1/failed-trades", "failedTrades", ["fillSize", "fillPrice", "buyerAddress",
                                               "marketId"]),
    ("/api/v1/quick-markets/BTC/price", "", ["price"]),
]
ABSURD: list[Any] = [None, -1, 10**30, "x", [], {}, 0, True]


def rule_for(rng: random.Random) -> dict[str, Any]:
    path, at, fields = rng.choice(READS)
    kind = rng.choice(["truncate", "set", "set", "add"])
    rule: dict[str, Any] = {"path": path, "at": at}
    if kind == "truncate":
        rule["truncate"] = True
    elif kind == "set":
        rule["set"] = {rng.choice(fields): rng.choice(ABSURD)}
    else:
        rule["add"] = {rng.choice(fields): rng.choice(ABSURD), "marketId": "0x" + "cd" * 32}
    return rule


def run(kind: str, rules: list[dict[str, Any]] | None, tmp: pathlib.Path) -> dict[str, Any]:
    sim = ts.start_sim(quiet_sim_cfg())
    h = BotHarness(sim, tmp, exchange_kind=kind, orders_sync_s=4, claim_s=4)
    bad: list[str] = []
    try:
        h.start()
        for i, rule in enumerate(rules or [{}] * 10):
            if rule:
                sim.fault("corrupt", **rule)
            for _ in range(10):
                h.tick()
                sides = [o["side"] for o in h.open_orders(h.market_id())]
                if sides.count(0) > 1 or sides.count(1) > 1:
                    bad.append(f"rule {i} {rule}: {sides.count(0)} bids / {sides.count(1)} asks")
            if rule:
                sim.clear_fault("corrupt")
            s = h.slot
            if s.m is not None and s.m.qm.end - sim.clock.now() < 150:
                continue  # the T-minus window pulls quotes by design: not a recovery to judge
            try:
                h.tick_until(lambda: len(h.open_orders(h.market_id())) == 2, 4)
            except AssertionError:
                s = h.slot
                where = "its market" if s.m and s.m.qm.market_id == h.market_id() else "OLD market"
                bad.append(
                    f"rule {i} {rule}: not quoting 4 ticks after it ended "
                    f"({s.closed_reason}, on {where}, live {len(s.m.live) if s.m else 0}, "
                    f"doubted {len(s.m.unconfirmed_cancels) if s.m else 0}, limits {s.blocked}, "
                    f"T-{(s.m.qm.end - h.sim.clock.now()) if s.m else 0:.0f}s)"
                )
            if not h.thread.is_alive():
                bad.append(f"rule {i} {rule}: the engine died")
                break
        for name in ("kill_switch", "position_reconciled", "fill"):
            if h.events(name):
                bad.append(f"{len(h.events(name))} {name} events")
        if h.bot.ledger.pnl_now()[0] != 0.0:
            bad.append(f"realized PnL {h.bot.ledger.pnl_now()[0]}")
    finally:
        h.stop()
        left = [o for o in sim.state()["open_orders"] if o["trader"] == h.address]
        sim.stop()
    if left:
        bad.append(f"{len(left)} orders left after stop")
    by: dict[str, int] = {}
    for e in h.events("reply_rejected"):
        by[e["endpoint"]] = by.get(e["endpoint"], 0) + 1
    return {
        "kind": kind,
        "rules": len(rules or []),
        "rejected_by_endpoint": by,
        "implausible": len(h.events("position_implausible")),
        "errors": len(h.events("error")),
        "orders_placed": len(h.events("order_placed")),
        "violations": bad,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default="spike,official")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    rules = [rule_for(rng) for _ in range(a.rules)]
    out = []
    for kind in a.kinds.split(","):
        with tempfile.TemporaryDirectory() as d:
            base = run(kind, None, pathlib.Path(d))
        with tempfile.TemporaryDirectory() as d:
            r = run(kind, rules, pathlib.Path(d))
        r["baseline_orders_placed"] = base["orders_placed"]
        out.append(r)
        print(
            f"{kind:9} {len(rules)} rules: violations {len(r['violations'])}, refused "
            f"{sum(r['rejected_by_endpoint'].values())} replies {r['rejected_by_endpoint']}, "
            f"implausible {r['implausible']}, orders {r['orders_placed']} "
            f"(baseline {base['orders_placed']})"
        )
        for v in r["violations"]:
            print("   ", v)
    print(json.dumps(out))
    return 0 if not any(r["violations"] for r in out) else 1


if __name__ == "__main__":
    raise SystemExit(main())
