#!/usr/bin/env python3
"""The paper fill model's error: spike_bot trades for real on the simulator (its quotes in the
book, filled by the simulator's participants), and every one of its orders is mirrored, the
moment it is placed or cancelled, onto two PaperVenues (spike_paper, the model behind --paper
and replay):

  same market   fed by the same simulator's public book (without our orders) and trades: the
                model's mechanics (queue position, through-trades) on the trades that
                actually filled us;
  twin market   fed by a second simulator with the same seed that never sees our orders, as
                the live market never sees a paper bot's: the model's error as --paper has it
                (a paper quote is invisible, so nobody trades because of it).

Reported per venue: shares and orders filled on paper against the real fills of the same
orders over the same simulated hours.

    python bench/bench_paper.py [--hours 4] [--seed 7] [--spread 0.40] [--json]
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
    cfg = ts.SimConfig(manual_clock=True, start_time=SIM_START + 1, seed=seed)
    sim, twin = ts.start_sim(cfg), ts.start_sim(cfg)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="paper-"))
    h = BotHarness(sim, tmp, base_spread=spread, settle_delay_s=0)
    me = h.address
    # each shadow never runs out of USDC: it measures fills only
    shadows = {"same": (sim, PaperVenue(10**15)), "twin": (twin, PaperVenue(10**15))}
    # real hash -> its paper order (held here: a venue forgets closed orders an hour on)
    mirror: dict[str, dict[str, Any]] = {k: {} for k in shadows}
    seen_trades: dict[tuple[str, str], int] = {}  # (venue, market) -> trades fed
    t0 = time.perf_counter()
    h.start()

    def feed(name: str) -> None:
        """What happened in that market since the last step, against the orders then."""
        s, venue = shadows[name]
        ex = s.app.ex
        for mid in list(ex.current.values()):
            venue.on_book(mid, public_book(ex, mid, me), ex.t)
            trades = list(ex.trades[mid])
            for tr in trades[seen_trades.get((name, mid), 0) :]:
                if me not in (tr["buyer"], tr["seller"]) or name == "same":
                    venue.on_trade(mid, tr["price"], tr["size"], ex.t)
            seen_trades[(name, mid)] = len(trades)

    def mirror_orders() -> None:
        """The bot's step: its new orders mirrored onto both venues, gone ones cancelled."""
        ex = sim.app.ex
        for o in ex.orders.values():
            if o.trader != me:
                continue
            for name, (_, venue) in shadows.items():
                if o.order_hash not in mirror[name] and o.status == "open":
                    m = ex.markets[o.market_id]
                    qm = sb.QuickMarket(o.market_id, "", "BTC", m.strike, m.start, m.end)
                    try:
                        ph = venue.place(qm, o.side, o.outcome, o.price, o.size, o.expiration, ex.t)
                        mirror[name][o.order_hash] = venue.orders[ph]
                    except sb.ExchangeError:
                        mirror[name][o.order_hash] = None
                po = mirror[name].get(o.order_hash)
                if po is not None and o.status != "open" and po.status == "open":
                    po.status = "cancelled"

    try:
        for _ in range(int(hours * 3600 / h.cfg.tick_s)):
            twin.advance(h.cfg.tick_s)  # in lockstep: the same seconds, the same draws
            h.tick(quiet=0.002)
            twin.call(lambda: feed("twin"))
            sim.call(lambda: (feed("same"), mirror_orders()))
        real = {o.order_hash: o for o in sim.app.ex.orders.values() if o.trader == me}
    finally:
        h.stop()
        sim.stop()
        twin.stop()
    out: dict[str, Any] = {"hours": hours, "seed": seed, "base_spread": spread}
    for name in shadows:
        pairs = [(real[r], p) for r, p in mirror[name].items() if p is not None and r in real]
        out[name] = compare(pairs)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def compare(both: list[tuple[Any, Any]]) -> dict[str, Any]:
    """Real fills against paper fills of the same orders."""
    real_sh = sum(r.filled for r, _ in both) / 1e6
    paper_sh = sum(p.filled for _, p in both) / 1e6
    r_any = {id(r) for r, _ in both if r.filled}
    p_any = {id(r) for r, p in both if p.filled}
    exact = sum(1 for r, p in both if r.filled == p.filled)
    return {
        "orders": len(both),
        "real_filled_shares": round(real_sh, 1),
        "paper_filled_shares": round(paper_sh, 1),
        "paper_over_real": round(paper_sh / real_sh, 3) if real_sh else None,
        "orders_filled_real": len(r_any),
        "orders_filled_paper": len(p_any),
        "orders_filled_both": len(r_any & p_any),
        "orders_same_fill": exact,
        "abs_error_shares": round(sum(abs(r.filled - p.filled) for r, p in both) / 1e6, 1),
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
        print(f"{'figure':22s} {'same market':>14s} {'twin market':>14s}")
        for k in r["same"]:
            print(f"{k:22s} {r['same'][k]!s:>14s} {r['twin'][k]!s:>14s}")
        print(f"wall {r['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
