#!/usr/bin/env python3
"""spike_tools: what is not the bot itself, kept beside it so spike_bot.py stays the file an
operator edits.

    report   the side-by-side comparison of runs over JSON logs (`spike_bot.py report LOG ...`),
             with charts (matplotlib)
    replay   the unchanged engine over a recording with a fill model (`spike_bot.py replay FILE`)
    preflight  every check a live run depends on, and the canary order (`spike_bot.py preflight`)

Both bots' logs and recordings have the same shape; official_spike_bot.py's `report` calls this
module too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from spike_bot import (
    BUY,
    CHAINS,
    ENV_API_KEY_ID,
    ENV_API_PRIVATE_KEY,
    ENV_PRIVATE_KEY,
    ENV_KEYSTORE,
    ENV_KEYSTORE_PASSPHRASE_FILE,
    ENV_PYTH_API_KEY,
    HOW_TO_KEY,
    MIN_EXPIRY_AHEAD_S,
    MIN_PRICE,
    PRICE_SCALE,
    PYTH_FEEDS,
    SIZE_SCALE,
    YES,
    BearerAuth,
    Config,
    ConfigError,
    ExchangeError,
    ExchangeFactory,
    MarketKey,
    Metrics,
    QuickMarket,
    ReplyRejected,
    Secrets,
    Signer,
    TurbineExchange,
    build_parser,
    check_quick_market,
    file_lock_free,
    load_config,
    lock_path,
    parse_split,
    price_consistent,
    read_env_file,
    read_passphrase,
    save_api_credentials,
    spike_exchange,
    unlock_keystore,
)


# =============================================================================================
# 6. TOOLS: the comparison report over JSON logs (`spike_bot.py report LOG [LOG ...]`) and
#    replay of a recording through the unchanged engine (`spike_bot.py replay FILE`).
#    Bad or truncated lines are counted and skipped.
# =============================================================================================
def read_events(path: str) -> tuple[list[dict[str, Any]], int]:
    """Events of one log file and the number of unreadable lines."""
    events, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                e = json.loads(line)
                if not isinstance(e, dict) or "event" not in e:
                    raise ValueError
                if "t" not in e:
                    e["t"] = datetime.fromisoformat(str(e["ts"]).replace("Z", "+00:00")).timestamp()
                float(e["t"])
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            events.append(e)
    return events, bad


def summarize(events: list[dict[str, Any]], bad_lines: int = 0) -> dict[str, Any]:
    """The comparison figures of one run (one log). Times are market time (`t`)."""
    if not events:
        return {"events": 0, "bad_lines": bad_lines}
    by: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by.setdefault(e["event"], []).append(e)
    t0, t1 = float(events[0]["t"]), float(events[-1]["t"])
    minutes = max((t1 - t0) / 60, 1e-9)
    closed = sum(float(e.get("closed_s", 0)) for e in by.get("resumed", []))
    # a fail-closed period still open at the end of the log counts up to the last event
    last_close = None
    for e in events:
        if e["event"] == "fail_closed":
            last_close = float(e["t"])
        elif e["event"] in ("resumed", "start"):
            last_close = None
    if last_close is not None:
        closed += t1 - last_close
    ends = {e["old_market"]: float(e["old_end"]) for e in by.get("rollover", []) if "old_end" in e}
    fills = by.get("fill", [])
    placed = sum(float(e.get("size", 0)) for e in by.get("order_placed", []))
    filled = sum(float(e.get("size", 0)) for e in fills)
    finals = [e for e in events if e["event"] in ("shutdown", "pnl_snapshot")]
    requests_ = sum(int(e.get("requests", 0)) for e in by.get("shutdown", [])) or (
        int(finals[-1].get("requests", 0)) if finals else 0
    )
    series = len((by.get("start") or [{}])[-1].get("markets") or [None])
    markets = len(by.get("rollover", [])) + series
    errors: dict[str, int] = {}
    for e in by.get("error", []):
        errors[str(e.get("kind", "?"))] = errors.get(str(e.get("kind", "?")), 0) + 1
    roll = [float(e["t"]) - float(e["old_end"]) for e in by.get("rollover", []) if "old_end" in e]
    claim_lat = [
        float(e["t"]) - ends[e["market"]] for e in by.get("claim", []) if e.get("market") in ends
    ]
    return {
        "bot": events[0].get("bot", "?"),
        # live, sim, paper, dry_run or replay (the last start's; logs before it: live)
        "mode": (by.get("start") or [{}])[-1].get("mode", "live"),
        "events": len(events),
        "bad_lines": bad_lines,
        "starts": len(by.get("start", [])),
        "run_minutes": round(minutes, 1),
        "uptime_quoting": round(max(0.0, 1 - closed / (minutes * 60)), 4),
        "orders_placed": len(by.get("order_placed", [])),
        "orders_cancelled": len(by.get("order_cancelled", [])),
        "orders_rejected": len(by.get("order_rejected", [])),
        "requests_per_min": round(requests_ / minutes, 1) if finals else None,  # no line yet
        "fills": len(fills),
        "fills_reversed": len(by.get("fill_reversed", [])),
        "cancels_unconfirmed": len(by.get("cancel_unconfirmed", [])),
        "fill_rate_size": round(filled / placed, 5) if placed else 0.0,
        "fill_rate_count": round(len(fills) / len(by["order_placed"]), 5)
        if by.get("order_placed")
        else 0.0,
        "markets": markets,
        "fills_per_market": round(len(fills) / markets, 3),
        # from every fill and settlement line, so right at any moment of a run (the hourly
        # snapshots lag); it ends at the shutdown line's figure (test_tools)
        "realized_pnl": round((pnl_series(events)[1] or [0.0])[-1], 4),
        "unrealized_pnl": round(float(finals[-1].get("unrealized", 0.0)), 4) if finals else None,
        # spec 1.4's maker rebates on our fills, estimated by the bot (never in realized PnL;
        # the exchange pays them daily and publishes no per-wallet figure to reconcile with)
        "maker_rebates_est": round(sum(float(e.get("rebate_est", 0.0)) for e in fills), 4),
        "fees": round(sum(float(e.get("fee", 0.0)) for e in fills), 6),
        "max_inventory": max([abs(float(e.get("position", 0))) for e in fills] or [0.0]),
        "claims": len(by.get("claim", [])),
        "claimed_usdc": round(sum(float(e.get("amount", 0)) for e in by.get("claim", [])), 4),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "fail_closed": len(by.get("fail_closed", [])),
        "fail_closed_s": round(closed, 1),
        "reconnects": sum(
            1 for e in by.get("stream_disconnected", []) if e.get("level") == "WARNING"
        ),
        "rollover_latency_s": round(sum(roll) / len(roll), 2) if roll else None,
        "claim_latency_s": round(sum(claim_lat) / len(claim_lat), 1) if claim_lat else None,
        "per_market": per_market(by, finals[-1] if finals else None),
    }


def per_market(
    by: dict[str, list[dict[str, Any]]], final: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """The figures of each market series (the events' `slot`), PnL from the last snapshot."""
    out: dict[str, dict[str, Any]] = {}

    def row(slot: str) -> dict[str, Any]:
        return out.setdefault(
            slot,
            {
                "orders_placed": 0,
                "fills": 0,
                "fills_reversed": 0,
                "markets": 1,
                "claims": 0,
                "claimed_usdc": 0.0,
                "fail_closed": 0,
                "realized_pnl": 0.0,
                "unrealized_pnl": 0.0,
            },
        )

    for ev, key in (
        ("order_placed", "orders_placed"),
        ("fill", "fills"),
        ("fill_reversed", "fills_reversed"),
        ("rollover", "markets"),
        ("claim", "claims"),
        ("fail_closed", "fail_closed"),
    ):
        for e in by.get(ev, []):
            if e.get("slot"):
                row(str(e["slot"]))[key] += 1
    for e in by.get("claim", []):
        if e.get("slot"):
            r = row(str(e["slot"]))
            r["claimed_usdc"] = round(r["claimed_usdc"] + float(e.get("amount", 0)), 4)
    for slot, v in ((final or {}).get("markets") or {}).items():
        if isinstance(v, dict):
            r = row(str(slot))
            r["realized_pnl"] = round(float(v.get("realized", 0.0)), 4)
            r["unrealized_pnl"] = round(float(v.get("unrealized", 0.0)), 4)
    return out


# -- the verdict: paired per-market comparison ------------------------------------------------
# t quantiles (0.975) for small samples; beyond 30 degrees of freedom a Cornish-Fisher expansion
# of the normal quantile is within 1e-3
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t975(df: int) -> float:
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_interval(xs: list[float]) -> tuple[float, float, float]:
    """Mean and its 95% t interval (lo, hi); with fewer than 2 values the interval is the mean."""
    n = len(xs)
    m = sum(xs) / n if n else 0.0
    if n < 2:
        return m, m, m
    sd = (sum((x - m) ** 2 for x in xs) / (n - 1)) ** 0.5
    half = t975(n - 1) * sd / n**0.5
    return m, m - half, m + half


def market_results(
    events: list[dict[str, Any]], finished_only: bool = True
) -> dict[str, dict[str, Any]]:
    """Each finished market (one with a claim or claim_none line): its PnL (the trading's
    realized PnL, as the last fill or reversal line of that market says it, plus the position
    settled at resolution), fills, notional, the edge captured against the bot's fair value at
    each fill, and the markout of those fills to the outcome (settlement)."""
    rows: dict[str, dict[str, Any]] = {}
    fills: dict[str, list[tuple[float, float]]] = {}

    def row(mid: str) -> dict[str, Any]:
        return rows.setdefault(
            mid,
            {"realized": 0.0, "settled": 0.0, "fills": 0, "notional": 0.0, "edge": 0.0,
             "yes_won": None, "finished": False},
        )

    for e in events:
        ev, mid = e["event"], str(e.get("market") or "")
        if not mid:
            continue
        if ev == "fill":
            r = row(mid)
            size, price = float(e.get("size", 0)), float(e.get("price", 0))
            signed = size if e.get("side") == "BUY" else -size
            r["fills"] += 1
            r["notional"] += size * price
            r["realized"] = float(e.get("realized", r["realized"]))
            if e.get("fair") is not None:
                r["edge"] += signed * (float(e["fair"]) - price)
            fills.setdefault(mid, []).append((signed, price))
        elif ev == "fill_reversed" and "realized" in e:
            row(mid)["realized"] = float(e["realized"])
        elif ev in ("claim", "claim_none"):
            r = row(mid)
            r["settled"] = float(e.get("settled_pnl", 0.0))
            r["yes_won"] = e.get("yes_won")
            r["finished"] = True
    out = {}
    for mid, r in rows.items():
        if finished_only and not r["finished"]:
            continue
        won = r["yes_won"]
        r["pnl"] = round(r["realized"] + r["settled"], 6)
        r["markout"] = (
            round(sum(s * ((1.0 if won else 0.0) - p) for s, p in fills.get(mid, [])), 6)
            if won is not None
            else None
        )
        out[mid] = r
    return out


def pnl_series(events: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Cumulative realized PnL over every market, as of each line that moves it: each market's
    realized PnL (its last fill or reversal line) plus what resolution settled. At the end it
    is the run's realized PnL, the figure the table shows (a test holds the two together)."""
    realized: dict[str, float] = {}
    settled: dict[str, float] = {}
    ts_, ys = [], []
    for e in events:
        mid = str(e.get("market") or "")  # a line without one: the single market of old logs
        if e["event"] in ("fill", "fill_reversed") and "realized" in e:
            realized[mid] = float(e["realized"])
        elif e["event"] in ("claim", "claim_none") and mid:
            settled[mid] = float(e.get("settled_pnl", 0.0))
        else:
            continue
        ts_.append(float(e["t"]))
        ys.append(sum(realized.values()) + sum(settled.values()))
    return ts_, ys


MIN_MARKETS = 5  # fewer finished by both: the verdict pairs minutes instead


def per_minute(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The realized PnL each of two runs made in each whole minute both logs cover."""
    def at_minutes(r: dict[str, Any], starts: list[float]) -> list[float]:
        ts_, ys = pnl_series(r["_events"])
        out, i, cur = [], 0, 0.0
        for edge in starts:
            while i < len(ts_) and ts_[i] <= edge:
                cur = ys[i]
                i += 1
            out.append(cur)
        return out

    ea, eb = a["_events"], b["_events"]
    if not ea or not eb:
        return [], []
    t0 = max(float(ea[0]["t"]), float(eb[0]["t"]))
    t1 = min(float(ea[-1]["t"]), float(eb[-1]["t"]))
    edges = [t0 + 60 * k for k in range(int((t1 - t0) // 60) + 1)]
    ca, cb = at_minutes(a, edges), at_minutes(b, edges)
    return (
        [y - x for x, y in itertools.pairwise(ca)],
        [y - x for x, y in itertools.pairwise(cb)],
    )


def pct(xs: list[float], q: float, digits: int = 3) -> float | None:
    """The q-quantile of xs (nearest rank), rounded; None for no data (bench_soak's too)."""
    return round(sorted(xs)[min(len(xs) - 1, int(len(xs) * q))], digits) if xs else None


def paired(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first two runs compared market by market over the markets both finished: the
    difference of PnL per market (first minus second), its mean and 95% interval, a verdict,
    and where it came from."""
    a, b = runs[0], runs[1]
    ra, rb = market_results(a["_events"]), market_results(b["_events"])
    common = sorted(set(ra) & set(rb))
    diffs = [ra[m]["pnl"] - rb[m]["pnl"] for m in common]
    na, nb = a.get("bot", "first"), b.get("bot", "second")
    unit, n = "a market", len(common)
    if n < MIN_MARKETS:
        # a short run (a rehearsal) finishes too few markets: pair the realized PnL each bot
        # made in each minute both ran instead
        diffs = [x - y for x, y in zip(*per_minute(a, b), strict=True)]
        unit, n = "a minute", len(diffs)
    mean, lo, hi = mean_interval(diffs)
    if n < 2:
        verdict = f"{len(common)} market(s) finished by both and {n} minute(s): too few to compare"
    else:
        real = lo > 0 or hi < 0
        what = f"{n} markets" if unit == "a market" else (
            f"{n} minutes (only {len(common)} market(s) finished by both: realized PnL by the "
            "minute)"
        )
        verdict = (
            f"{na} {mean:+.2f} {unit} against {nb}, 95% interval [{lo:+.2f}, {hi:+.2f}] over "
            f"{what}: " + ("a real difference" if real else "not distinguishable")
        )

    if unit == "a minute":  # nothing finished by both: what each traded so far
        ra, rb = market_results(a["_events"], False), market_results(b["_events"], False)

    def parts(res: dict[str, dict[str, Any]], r: dict[str, Any]) -> dict[str, Any]:
        rows = [res[m] for m in (common if unit == "a market" else res)]
        edge = sum(x["edge"] for x in rows)
        marks = [x["markout"] for x in rows if x["markout"] is not None]
        trips = {  # round trips the engine logged (ms), place and cancel
            what: [float(e["ms"]) for e in r["_events"] if e["event"] == ev and "ms" in e]
            for what, ev in (("place", "order_placed"), ("cancel", "order_cancelled"))
        }
        return {
            "pnl": round(sum(x["pnl"] for x in rows), 4),
            "fills": sum(x["fills"] for x in rows),
            "notional": round(sum(x["notional"] for x in rows), 2),
            "edge_vs_fair": round(edge, 4),
            "markout_to_settlement": round(sum(marks), 4) if marks else None,
            "adverse_selection": round(edge - sum(marks), 4) if marks else None,
            "fail_closed_min": round(r.get("fail_closed_s", 0.0) / 60, 1),
            **{
                f"{what}_ms_{tag}": pct(trips[what], q, 1)
                for what in ("place", "cancel")
                for tag, q in (("p50", 0.5), ("p99", 0.99))
            },
        }

    return {
        "bots": [na, nb],
        "markets": len(common),
        "mean_diff": round(mean, 4),
        "interval": [round(lo, 4), round(hi, 4)],
        "verdict": verdict,
        "unit": unit,
        "per_market_diff": {m: round(ra[m]["pnl"] - rb[m]["pnl"], 6) for m in common},
        "decomposition": {na: parts(ra, a), nb: parts(rb, b)},
    }


def live_changes(r: dict[str, Any]) -> list[tuple[float, str, Any, Any]]:
    """Every setting changed while the bot ran (SIGHUP): (market time, setting, old, new)."""
    out = []
    for e in r["_events"]:
        if e["event"] == "params_reloaded":
            for k, (old, new) in (e.get("changed") or {}).items():
                out.append((float(e["t"]), k, old, new))
    return out


def closed_by_reason(events: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent failed closed, by reason (a period still open counts to the last line)."""
    out: dict[str, float] = {}
    since: dict[str, tuple[float, str]] = {}
    for e in events:
        slot = str(e.get("slot") or "")
        if e["event"] == "fail_closed":
            since.setdefault(slot, (float(e["t"]), str(e.get("reason"))))
        elif e["event"] == "resumed" and slot in since:
            t0, why = since.pop(slot)
            out[why] = out.get(why, 0.0) + float(e["t"]) - t0
    end = float(events[-1]["t"]) if events else 0.0
    for t0, why in since.values():
        out[why] = out.get(why, 0.0) + end - t0
    return {k: round(v, 1) for k, v in sorted(out.items())}


# what the report names when both runs had the same settings: what a reader asks first
SETTINGS_THAT_MATTER = (
    "markets",
    "base_spread",
    "order_size",
    "deep_edge",
    "deep_order_size",
    "max_position",
    "max_loss_per_market",
    "max_loss_per_day",
    "capital_usdc",
)


def print_verdict(runs: list[dict[str, Any]], out: Any) -> dict[str, Any] | None:
    """The report's first screen: which bot did better, was it real, and why; then each
    bot's stability, live changes and the settings in which they differ."""
    cmp = paired(runs) if len(runs) >= 2 else None
    if cmp is not None:
        print(f"== verdict\n{cmp['verdict']}", file=out)
        names = cmp["bots"]
        scope = "the markets both finished" if cmp["unit"] == "a market" else "the whole run"
        print(f"== where it came from (over {scope})", file=out)
        print(f"{'':26}" + "".join(f"{n:>22}" for n in names), file=out)
        for k in cmp["decomposition"][names[0]]:
            cells = [cmp["decomposition"][n][k] for n in names]
            print(f"{k:26}" + "".join(f"{'-' if v is None else v!s:>22}" for v in cells), file=out)
    print("== stability", file=out)
    for r in runs:
        mem = [float(e["rss_mb"]) for e in r["_events"]
               if e["event"] == "pnl_snapshot" and e.get("rss_mb") is not None]
        memory = f"memory {mem[0]:.0f} -> {mem[-1]:.0f} MB (max {max(mem):.0f}), " if mem else ""
        print(
            f"{r.get('bot')}: quoting {100 * r.get('uptime_quoting', 0):.1f}% of "
            f"{r.get('run_minutes')} min, restarts {max(0, r.get('starts', 1) - 1)}, "
            f"reconnects {r.get('reconnects')}, closed by reason "
            f"{closed_by_reason(r['_events']) or '-'}, errors {r.get('errors_by_kind') or '-'}, "
            f"{memory}rollover {r.get('rollover_latency_s')} s, "
            f"claim {r.get('claim_latency_s')} s",
            file=out,
        )
    changes = [(t, r.get("bot"), k, o, n) for r in runs for t, k, o, n in live_changes(r)]
    if changes:
        print("== live changes (SIGHUP)", file=out)
        t0 = min(float(r["_events"][0]["t"]) for r in runs if r["_events"])
        for t, bot, k, o, n in sorted(changes, key=lambda x: x[0]):
            print(f"+{(t - t0) / 60:7.1f} min {bot}: {k} {o} -> {n}", file=out)
    configs = [(r.get("bot"), (r["_start"] or {}).get("config") or {}) for r in runs]
    differ = sorted(
        k for k in set().union(*(c for _, c in configs))
        if len({json.dumps(c.get(k), default=str) for _, c in configs}) > 1
        and k not in ("bot_name", "log_file", "state_file", "metrics_port")
    )
    if differ:
        print("== settings that differ", file=out)
        for k in differ:
            print(f"{k}: " + ", ".join(f"{b} {c.get(k)}" for b, c in configs), file=out)
    elif len(configs) >= 2 and all(c for _, c in configs):
        first = configs[0][1]
        same = ", ".join(f"{k} {first.get(k)}" for k in SETTINGS_THAT_MATTER if k in first)
        print(f"== identical settings ({same})", file=out)
    print("== figures", file=out)
    return cmp


def report(paths: list[str], plot_dir: str | None = None, out: Any = None) -> list[dict[str, Any]]:
    """Print a side-by-side table of the runs in `paths`; optionally write PNG charts."""
    out = out or sys.stdout
    runs = []
    for p in paths:
        events, bad = read_events(p)
        start = next((e for e in reversed(events) if e["event"] == "start"), None)
        runs.append(
            {"log": os.path.basename(p), **summarize(events, bad), "_events": events,
             "_start": start}
        )
    print_verdict(runs, out)
    keys = [k for k in runs[0] if not k.startswith("_") and k not in ("log", "per_market")]
    keys = keys if runs else []
    width = max([24] + [len(r["log"]) + 2 for r in runs])
    print(f"{'':26}" + "".join(f"{r['log']:>{width}}" for r in runs), file=out)
    for k in keys:
        cells = []
        for r in runs:
            v = r.get(k)
            if isinstance(v, dict):
                v = ",".join(f"{a}:{b}" for a, b in sorted(v.items())) or "-"
            cells.append(f"{'-' if v is None else v!s:>{width}}")
        print(f"{k:26}" + "".join(cells), file=out)
    # each market series, when a run quoted more than one (or logged the `slot` field)
    slots = sorted({m for r in runs for m in r.get("per_market", {})})
    for slot in slots:
        print(f"-- {slot}", file=out)
        fields = next(iter(r["per_market"][slot] for r in runs if slot in r["per_market"]))
        for k in fields:
            vals = [r.get("per_market", {}).get(slot, {}).get(k, "-") for r in runs]
            cells = [f"{v!s:>{width}}" for v in vals]
            print(f"  {k:24}" + "".join(cells), file=out)
    if plot_dir:
        write_plots(runs, plot_dir, out)
    return runs


def write_plots(runs: list[dict[str, Any]], plot_dir: str, out: Any) -> list[str]:
    """Cumulative PnL, inventory, fill rate per hour and errors per hour (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install matplotlib)", file=out)
        return []
    os.makedirs(plot_dir, exist_ok=True)
    written = []

    def series(r: dict[str, Any], event: str, key: str) -> tuple[list[float], list[float]]:
        ev = [e for e in r["_events"] if e["event"] == event and key in e]
        t0 = float(r["_events"][0]["t"]) if r["_events"] else 0.0
        return [(float(e["t"]) - t0) / 3600 for e in ev], [float(e[key]) for e in ev]

    def hourly(r: dict[str, Any], pred: Callable[[dict[str, Any]], float]) -> dict[int, float]:
        t0 = float(r["_events"][0]["t"]) if r["_events"] else 0.0
        h: dict[int, float] = {}
        for e in r["_events"]:
            k = int((float(e["t"]) - t0) // 3600)
            h[k] = h.get(k, 0.0) + pred(e)
        return h

    def cumulative(r: dict[str, Any]) -> tuple[list[float], list[float]]:
        ts_, ys = pnl_series(r["_events"])
        t0 = float(r["_events"][0]["t"]) if r["_events"] else 0.0
        return [(t - t0) / 3600 for t in ts_], ys

    charts = {
        "pnl.png": (
            "cumulative realized PnL, all markets (ends at the table's realized_pnl)",
            "USDC",
            cumulative,
        ),
    }
    for name, (title, ylabel, fn) in charts.items():
        fig, ax = plt.subplots(figsize=(8, 3.5))
        for r in runs:
            xs, ys = fn(r)
            ax.step(xs, ys, where="post", label=f"{r.get('bot')} ({r['log']})")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("hours")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(plot_dir, name)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    # inventory: over a day a step line of every fill is a smear; each hour's range (the
    # band between its lowest and highest position after a fill) and its last value read
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for r in runs:
        t0 = float(r["_events"][0]["t"]) if r["_events"] else 0.0
        hours: dict[int, list[float]] = {}
        for e in r["_events"]:
            if e["event"] == "fill" and "position" in e:
                hours.setdefault(int((float(e["t"]) - t0) // 3600), []).append(
                    float(e["position"])
                )
        ks = sorted(hours)
        label = f"{r.get('bot')} ({r['log']})"
        if len(ks) > 1:
            band = ax.fill_between(
                ks, [min(hours[k]) for k in ks], [max(hours[k]) for k in ks], step="post",
                alpha=0.25, label=f"{label}: hourly range",
            )
            ax.step(ks, [hours[k][-1] for k in ks], where="post", color=band.get_facecolor()[0],
                    alpha=1.0, label=f"{label}: end of hour")
        else:
            xs, ys = series(r, "fill", "position")
            ax.step(xs, ys, where="post", label=label)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_title("position of the market traded: each hour's range and its last value")
    ax.set_ylabel("shares (+ YES, - NO)")
    ax.set_xlabel("hours")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(plot_dir, "inventory.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    for name, title, pred in (
        ("fills_per_hour.png", "fills per hour", lambda e: e["event"] == "fill"),
        ("errors_per_hour.png", "error events per hour", lambda e: e["event"] == "error"),
    ):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        for i, r in enumerate(runs):
            h = hourly(r, lambda e, p=pred: 1.0 if p(e) else 0.0)
            ks = sorted(h)
            ax.bar(
                [k + 0.8 * i / max(1, len(runs)) for k in ks],
                [h[k] for k in ks],
                width=0.8 / max(1, len(runs)),
                label=f"{r.get('bot')} ({r['log']})",
            )
        ax.set_title(title)
        ax.set_ylabel("count")
        ax.set_xlabel("hour")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(plot_dir, name)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    print("charts: " + ", ".join(written), file=out)
    return written


# -- replay: the engine over a recording (spike_paper.replay), summarized ---------------------
def replay_run(recs: list[dict[str, Any]], cfg: Config, log_path: str) -> dict[str, Any]:
    """Run the engine over a recording (spike_paper's replay: the paper venue's fill model) and
    summarize its log."""
    import spike_paper  # a sibling, loaded only for replay

    spike_paper.replay(recs, cfg, log_path)
    return summarize(*read_events(log_path))


def read_recording(path: str) -> list[dict[str, Any]]:
    import spike_paper

    return spike_paper.read_recording(path)


def recording_markets(recs: list[dict[str, Any]]) -> list[str]:
    import spike_paper

    return spike_paper.recording_markets(recs)


def parse_assignments(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"expected key=value, got {it!r}")
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def replay_cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="spike_bot.py replay", description="Run the strategy over a recording (--record)."
    )
    ap.add_argument("file", help="a recording made with --record")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for every run (repeat)",
    )
    ap.add_argument("--grid", metavar="KEY=V1,V2,...", help="one run per value of a setting")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        fixed = parse_assignments(a.set)
        names = {f.name for f in dataclasses.fields(Config)}
        grid: list[dict[str, str]] = [{}]
        if a.grid:
            k, _, vals = a.grid.partition("=")
            grid = [{k.strip().replace("-", "_"): v} for v in vals.split(",") if v.strip()]
        for key in {*fixed, *(k for g in grid for k in g)}:
            if key not in names:
                raise ConfigError(f"unknown setting {key!r}")
        if not os.path.isfile(a.file):
            raise ConfigError(f"no such recording: {a.file}")
        recs = read_recording(a.file)
        given = dict(fixed)
        if "markets" not in fixed:  # default: every series the recording holds
            fixed["markets"] = ",".join(recording_markets(recs)) or "BTC:15"
        tmp = tempfile.mkdtemp(prefix="replay-")
        runs = []
        for i, g in enumerate(grid):
            label = ",".join(f"{k}={v}" for k, v in {**given, **g}.items()) or "defaults"
            cfg, _ = load_config({**fixed, **g}, {})
            cfg = dataclasses.replace(
                cfg,
                bot_name=f"replay[{label}]",
                status_every_s=0,
                state_file=os.path.join(tmp, f"state{i}.json"),
            )
            log_path = os.path.join(tmp, f"replay{i}.log")
            replay_run(recs, cfg, log_path)
            runs.append(log_path)
    except ConfigError as e:
        print(f"replay: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps([summarize(*read_events(p)) for p in runs]))
    else:
        report(runs)
    return 0


def report_cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="spike_bot.py report", description="Side-by-side comparison of runs from JSON logs."
    )
    ap.add_argument("logs", nargs="+", help="JSON log files (either bot)")
    ap.add_argument("--plot", metavar="DIR", help="also write PNG charts here (matplotlib)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead")
    a = ap.parse_args(argv)
    missing = [p for p in a.logs if not os.path.isfile(p)]
    if missing:
        print(f"report: no such log file: {missing[0]}", file=sys.stderr)
        return 2
    if a.json:
        runs = []
        for p in a.logs:
            events, bad = read_events(p)
            runs.append({**summarize(events, bad), "_events": events})
        doc: dict[str, Any] = {
            "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
            "live_changes": {r.get("bot"): live_changes(r) for r in runs},
        }
        if len(runs) >= 2:
            doc["comparison"] = paired(runs)
        print(json.dumps(doc))
        return 0
    report(a.logs, a.plot)
    return 0


# =============================================================================================
# PREFLIGHT: is this machine, wallet and config ready for a live run (`spike_bot.py preflight
#    [--canary]`, official_spike_bot.py's too); the canary places, reads back and cancels one
#    order that cannot fill, through the bot's own adapter.
# =============================================================================================
# -- preflight: is this machine, wallet and config ready for a live run? -----------------------
@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warn: bool = False

    def line(self) -> str:
        verdict = "PASS" if self.ok and not self.warn else ("WARN" if self.ok else "FAIL")
        return f"{verdict:4} {self.name:12} {self.detail}" + (f" -> {self.fix}" if self.fix else "")


def canary(ex: Any, qm: QuickMarket, cfg: Config) -> list[Check]:
    """One real order before the long run, through the bot's own adapter (signing, domain,
    fields, permit): a maker BUY YES of one share at the lowest tick (it cannot fill), read
    back, cancelled, checked gone. Whatever happens, and even on Ctrl-C, it leaves no order:
    the market's orders are cancelled and read back until none is left."""
    out: list[Check] = []
    price, size = max(MIN_PRICE, round(cfg.price_tick * PRICE_SCALE)), SIZE_SCALE
    mid = qm.market_id
    # far from the market it cannot fill: the stale-feed firewall (no feed in preflight) is
    # the only check waived
    blocked = ex.gate.blocked
    ex.gate.blocked = lambda market_id: None if market_id == mid else "stale_feed"
    h = ""
    try:
        now = time.time()
        try:
            h = ex.place(qm, BUY, YES, price, size, int(now + MIN_EXPIRY_AHEAD_S + 60), now)
            what = f"BUY YES 1 @ {price / PRICE_SCALE:g}: {h[:18]}"
            out.append(Check("canary place", True, what))
        except ExchangeError as e:
            out.append(Check("canary place", False, f"refused: {e.message[:140]}", CANARY_FIX))
            return out
        try:
            seen = h in {o.order_hash for o in ex.orders(mid, "open")}
            out.append(
                Check("canary read", seen, "open on the exchange" if seen else "not listed")
            )
        except ExchangeError as e:
            out.append(Check("canary read", False, f"orders unreadable: {e.message[:140]}"))
        try:
            ex.cancel(h, mid, BUY)
            out.append(Check("canary cancel", True, "cancel accepted"))
        except ExchangeError as e:
            out.append(Check("canary cancel", False, f"refused: {e.message[:140]}"))
    finally:
        if h:
            gone = _canary_cleanup(ex, mid, h)
            out.append(
                Check(
                    "canary gone",
                    gone,
                    "no order left" if gone else f"{h[:18]} may still be open",
                    "" if gone else f"cancel it: DELETE /api/v1/orders/{h}",
                )
            )
        ex.gate.blocked = blocked
    return out


CANARY_FIX = "compare the order, permit and domain with the spec; the words above are the API's"


def _canary_cleanup(ex: Any, mid: str, h: str) -> bool:
    """Read back until the canary is gone (cancelling the market's orders meanwhile)."""
    for attempt in range(4):
        try:
            if h not in {o.order_hash for o in ex.orders(mid, "open")}:
                return True
            ex.cancel_market(mid)
        except ExchangeError:
            time.sleep(0.5 * (attempt + 1))
    return False


def hermes_check(cfg: Config, sec: Secrets, asset: str) -> Check:
    """Whether Pyth Hermes answers this key with a current price (price_source pyth)."""
    url = cfg.hermes_url.rstrip("/") + "/v2/updates/price/latest"
    headers = {"Authorization": f"Bearer {sec.hermes_api_key}"} if sec.hermes_api_key else {}
    fix = f"set {ENV_PYTH_API_KEY} (Pyth requires one) or --price-source turbine"
    try:
        r = requests.get(
            url, params={"ids[]": "0x" + PYTH_FEEDS[asset]}, headers=headers, timeout=10
        )
        if r.status_code in (401, 403):
            why = f"{cfg.hermes_url} refused the key ({r.status_code})"
            return Check("hermes", False, why, fix)
        r.raise_for_status()
        p = r.json()["parsed"][0]["price"]
        px, age = int(p["price"]) * 10.0 ** int(p["expo"]), time.time() - int(p["publish_time"])
    except (requests.RequestException, ValueError, KeyError, IndexError, TypeError) as e:
        return Check("hermes", False, f"{cfg.hermes_url} unusable ({type(e).__name__})", fix)
    ok = age <= max(60.0, cfg.price_max_age_s)
    return Check("hermes", ok, f"{asset} {px:.2f}, published {age:.0f} s ago", "" if ok else fix)


def preflight(
    cfg: Config,
    sec: Secrets,
    env_file: str,
    record: str | None = None,
    register: bool = True,
    canary_factory: ExchangeFactory | None = None,
) -> list[Check]:
    """Every check a 24-hour live run depends on, each with a verdict and what to do.
    `canary_factory`: also place, read back and cancel one real order through that adapter."""
    import email.utils

    out: list[Check] = []
    signer = None
    if not sec.private_key:
        out.append(Check("key", False, f"no {ENV_PRIVATE_KEY} in {env_file}", HOW_TO_KEY))
    else:
        try:
            signer = Signer(sec.private_key, cfg.chain_id)
            out.append(Check("key", True, f"address {signer.address}"))
        except ConfigError as e:
            out.append(Check("key", False, str(e), f"fix {ENV_PRIVATE_KEY} in {env_file}"))
    ex = TurbineExchange(cfg, signer, None)
    try:
        t0 = time.perf_counter()
        r = ex.session.get(cfg.host + "/health", timeout=cfg.http_timeout_s)
        ms = (time.perf_counter() - t0) * 1000
        if r.status_code >= 400:
            raise requests.RequestException(f"HTTP {r.status_code}")
        out.append(Check("host", True, f"{cfg.host} answers in {ms:.0f} ms"))
    except requests.RequestException as e:
        out.append(
            Check(
                "host",
                False,
                f"{cfg.host} unreachable ({type(e).__name__})",
                "check --host / TURBINE_HOST and the network",
            )
        )
        return out  # nothing else can be checked
    server = (
        email.utils.parsedate_to_datetime(r.headers["Date"]).timestamp()
        if "Date" in r.headers
        else None
    )
    if server is None:
        out.append(Check("clock", True, "the server sends no Date header", warn=True))
    else:
        skew = time.time() - server
        ok = abs(skew) < 120  # bearer tokens are valid +-300 s: keep a wide margin
        out.append(
            Check(
                "clock",
                ok,
                f"local clock {skew:+.0f} s from the server's",
                "" if ok else "sync the clock (chrony / systemd-timesyncd)",
                warn=ok and abs(skew) > 30,
            )
        )
    kid = secret = ""
    authed = False  # credentials that worked for a read
    if signer is not None:
        kid, secret = sec.api_key_id, sec.api_private_key
        if not (kid and secret) and register:
            try:
                kid, secret = ex.register_api_key()
                save_api_credentials(env_file, kid, secret)
                out.append(Check("credentials", True, f"registered and saved to {env_file}"))
            except (ConfigError, ExchangeError) as e:
                out.append(Check("credentials", False, str(e)[:160], "see docs/runbook.md"))
                kid = secret = ""
        if kid and secret:
            try:
                ex.auth = BearerAuth(kid, secret)
                try:
                    open_orders = ex.orders(None, "open")
                except ReplyRejected as e:  # authenticated, but a reply the bot would refuse
                    why = f"refused: {e.message[:150]}"
                    out.append(Check("reply orders", False, why, REPLY_FIX))
                    open_orders = []
                authed = True
                if not any(c.name == "credentials" for c in out):
                    out.append(Check("credentials", True, f"authenticated read ok ({kid})"))
                out.append(
                    Check(
                        "wallet",
                        True,
                        "no open orders"
                        if not open_orders
                        else f"{len(open_orders)} open orders: another bot may be using "
                        "this wallet (one wallet per bot)",
                        warn=bool(open_orders),
                    )
                )
                try:  # no read says whether it is in place: ask (harmless, the bot does too)
                    tx = ex.approve_ctf(time.time())
                    out.append(
                        Check("ctf approval", True, f"settlement is CTF operator (tx {tx[:18]})")
                    )
                except ExchangeError as e:
                    out.append(
                        Check(
                            "ctf approval",
                            False,
                            f"the relayer refused: {e.message[:120]}",
                            "without it no SELL of held shares can settle",
                        )
                    )
            except (ConfigError, ExchangeError) as e:
                out.append(
                    Check(
                        "credentials",
                        False,
                        f"rejected: {str(e)[:120]}",
                        f"restore {ENV_API_KEY_ID}/{ENV_API_PRIVATE_KEY} in {env_file}",
                    )
                )
    keys = cfg.market_keys()
    for key in keys:
        try:
            qm = ex.quick_market(key)
            book = ex.orderbook(qm.market_id, time.time())
        except ExchangeError as e:
            out.append(
                Check(
                    f"market {key}",
                    False,
                    f"quick market or book unreadable: {e}",
                    "check --markets (ASSET:MINUTES of a listed quick market)",
                )
            )
            continue
        default = CHAINS[cfg.chain_id]["settlement"]
        same = qm.settlement.lower() == default.lower()
        if not same or key == keys[0]:
            out.append(
                Check(
                    "contracts",
                    same,
                    f"chain {cfg.chain_id} settlement {qm.settlement}",
                    ""
                    if same
                    else f"the market's settlement differs from {default}: wrong --chain-id?",
                )
            )
        out.append(
            Check(
                f"market {key}",
                True,
                f"{qm.market_id[:12]} ends in {qm.end - time.time():.0f} s; book "
                f"{len(book.bids)} bids / {len(book.asks)} asks",
            )
        )
        out.extend(boundary_checks(ex, qm, key, cfg, authed and signer is not None))
        if key == keys[0]:
            out.extend(drift_checks(ex, qm, key, cfg, authed and signer is not None))
        if canary_factory is not None and key == keys[0]:
            if signer is None or not (authed and sec.private_key):
                out.append(Check("canary", False, "needs the key and working credentials"))
            else:
                trading = canary_factory(cfg, sec.private_key, kid, secret, Metrics(cfg.bot_name))
                out.extend(canary(trading, trading.quick_market(key), cfg))
        pyth = cfg.price_source == "pyth" or (cfg.price_source == "auto" and sec.hermes_api_key)
        if cfg.fair_source in ("model", "blend") and pyth and key == keys[0]:
            out.append(hermes_check(cfg, sec, key.asset))
        if cfg.fair_source in ("model", "blend"):
            try:
                px = ex.asset_price(key.asset)
            except ExchangeError as e:
                px, why = None, f"unreadable: {e.message[:80]}"
            else:
                why = "no price" if px is None else ""
            ok = price_consistent(px, qm.strike, cfg.price_band)
            ratio = f"{px / qm.strike:.6g}" if px and qm.strike else "-"
            out.append(
                Check(
                    f"price {key}",
                    ok,
                    f"{key.asset} price {px if px is not None else '-'} ({why or 'read'}), "
                    f"strike {qm.strike:.2f}, ratio {ratio} (band {cfg.price_band:g})",
                    ""
                    if ok
                    else "the price endpoint's unit differs from the strike's: the model "
                    "would sit out (fair_source=micro quotes without it)",
                )
            )
    if signer is not None:
        try:
            balance, allowance = ex.balances()
            # the most each market can tie up (a full position plus both quotes), plus the
            # day's loss limit: what a day of quoting needs at once. Budgets cap the use
            # below that when the wallet is smaller, so a shortfall is a warning.
            need = len(keys) * (cfg.max_position + 2 * cfg.order_size) * 1.01
            need += cfg.max_loss_per_day
            usable = balance / 1e6
            if cfg.capital_usdc > 0:
                usable = min(usable, cfg.capital_usdc)
            split = parse_split(cfg.capital_split, keys)
            budgets = ", ".join(f"{k} {usable * w:.0f}" for k, w in split.items())
            out.append(
                Check(
                    "balance",
                    usable > 0,
                    f"{balance / 1e6:.2f} USDC; budgets {budgets} (full limits need ~{need:.0f})",
                    "fund the wallet" if usable <= 0 else "",
                    warn=0 < usable < need,
                )
            )
            if cfg.permit_mode == "max":
                ok = allowance >= 2**255 or allowance / 1e6 >= need
                out.append(
                    Check(
                        "allowance",
                        ok,
                        f"standing allowance {allowance / 1e6:.2f}",
                        ""
                        if ok
                        else "start the bot once with --permit-mode max (it "
                        "signs the one-time permit) or use per_order",
                    )
                )
            else:
                out.append(
                    Check("allowance", True, "per-order permits (no standing allowance needed)")
                )
        except ExchangeError as e:
            out.append(Check("balance", False, f"balances unreadable: {e}", ""))
    for label, path in (
        ("log file", cfg.log_file),
        ("state file", cfg.state_file),
        ("record file", record),
    ):
        if not path or path == "-":
            continue
        d = os.path.dirname(os.path.abspath(path))
        if not os.access(d, os.W_OK):
            out.append(Check(label, False, f"{path}: directory not writable", "choose another"))
        elif not file_lock_free(path):
            out.append(
                Check(
                    label,
                    False,
                    f"{path} is in use by another running bot",
                    "give each bot its own --log-file and --state-file",
                )
            )
        else:
            out.append(Check(label, True, f"{path} writable, not in use"))
    return out


def key_at_rest(environ: dict[str, str], env_file: str) -> Check:
    """Where the key lives: a plaintext key in the env file is a warning (a keystore needs no
    plaintext on disk), and any file holding a secret must not be readable by others."""
    files = [env_file]
    for name in (ENV_KEYSTORE, ENV_KEYSTORE_PASSPHRASE_FILE):
        if environ.get(name, "").strip():
            files.append(environ[name].strip())
    loose = []
    for f in files:
        with contextlib.suppress(OSError):
            if os.stat(f).st_mode & 0o077:
                loose.append(f)
    if loose:
        return Check(
            "secrets",
            True,
            f"readable by other users: {', '.join(loose)}",
            f"chmod 600 {' '.join(loose)}",
            warn=True,
        )
    if environ.get(ENV_KEYSTORE, "").strip():
        return Check("secrets", True, f"encrypted keystore {environ[ENV_KEYSTORE].strip()}")
    plain = bool(environ.get(ENV_PRIVATE_KEY, "").strip())
    return Check(
        "secrets",
        True,
        "the private key is plaintext in the env file" if plain else "no key",
        f"`spike_bot.py keystore --env-file {env_file}` writes an encrypted one" if plain else "",
        warn=plain,
    )


def boundary_checks(
    ex: Any, qm: QuickMarket, key: MarketKey, cfg: Config, authed: bool
) -> list[Check]:
    """Every read the bot acts on, once, through the same checks the engine applies (the
    EXCHANGE section's boundary): what the first contact with the real API would refuse is
    named here, before a run depends on it. Read-only."""
    out: list[Check] = []

    def probe(name: str, read: Callable[[], str]) -> None:
        try:
            out.append(Check(f"reply {name}", True, read()))
        except ReplyRejected as e:
            out.append(Check(f"reply {name}", False, f"refused: {e.message[:150]}", REPLY_FIX))
        except ExchangeError as e:
            out.append(Check(f"reply {name}", False, f"unreadable: {e.message[:150]}", REPLY_FIX))

    def quick() -> str:
        px = ex.asset_price(key.asset) if cfg.fair_source in ("model", "blend") else None
        check_quick_market(qm, key, None, time.time(), px, cfg.price_band)
        return f"{key}: asset, interval, end and strike as asked"

    probe(f"quick_market {key}", quick)
    if authed:
        probe(f"orders {key}", lambda: f"{len(ex.orders(qm.market_id, None))} rows, all ours")
        probe(f"positions {key}", lambda: "YES {} / NO {} (u6)".format(*ex.position(qm)))
        if hasattr(ex, "claim_data") and qm.contract:
            probe("claim_data", lambda: f"{len(ex.claim_data([qm.contract]))} rows by contract")
    probe("failed_trades", lambda: f"{len(ex.failed_trades())} rows")
    return out


def drift_checks(
    ex: TurbineExchange, qm: QuickMarket, key: MarketKey, cfg: Config, authed: bool
) -> list[Check]:
    """The live API's replies against the spec's wire rules (spike_wire, the rules
    test_sim_schema.py holds the simulator to): every field missing, of another type or
    scale, or not in the spec is one `drift` line (field, expected, seen), so the first
    morning shows what the real API does differently. Read-only; a difference is a
    warning (the boundary checks above decide what the bot refuses)."""
    import spike_wire

    me = ex.address
    mid = qm.market_id

    def rows(at: str, most: int = 3) -> Callable[[Any], list[Any]]:
        return lambda d: (d.get(at) if isinstance(d, dict) else d)[:most] if d else []

    def level_rows(d: Any) -> list[Any]:
        return (d.get("bids") or [])[:2] + (d.get("asks") or [])[:2] if isinstance(d, dict) else []

    def body(d: Any) -> list[Any]:
        return [d]

    def one(at: str) -> Callable[[Any], list[Any]]:
        return lambda d: [d.get(at)] if isinstance(d, dict) else [d]

    # endpoint, path, query, bearer token, [(object kind, where its rows are)]
    reads: list[tuple[str, str, dict[str, Any], bool, list[tuple[str, Any]]]] = [
        ("quick_market", f"/api/v1/quick-markets/{key.asset}", {"interval": key.interval},
         False, [("QuickMarketReply", body), ("QuickMarket", one("quickMarket"))]),
        ("orderbook", f"/api/v1/orderbook/{mid}", {}, False,
         [("OrderBook", body), ("Level", level_rows)]),
        ("trades", f"/api/v1/trades/{mid}", {"limit": 5}, False, [("Trade", rows("trades"))]),
        ("stats", f"/api/v1/stats/{mid}", {}, False, [("MarketStats", body)]),
        ("price", f"/api/v1/quick-markets/{key.asset}/price", {}, False, [("AssetPrice", body)]),
        ("resolution", f"/api/v1/resolution/{mid}", {}, False, [("Resolution", body)]),
        ("failed_trades", "/api/v1/failed-trades", {}, False,
         [("FailedTrade", rows("failedTrades"))]),
    ]
    if me:
        reads += [
            ("balances", f"/api/v1/users/{me}/balances", {"chain_id": cfg.chain_id}, False,
             [("Balances", body)]),
            ("nonce", f"/api/v1/contracts/nonce/{CHAINS[cfg.chain_id]['usdc']}/{me}",
             {"chain_id": cfg.chain_id}, False, [("Nonce", body)]),
        ]
    if authed:
        reads += [
            ("orders", "/api/v1/orders", {"trader": me, "market_id": mid}, True,
             [("Order", rows("orders"))]),
            ("positions", f"/api/v1/positions/{qm.contract or mid}", {"user": me}, True,
             [("Position", lambda d: rows("positions")(d) if "positions" in d else [d])]),
        ]
        if qm.contract:
            reads.append(
                ("claim_data", f"/api/v1/users/{me}/claim-data",
                 {"chain_id": cfg.chain_id, "markets": qm.contract}, True,
                 [("ClaimData", rows("markets"))])
            )  # fmt: skip
    out: list[Check] = []
    for name, path, params, auth, kinds in reads:
        try:
            d = ex._raw("GET", path, params=params or None, auth=auth)
        except ExchangeError as e:
            out.append(Check("drift", True, f"{name}: not read ({e.message[:80]})", warn=True))
            continue
        lines = []
        for kind, where in kinds:
            try:
                objs = where(d)
            except (AttributeError, TypeError, KeyError):
                objs = [d]
            for obj in objs or []:
                lines += [(kind, *x) for x in spike_wire.diff(kind, obj)]
        for kind, fld, want, seen in dict.fromkeys(lines):  # once per field, not per row
            out.append(
                Check("drift", True, f"{name} {kind}.{fld}: expected {want}, seen {seen}",
                      warn=True)
            )
        if not lines:
            out.append(Check("drift", True, f"{name}: as the spec says"))
    return out


REPLY_FIX = (
    "the API differs from what the bot was built against: see docs/how-it-works.md, "
    "'What the bot refuses to believe'"
)


def preflight_cli(
    argv: list[str], base: Config | None = None, factory: ExchangeFactory | None = None
) -> int:
    ap = build_parser(base)
    ap.prog += " preflight"
    ap.add_argument(
        "--canary",
        action="store_true",
        help="also place, read back and cancel one order that cannot fill (1 share at the "
        "lowest tick)",
    )
    a = ap.parse_args(argv)
    try:
        environ = {**read_env_file(a.env_file), **os.environ}
        cfg, sec = load_config(vars(a), environ, base)
        sec = unlock_keystore(sec, environ)
    except ConfigError as e:
        print(f"FAIL config       {e}")
        return 2
    print(key_at_rest(environ, a.env_file).line())
    canary_factory = (factory or spike_exchange) if a.canary else None
    checks = preflight(cfg, sec, a.env_file, a.record, canary_factory=canary_factory)
    for c in checks:
        print(c.line())
    bad = [c for c in checks if not c.ok]
    print(f"preflight: {'all checks pass' if not bad else f'{len(bad)} check(s) failed'}")
    return 0 if not bad else 1


# -- keystore: the key at rest, encrypted (`spike_bot.py keystore`) -------------------------------
def keystore_cli(argv: list[str]) -> int:
    """Encrypt the env file's TURBINE_PRIVATE_KEY into an eth-account keystore (scrypt) and
    say what to change in the env file; the key itself is never printed."""
    ap = argparse.ArgumentParser(
        prog="spike_bot.py keystore",
        description="Write the env file's private key as an encrypted keystore (scrypt), so a "
        "long run keeps no plaintext key on disk.",
    )
    ap.add_argument("--env-file", default=".env", help="the env file holding the key")
    ap.add_argument("--out", default="spike_key.json", help="the keystore file to write")
    ap.add_argument(
        "--passphrase-file", help="read the passphrase from this file instead of typing it"
    )
    a = ap.parse_args(argv)
    import getpass

    from eth_account import Account

    key = read_env_file(a.env_file).get(ENV_PRIVATE_KEY, "").strip()
    if not key:
        print(f"keystore: no {ENV_PRIVATE_KEY} in {a.env_file}", file=sys.stderr)
        return 2
    if a.passphrase_file:
        try:
            passphrase = read_passphrase(a.passphrase_file, "--passphrase-file")
        except ConfigError as e:
            print(f"keystore: {e}", file=sys.stderr)
            return 2
    else:
        passphrase = getpass.getpass("new passphrase: ")
        if passphrase != getpass.getpass("again: "):
            print("keystore: the two passphrases differ", file=sys.stderr)
            return 2
    if len(passphrase) < 8:
        print("keystore: use a passphrase of 8 characters or more", file=sys.stderr)
        return 2
    try:
        store = Account.encrypt(key, passphrase)
    except (ValueError, TypeError):
        print(f"keystore: {ENV_PRIVATE_KEY} is not a valid key", file=sys.stderr)
        return 2
    fd = os.open(a.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(store, fh)
    print(
        f"wrote {a.out} (address 0x{store['address']}). In {a.env_file}: set "
        f"{ENV_KEYSTORE}={a.out} (and {ENV_KEYSTORE_PASSPHRASE_FILE}=<a file only you can "
        f"read>, or type the passphrase at each start), then delete the {ENV_PRIVATE_KEY} line."
    )
    return 0


# -- reload: SIGHUP to the running bot (`spike_bot.py reload`) -----------------------------------
def reload_cli(argv: list[str], base: Config | None = None) -> int:
    """Find the bot that runs on these files (the pid in its state file's lock) and send it
    SIGHUP: it re-reads the env file and applies the tunable settings, printing what changed."""
    ap = build_parser(base)
    ap.prog += " reload"
    a = ap.parse_args(argv)
    try:
        environ = {**read_env_file(a.env_file), **os.environ}
        cfg, _ = load_config(vars(a), environ, base)
    except ConfigError as e:
        print(f"reload: {e}", file=sys.stderr)
        return 2
    lock = lock_path(cfg.state_file)
    if file_lock_free(cfg.state_file):
        print(f"reload: no bot is running on {cfg.state_file}", file=sys.stderr)
        return 1
    try:
        with open(lock, encoding="utf-8") as fh:
            pid = int(fh.read().split()[0])
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError) as e:
        print(f"reload: cannot signal the bot from {lock} ({type(e).__name__})", file=sys.stderr)
        return 1
    print(f"reload: SIGHUP sent to pid {pid}; its pane and log (params_reloaded) say what changed")
    return 0
