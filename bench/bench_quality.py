#!/usr/bin/env python3
"""Trading quality on the same seeded simulated days: spike_bot's defaults against a plain
symmetric mid-quoting baseline (same spread and size; book mid as fair value; no skew, no
extremes widening, no T-minus rules). PnL, fill rate, markout (the simulator's true probability
30 s and 60 s after each fill, against the fill price), max inventory. A worse PnL than the
baseline is a finding, reported as is.

    python bench/bench_quality.py [--hours 24] [--quick] [--json] [--seed 11]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench_soak import run_day

BASELINE = {
    "fair_source": "mid",
    "skew_factor": 0.0,
    "extreme_widen": 0.0,
    "tminus_widen_s": 0.0,
    "tminus_reduce_only_s": 0.0,
    "tminus_pull_s": 0.0,
}
KEYS = [
    "markets",
    "fills",
    "fill_rate",
    "filled_shares",
    "pnl_usdc",
    "pnl_per_market_usdc",
    "markout_30s",
    "markout_60s",
    "max_inventory",
    "orders",
    "requests_per_min",
    "errors",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--quick", action="store_true", help="1 simulated hour each")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    hours = 1.0 if a.quick else a.hours
    ours = run_day(hours, a.seed, None, "spike_bot")
    base = run_day(hours, a.seed, BASELINE, "mid_baseline")
    print(f"{'figure':24}{'spike_bot':>16}{'mid_baseline':>16}")
    for k in KEYS:
        print(f"{k:24}{ours[k]!s:>16}{base[k]!s:>16}")
    if a.json:
        print(
            json.dumps(
                {
                    "bench": "quality",
                    **{k: ours[k] for k in KEYS},
                    "baseline_pnl_per_market_usdc": base["pnl_per_market_usdc"],
                    "baseline_fill_rate": base["fill_rate"],
                    "baseline_markout_60s": base["markout_60s"],
                    "rss_growth_mb": ours["rss_growth_mb"],
                    "orders_left_after_rollover": ours["orders_left_after_rollover"],
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
