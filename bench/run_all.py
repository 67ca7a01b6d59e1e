#!/usr/bin/env python3
"""Run every benchmark and print one summary; the last line is one JSON object.

    python bench/run_all.py [--quick] [--json]

Each figure is measured against a baseline in the same run (see each script's docstring):
signing against the official SDK and a bare secp256k1 signature; the tick against decoding one
book message; reaction against a pure 2 s tick; fail-closed latency in a REST outage against
the same with REST healthy; requests against cancel-and-replace every tick;
trading quality against plain symmetric mid quoting. In --quick mode the soak figures come from
the quality run's spike_bot row (the same bot, defaults, participants on).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent


def run(script: str, quick: bool) -> dict[str, Any]:
    args = [sys.executable, str(HERE / script), "--json"] + (["--quick"] if quick else [])
    t = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True, check=False, timeout=3600)
    el = time.perf_counter() - t
    if p.returncode != 0:
        print(f"{script} failed ({p.returncode}):\n{p.stderr[-2000:]}", file=sys.stderr)
        return {"_failed": True, "_seconds": el}
    print(p.stdout.rsplit("\n", 2)[0] if p.stdout.count("\n") > 1 else "", flush=True)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["_seconds"] = round(el, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every bench in its quick mode")
    ap.add_argument("--json", action="store_true", help="(the last line is always JSON)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    r: dict[str, dict[str, Any]] = {}
    for name, script in (
        ("sign", "bench_sign.py"),
        ("tick", "bench_tick.py"),
        ("reaction", "bench_reaction.py"),
        ("requests", "bench_requests.py"),
        ("quality", "bench_quality.py"),
        ("sim", "bench_sim.py"),
        ("markets", "bench_markets.py"),
        ("outage", "bench_outage.py"),
    ):
        print(f"== {script}", flush=True)
        r[name] = run(script, a.quick)
    if not a.quick:
        print("== bench_soak.py", flush=True)
        r["soak"] = run("bench_soak.py", False)
    soak = r.get("soak") or r["quality"]
    summary = {
        "sign_speedup_vs_sdk": r["sign"].get("sign_speedup_vs_sdk"),
        "sign_ratio_to_floor": r["sign"].get("sign_ratio_to_floor"),
        "tick_p99_ms": r["tick"].get("tick_p99_ms"),
        "reaction_p50_ms": r["reaction"].get("reaction_p50_ms"),
        "reaction_p99_ms": r["reaction"].get("reaction_p99_ms"),
        "calm_request_reduction": r["requests"].get("calm_request_reduction"),
        "calm_order_request_reduction": r["requests"].get("calm_order_request_reduction"),
        "soak_rss_growth_mb": soak.get("rss_growth_mb"),
        "soak_orders_left_after_rollover": soak.get("orders_left_after_rollover"),
        "soak_errors": soak.get("errors"),
        "pnl_per_market_usdc": r["quality"].get("pnl_per_market_usdc"),
        "baseline_pnl_per_market_usdc": r["quality"].get("baseline_pnl_per_market_usdc"),
        "fill_rate": r["quality"].get("fill_rate"),
        "markout_60s": r["quality"].get("markout_60s"),
        "sim_order_posts_per_s": r["sim"].get("posts_order_posts_per_s"),
        "sim_day_wall_s": r["sim"].get("day_wall_s_per_24h"),
        "markets_request_ratio_3_vs_1": r["markets"].get("markets_request_ratio_3_vs_1"),
        "markets_errors": r["markets"].get("three_markets_errors"),
        "outage_fail_closed_s_max": max(
            (r["outage"].get(o, {}).get("latency_s_max", 0.0) for o in ("http_500", "hang")),
            default=None,
        ),
        "outage_false_cancels": sum(
            r["outage"].get(o, {}).get("false_cancels", 0) for o in ("none", "http_500", "hang")
        ),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    goals = [
        ("sign_speedup_vs_sdk", ">=", 10),
        ("sign_ratio_to_floor", "<=", 2),
        ("tick_p99_ms", "<", 0.2),
        ("reaction_p50_ms", "<", 25),
        ("calm_request_reduction", ">=", 10),
        ("calm_order_request_reduction", ">=", 10),
        ("soak_rss_growth_mb", "<", 10),
        ("soak_orders_left_after_rollover", "==", 0),
        ("soak_errors", "==", 0),
        ("sim_order_posts_per_s", ">=", 500),
        ("sim_day_wall_s", "<", 120),
        ("markets_request_ratio_3_vs_1", "<", 3),
        ("markets_errors", "==", 0),
        ("outage_fail_closed_s_max", "<=", 2.0),  # one tick
        ("outage_false_cancels", "==", 0),
    ]
    ops = {
        ">=": lambda x, y: x >= y,
        "<=": lambda x, y: x <= y,
        "<": lambda x, y: x < y,
        "==": lambda x, y: x == y,
    }
    print("\n== summary" + (" (quick)" if a.quick else ""))
    for k, v in summary.items():
        goal = next((g for g in goals if g[0] == k), None)
        verdict = ""
        if goal and isinstance(v, int | float):
            verdict = f"goal {goal[1]} {goal[2]}: " + (
                "met" if ops[goal[1]](v, goal[2]) else "NOT met"
            )
        print(f"{k:34} {v!s:>12}  {verdict}")
    print(json.dumps(summary))
    return 0 if not any(x.get("_failed") for x in r.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
