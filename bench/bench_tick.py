#!/usr/bin/env python3
"""Tick cost: time to turn a book snapshot and a position into the orders to send (fair value,
extremes widening, skew, limits, clamp, tick rounding, and the diff against live orders), with
no I/O; p50 and p99 over many ticks. Baseline in the same run: decoding one order-book stream
message (what the feed thread does per update), so the ratio survives a noisy machine.

    python bench/bench_tick.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import spike_bot as sb


class _Sink:
    def on_book(self, mid: str, book: sb.Book) -> None: ...
    def on_trade(self, mid: str, t: dict) -> None: ...
    def on_market(self, qm: dict) -> None: ...
    def on_order_cancelled(self, mid: str, d: dict) -> None: ...
    def on_status(self, c: bool, reason: str = "") -> None: ...
    def on_bad_frame(self, why: str) -> None: ...


def scenarios(n: int, seed: int = 1) -> list[tuple[sb.Book, float, float, float, list]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        mid = rng.uniform(0.05, 0.95)
        bids = tuple(
            (round((mid - 0.01 * (i + 1)) * 1e6), rng.randint(1, 90) * 1_000_000)
            for i in range(rng.randint(1, 8))
            if mid - 0.01 * (i + 1) > 0
        )
        asks = tuple(
            (round((mid + 0.01 * (i + 1)) * 1e6), rng.randint(1, 90) * 1_000_000)
            for i in range(rng.randint(1, 8))
            if mid + 0.01 * (i + 1) < 1
        )
        book = sb.Book(bids, asks, 0.0)
        price = 95_000 * (1 + rng.gauss(0, 0.002))
        inv = rng.uniform(-60, 60)
        left = rng.uniform(0, 900)
        live = [
            sb.LiveOrder(
                f"h{i}", i % 2, 0, round(rng.uniform(0.1, 0.9) * 1e6), 5_000_000, 5_000_000, 0.0
            )
            for i in range(rng.randint(0, 2))
        ]
        out.append((book, price, inv, left, live))
    return out


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    n = 20_000 if a.quick else 100_000
    cfg = sb.Config()
    tol = round(cfg.requote_tolerance * sb.PRICE_SCALE)
    sc = scenarios(n)
    frames = [
        json.dumps(
            {
                "type": "orderbook",
                "marketId": "0x" + "ab" * 32,
                "data": {
                    "bids": [{"price": p, "size": s} for p, s in b.bids],
                    "asks": [{"price": p, "size": s} for p, s in b.asks],
                    "lastUpdate": 1,
                },
            }
        )
        for b, *_ in sc
    ]
    sink = _Sink()
    clock = time.perf_counter_ns
    ticks, parses = [], []
    for (book, price, inv, left, live), frame in zip(sc, frames, strict=True):
        t0 = clock()
        fair = sb.fair_value(book, price, 95_000.0, left, cfg)
        if fair is not None:
            want = sb.quotes(fair, inv, book, left, cfg)
            sb.plan(want, live, tol, 10.0, cfg.order_refresh_s)
        t1 = clock()
        sb.dispatch_frame(frame, sink, 0.0)
        t2 = clock()
        ticks.append((t1 - t0) / 1e6)
        parses.append((t2 - t1) / 1e6)
    ticks.sort()
    parses.sort()
    res = {
        "ticks": n,
        "tick_p50_ms": round(pct(ticks, 0.5), 4),
        "tick_p99_ms": round(pct(ticks, 0.99), 4),
        "frame_parse_p50_ms": round(pct(parses, 0.5), 4),
        "tick_to_parse_ratio_p50": round(pct(ticks, 0.5) / pct(parses, 0.5), 2),
    }
    print(f"{'per tick, no I/O':36} {'p50 ms':>9} {'p99 ms':>9}")
    print(
        f"{'fair + quotes + plan':36} {res['tick_p50_ms']:9.4f} {res['tick_p99_ms']:9.4f}"
        "   (goal p99 < 0.2 ms)"
    )
    print(
        f"{'baseline: decode one book message':36} {pct(parses, 0.5):9.4f} {pct(parses, 0.99):9.4f}"
    )
    print(f"tick cost = {res['tick_to_parse_ratio_p50']}x the decode of one book update")
    if a.json:
        print(json.dumps({"bench": "tick", **res}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
