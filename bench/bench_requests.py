#!/usr/bin/env python3
"""Request cost: requests per simulated minute over a calm hour (10% annual vol) and a volatile
one (the simulator's BTC-like 55%), for spike_bot against a baseline in the same run that
cancels and replaces every quote every tick (tolerance 0, refresh one tick). Reported for all
requests and for order management alone (places and cancels): both bots pay the same polling
schedule (positions 5 s, market 10 s, claims 30 s, price for the model 2 s).

    python bench/bench_requests.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench_soak import run_day

REPLACE_EVERY_TICK = {"requote_tolerance": 0.0, "order_refresh_s": 2.0}
STREAMED_PRICE = {"price_source": "pyth", "hermes_url": "<sim>"}  # the simulator's Hermes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="half an hour each")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    hours = 0.5 if a.quick else 1.0
    rows = {}
    for regime, vol in (("calm", 0.10), ("volatile", 0.55)):
        kw = {"annual_vol": vol}
        rows[regime] = (
            run_day(hours, a.seed, None, "spike_bot", kw),
            run_day(hours, a.seed, REPLACE_EVERY_TICK, "replace_every_tick", kw),
        )
    print(f"{'requests per simulated minute':32}{'spike_bot':>12}{'baseline':>12}{'ratio':>8}")
    res = {}
    for regime, (ours, base) in rows.items():
        for key, name in (("requests_per_min", "all"), ("order_requests_per_min", "orders")):
            ratio = base[key] / max(ours[key], 0.1)
            res[f"{regime}_{name}_ours"] = ours[key]
            res[f"{regime}_{name}_baseline"] = base[key]
            res[f"{regime}_{name}_reduction"] = round(ratio, 1)
            print(f"{regime + ', ' + name:32}{ours[key]:12.1f}{base[key]:12.1f}{ratio:7.1f}x")
    # the oracle's price streamed (issue 15) against the same bot polling it, same seed
    streamed = run_day(hours, a.seed, STREAMED_PRICE, "spike_bot_pyth", {"annual_vol": 0.10})
    poll = rows["calm"][0]
    res["calm_all_streamed"] = streamed["requests_per_min"]
    res["calm_streamed_vs_poll"] = round(streamed["requests_per_min"] / poll["requests_per_min"], 3)
    res["price_age_p50_poll"], res["price_age_p99_poll"] = (
        poll["price_age_p50_s"],
        poll["price_age_p99_s"],
    )
    res["price_age_p50_stream"], res["price_age_p99_stream"] = (
        streamed["price_age_p50_s"],
        streamed["price_age_p99_s"],
    )
    print(
        f"{'calm, all, price streamed':32}{streamed['requests_per_min']:12.1f}"
        f"{poll['requests_per_min']:12.1f}  (baseline here: the same bot polling the price)"
    )
    print(
        f"model price age after a tick, p50/p99 s: stream {res['price_age_p50_stream']}/"
        f"{res['price_age_p99_stream']}, poll {res['price_age_p50_poll']}/"
        f"{res['price_age_p99_poll']}"
    )
    res["calm_request_reduction"] = res["calm_all_reduction"]
    res["calm_order_request_reduction"] = res["calm_orders_reduction"]
    if a.json:
        print(json.dumps({"bench": "requests", **res}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
