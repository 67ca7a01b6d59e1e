#!/usr/bin/env python3
"""Each turbine_sim market preset sampled as the real venue's books were (the current BTC:15
market's YES book every simulated second, top five levels, no client), beside the real venue's
figures (Polymarket BTC 15-minute markets; SimConfig's deep settings cite the sources). Says
what kind of market each preset is: thin (classic, realistic) or deep.

    python bench/bench_presets.py [--hours 2] [--seeds 2001,2002,2003] [--json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import turbine_sim as ts

LABELS = {
    "spread_median": "quoted spread, median",
    "spread_p90": "quoted spread, p90",
    "spread_one_tick_share": "share of seconds one tick wide",
    "spread_last60_mean": "spread, last 60 s: mean",
    "spread_last60_p90": "spread, last 60 s: p90",
    "top5_depth_median": "top five levels a side, median",
    "top5_depth_p10": "top five levels a side, p10",
    "top5_depth_p90": "top five levels a side, p90",
    "top5_depth_last60_median": "top five levels, last 60 s",
    "trades_per_market": "trades per market",
    "volume_usd_per_market_approx": "volume per market (USD, at 0.5)",
    "top_changes_per_min": "top of book changes a minute",
    "mid_move_first5min": "mid move a second, first 5 min",
    "mid_move_last60s": "mid move a second, last 60 s",
    "btc_1s_return_sd_bp": "BTC 1 s log-return sd (bp)",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--seeds", default="2001,2002,2003")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    seeds = [int(x) for x in a.seeds.split(",") if x]
    t0 = time.perf_counter()
    facts = {
        p: ts.summarize_facts([ts.book_facts(p, s, a.hours) for s in seeds]) for p in ts.PRESETS
    }
    cols = ["real venue", *ts.PRESETS]
    print(f"seeds {seeds}, {a.hours:g} h each, BTC:15 with participants, no client")
    print(f"{'figure':34}" + "".join(f"{c:>14}" for c in cols))
    for k, label in LABELS.items():
        vals = [ts.REAL_VENUE_FACTS[k], *(facts[p][k] for p in ts.PRESETS)]
        print(f"{label:34}" + "".join(f"{v!s:>14}" for v in vals))
    print("both sides quoted, by seconds left (>600 / 300-600 / 60-300 / 10-60 / <10):")
    for name, d in [("real venue", ts.REAL_VENUE_FACTS), *facts.items()]:
        b = d["both_sides_quoted"]
        print(f"  {name:12} " + " / ".join(f"{b[k]:.1%}" for k in b))
    print(f"wall {time.perf_counter() - t0:.1f} s")
    if a.json:
        print(json.dumps({"bench": "presets", "seeds": seeds, "hours": a.hours, **facts}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
