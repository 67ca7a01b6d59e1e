#!/usr/bin/env python3
"""The paper fill model's error: spike_bot trades for real on the simulator (its quotes in the
book, filled by the simulator's participants), and every one of its orders is mirrored onto a
PaperVenue (spike_paper, the model behind --paper and replay) that sees what a paper bot would
see: the public book without our orders and every public trade. Reported: shares and orders
filled for real against on paper, for the same quotes over the same simulated hours.

    python bench/bench_paper.py [--hours 4] [--seed 7] [--spread 0.40] [--json]

The shadow is exact about the quotes, not about the market's reaction to them: the informed
takers in the simulator trade against our real orders because they are there. A paper bot's
quotes are invisible, so on the live market a paper fill can also be a trade that would not
have happened; this bench measures the model on the trades that did.
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

import spike_bot as sb
import turbine_sim as ts
from harness import SIM_START, BotHarness
from spike_paper import PaperVenue


def public_book(ex: Any, mid: str, me: str) -> sb.Book:
    """The simulator's YES book without our orders, as levels (what a paper bot sees)."""
    book = ex.books[(mid, ts.YES)]

    def agg(orders: list[Any]) -> tuple[tuple[int, int], ...]:
        out: dict[int, int] = {}
        for o in orders:
            if o.trader != me and o.remaining > 0:
                out[o.price] = out.get(o.price, 0) + o.remaining
        return tuple(out.items())

    return sb.Book(agg(book.bids), agg(book.asks), ex.t)


def run(hours: float, seed: int, spread: float) -> dict[str, Any]:
    sim = ts.start_sim(ts.SimConfig(manual_clock=True, start_time=SIM_START + 1, seed=seed))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="paper-"))
    h = BotHarness(sim, tmp, base_spread=spread, settle_delay_s=0)
    venue = PaperVenue(10**15)  # the shadow never runs out of USDC: it measures fills only
    mirror: dict[str, str] = {}  # real order hash -> paper hash
    seen_trades: dict[str, int] = {}  # market -> trades fed
    me = h.address
    t0 = time.perf_counter()
    h.start()

    def shadow() -> None:
        ex = sim.app.ex
        now = ex.t
        # 1. what happened in the market since the last step, against the orders then
        for mid in list(ex.current.values()):
            venue.on_book(mid, public_book(ex, mid, me), now)
            trades = list(ex.trades[mid])
            for tr in trades[seen_trades.get(mid, 0) :]:
                venue.on_trade(mid, tr["price"], tr["size"], now)
            seen_trades[mid] = len(trades)
        # 2. the bot's step: new orders mirrored, gone ones cancelled
        for o in ex.orders.values():
            if o.trader != me:
                continue
            ph = mirror.get(o.order_hash)
            if ph is None and o.status == "open":
                m = ex.markets[o.market_id]
                qm = sb.QuickMarket(o.market_id, "", "BTC", m.strike, m.start, m.end)
                try:
                    mirror[o.order_hash] = venue.place(
                        qm, o.side, o.outcome, o.price, o.size, o.expiration, now
                    )
                except sb.ExchangeError:
                    mirror[o.order_hash] = ""
            elif ph and o.status != "open" and venue.orders[ph].status == "open":
                venue.orders[ph].status = "cancelled"

    try:
        for _ in range(int(hours * 3600 / h.cfg.tick_s)):
            h.tick(quiet=0.002)
            sim.call(shadow)
        real = {o.order_hash: o for o in sim.app.ex.orders.values() if o.trader == me}
    finally:
        h.stop()
        sim.stop()
    both = [(real[r], venue.orders[p]) for r, p in mirror.items() if p and r in real]
    real_sh = sum(r.filled for r, _ in both) / 1e6
    paper_sh = sum(p.filled for _, p in both) / 1e6
    r_any = {id(r) for r, _ in both if r.filled}
    p_any = {id(r) for r, p in both if p.filled}
    exact = sum(1 for r, p in both if r.filled == p.filled)
    return {
        "hours": hours,
        "seed": seed,
        "base_spread": spread,
        "orders": len(both),
        "real_filled_shares": round(real_sh, 1),
        "paper_filled_shares": round(paper_sh, 1),
        "paper_over_real": round(paper_sh / real_sh, 3) if real_sh else None,
        "orders_filled_real": len(r_any),
        "orders_filled_paper": len(p_any),
        "orders_filled_both": len(r_any & p_any),
        "orders_same_fill": exact,
        "abs_error_shares": round(sum(abs(r.filled - p.filled) for r, p in both) / 1e6, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--spread", type=float, default=0.40, help="the bot's base_spread")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = run(a.hours, a.seed, a.spread)
    if a.json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            print(f"{k:22s} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
