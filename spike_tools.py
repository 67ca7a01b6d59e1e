#!/usr/bin/env python3
"""spike_tools: what is not the bot itself, kept beside it so spike_bot.py stays the file an
operator edits.

    report   the side-by-side comparison of runs over JSON logs (`spike_bot.py report LOG ...`),
             with charts (matplotlib)
    replay   the unchanged engine over a recording with a fill model (`spike_bot.py replay FILE`)

Both bots' logs and recordings have the same shape; official_spike_bot.py's `report` calls this
module too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spike_bot import (
    BUY,
    SELL,
    SIZE_SCALE,
    Book,
    Bot,
    CallPolicy,
    ClaimResult,
    Config,
    ConfigError,
    EventLog,
    ExchangeError,
    FailedFill,
    MarketKey,
    Metrics,
    OrderGate,
    OrderInfo,
    QuickMarket,
    StreamHandler,
    load_config,
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
        "events": len(events),
        "bad_lines": bad_lines,
        "starts": len(by.get("start", [])),
        "run_minutes": round(minutes, 1),
        "uptime_quoting": round(max(0.0, 1 - closed / (minutes * 60)), 4),
        "orders_placed": len(by.get("order_placed", [])),
        "orders_cancelled": len(by.get("order_cancelled", [])),
        "orders_rejected": len(by.get("order_rejected", [])),
        "requests_per_min": round(requests_ / minutes, 1),
        "fills": len(fills),
        "fills_reversed": len(by.get("fill_reversed", [])),
        "cancels_unconfirmed": len(by.get("cancel_unconfirmed", [])),
        "fill_rate_size": round(filled / placed, 5) if placed else 0.0,
        "fill_rate_count": round(len(fills) / len(by["order_placed"]), 5)
        if by.get("order_placed")
        else 0.0,
        "markets": markets,
        "fills_per_market": round(len(fills) / markets, 3),
        "realized_pnl": round(float(finals[-1].get("realized", 0.0)), 4) if finals else 0.0,
        "unrealized_pnl": round(float(finals[-1].get("unrealized", 0.0)), 4) if finals else 0.0,
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


def report(paths: list[str], plot_dir: str | None = None, out: Any = None) -> list[dict[str, Any]]:
    """Print a side-by-side table of the runs in `paths`; optionally write PNG charts."""
    out = out or sys.stdout
    runs = []
    for p in paths:
        events, bad = read_events(p)
        runs.append({"log": os.path.basename(p), **summarize(events, bad), "_events": events})
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

    charts = {
        "pnl.png": (
            "cumulative realized PnL (USDC)",
            lambda r: (
                series(r, "pnl_snapshot", "realized")
                if any(e["event"] == "pnl_snapshot" for e in r["_events"])
                else series(r, "fill", "realized")
            ),
        ),
        "inventory.png": (
            "inventory after each fill (shares)",
            lambda r: series(r, "fill", "position"),
        ),
    }
    for name, (title, fn) in charts.items():
        fig, ax = plt.subplots(figsize=(8, 3.5))
        for r in runs:
            xs, ys = fn(r)
            ax.step(xs, ys, where="post", label=f"{r.get('bot')} ({r['log']})")
        ax.set_title(title)
        ax.set_xlabel("hours")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(plot_dir, name)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    for name, title, pred in (
        ("fill_rate_per_hour.png", "fills per hour", lambda e: e["event"] == "fill"),
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
        ax.set_xlabel("hour")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(plot_dir, name)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    print("charts: " + ", ".join(written), file=out)
    return written



# -- replay: the engine, unchanged, over a recording -------------------------------------------
class ReplayClock:
    """Market time set by the replay driver."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def wait(self, event: threading.Event | None, seconds: float) -> bool:
        return False  # the driver calls step() itself


class ReplayStream:
    """The driver pushes recorded messages into the handler the engine registered."""

    connected = True

    def __init__(self) -> None:
        self.handler: StreamHandler | None = None

    def start(self, handler: StreamHandler) -> None:
        self.handler = handler
        handler.on_status(True)

    def subscribe(self, market_id: str) -> None:
        return None

    def unsubscribe(self, market_id: str) -> None:
        return None

    def reconnect(self, reason: str) -> None:
        return None  # a recording has no socket

    def stop(self) -> None:
        return None


@dataclass
class _ReplayOrder:
    h: str
    market_id: str
    side: int
    outcome: int
    price: int
    size: int
    filled: int = 0
    status: str = "open"


class ReplayExchange:
    """The Exchange interface over a recording, with a fill model: a resting quote fills (at
    its own price, as a maker) when a recorded trade prints at or through it, or when the
    recorded opposite best reaches it; each trade's size is used once."""

    address = "0x" + "00" * 19 + "01"

    def __init__(self, cfg: Config, clock: ReplayClock) -> None:
        self.cfg = cfg
        self.clock = clock
        self.policy = CallPolicy(cfg)
        self.gate = OrderGate(cfg, None)
        self.markets: list[QuickMarket] = []
        self.prices: dict[str, list[tuple[float, float]]] = {}  # asset -> (time, price)
        self.books: dict[str, Book] = {}
        self.orders_: dict[str, _ReplayOrder] = {}
        self.pos: dict[str, list[int]] = {}
        self._stream = ReplayStream()
        self._seq = 0

    # recorded inputs
    def quick_market(self, key: MarketKey) -> QuickMarket:
        now = self.clock.now()
        series = [
            m
            for m in self.markets
            if m.asset.upper() == key.asset and m.end - m.start == key.interval * 60
        ]
        live = [m for m in series if m.start <= now] or series[:1]
        if not live:
            raise ExchangeError("not_found", f"the recording holds no {key} market")
        return live[-1]

    def asset_price(self, asset: str) -> float | None:
        now = self.clock.now()
        past = [p for t, p in self.prices.get(asset, []) if t <= now]
        return past[-1] if past else None

    def balances(self) -> tuple[int, int]:
        return 10**6 * SIZE_SCALE, 0  # replay studies quoting: capital_usdc caps it if set

    def failed_trades(self) -> list[FailedFill]:
        return []  # a recording settles every fill

    def orderbook(self, market_id: str, now: float) -> Book:
        b = self.books.get(market_id, Book())
        return Book(b.bids, b.asks, now)

    def stream(self) -> ReplayStream:
        return self._stream

    def prepare(self, now: float) -> dict[str, str]:
        return {}

    def approve_ctf(self, now: float) -> str:
        return ""

    # orders
    def place(
        self,
        market: QuickMarket,
        side: int,
        outcome: int,
        price: int,
        size: int,
        expiration: int,
        now: float,
    ) -> str:
        self.gate.check(market.market_id)
        if now >= market.end:
            raise ExchangeError("rejected", "market is closed")
        self._seq += 1
        h = f"0xreplay{self._seq:08d}"
        self.orders_[h] = _ReplayOrder(h, market.market_id, side, outcome, price, size)
        return h

    def cancel(self, order_hash: str, market_id: str, side: int) -> None:
        o = self.orders_.get(order_hash)
        if o is None or o.status != "open":
            raise ExchangeError("not_found", "order not found", 404)
        o.status = "cancelled"

    def cancel_market(self, market_id: str) -> None:
        for o in self.orders_.values():
            if o.market_id == market_id and o.status == "open":
                o.status = "cancelled"

    def orders(
        self, market_id: str | None, status: str | None, urgent: bool = True
    ) -> list[OrderInfo]:
        return [
            OrderInfo(o.h, o.market_id, o.side, o.outcome, o.price, o.size, o.filled, o.status)
            for o in self.orders_.values()
            if (market_id is None or o.market_id == market_id)
            and (status is None or o.status == status)
        ]

    def position(self, market: QuickMarket) -> tuple[int, int]:
        yes, no = self.pos.get(market.market_id, [0, 0])
        return yes, no

    def claim(self, markets: list[tuple[str, str]], now: float) -> list[ClaimResult]:
        out = []
        for mid, contract in markets:
            m = next((x for x in self.markets if x.market_id == mid), None)
            hist = self.prices.get(m.asset.upper(), []) if m is not None else []
            px = [p for t, p in hist if m is not None and t <= m.end]
            if m is None or now < m.end + 30 or not px:
                out.append(ClaimResult(mid, contract, "pending"))
                continue
            yes_won = px[-1] > m.strike
            yes, no = self.pos.pop(mid, [0, 0])
            paid = yes if yes_won else no
            out.append(
                ClaimResult(mid, contract, "claimed" if paid else "lost", paid, "replay", yes_won)
            )
        return out

    # the fill model
    def _fill(self, o: _ReplayOrder, qty: int) -> None:
        o.filled += qty
        if o.filled >= o.size:
            o.status = "filled"
        p = self.pos.setdefault(o.market_id, [0, 0])
        if o.side == BUY:
            p[0] += qty
        else:  # a SELL of YES not held is a split: NO shares remain
            short = max(0, qty - p[0])
            p[0] += short - qty
            p[1] += short

    def on_trade(self, market_id: str, price: int, size: int) -> None:
        left = size
        for o in self.orders_.values():
            if left <= 0:
                break
            if o.market_id != market_id or o.status != "open":
                continue
            if (o.side == BUY and price <= o.price) or (o.side == SELL and price >= o.price):
                q = min(left, o.size - o.filled)
                self._fill(o, q)
                left -= q

    def on_book(self, market_id: str, book: Book) -> None:
        self.books[market_id] = book
        for o in self.orders_.values():
            if o.market_id != market_id or o.status != "open":
                continue
            if o.side == BUY and book.asks and book.asks[0][0] <= o.price:
                self._fill(o, min(book.asks[0][1], o.size - o.filled))
            elif o.side == SELL and book.bids and book.bids[0][0] >= o.price:
                self._fill(o, min(book.bids[0][1], o.size - o.filled))


def read_recording(path: str) -> list[dict[str, Any]]:
    """A recording and its rotated parts (FILE.N ... FILE.1, FILE), in time order."""
    parts = sorted(
        (
            p
            for p in os.listdir(os.path.dirname(os.path.abspath(path)))
            if p.startswith(os.path.basename(path) + ".") and p.rsplit(".", 1)[-1].isdigit()
        ),
        key=lambda p: -int(p.rsplit(".", 1)[-1]),
    )
    recs = []
    for p in [*(os.path.join(os.path.dirname(os.path.abspath(path)), x) for x in parts), path]:
        with open(p, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    r = json.loads(line)
                    float(r["r"])
                    if r["k"] in ("book", "trade", "price", "market"):
                        recs.append(r)
                except (ValueError, KeyError, TypeError):
                    continue
    recs.sort(key=lambda r: float(r["r"]))
    return recs


def recording_markets(recs: list[dict[str, Any]]) -> list[str]:
    """The series (BTC:15, ...) of the quick markets in a recording, in order of appearance."""
    out: dict[str, None] = {}
    for r in recs:
        if r["k"] == "market":
            d = r["d"]
            with contextlib.suppress(KeyError, TypeError, ValueError):
                out[f"{str(d['asset']).upper()}:{(int(d['end']) - int(d['start'])) // 60}"] = None
    return list(out)


def replay_run(recs: list[dict[str, Any]], cfg: Config, log_path: str) -> dict[str, Any]:
    """Run the engine over a recording: the driver sets the clock to each recorded receive
    time, feeds the message through the same handler the stream thread uses, and steps the
    engine on the tick and whenever the handler asks to be woken, exactly as live."""
    if not recs:
        raise ConfigError("the recording is empty")
    clock = ReplayClock(float(recs[0]["r"]))
    ex = ReplayExchange(cfg, clock)
    for r in recs:
        if r["k"] == "market":
            ex.markets.append(QuickMarket(**r["d"]))
    if not ex.markets:
        raise ConfigError("the recording holds no quick market")
    for r in recs:
        if r["k"] == "price":  # {"a": asset, "p": price}; a bare number: the first asset
            d = r["d"] if isinstance(r["d"], dict) else {"a": ex.markets[0].asset, "p": r["d"]}
            ex.prices.setdefault(str(d["a"]).upper(), []).append((float(r["r"]), float(d["p"])))
    ex.markets.sort(key=lambda m: m.start)
    metrics = Metrics(cfg.bot_name)
    log = EventLog(log_path, cfg.bot_name)
    bot = Bot(cfg, ex, clock, log, metrics)
    with contextlib.suppress(OSError):
        os.unlink(cfg.state_file)
    bot.startup()
    handler = ex.stream().handler
    assert handler is not None
    next_tick = clock.t
    for r in recs:
        t = float(r["r"])
        while next_tick <= t:
            clock.t = next_tick
            bot.step()
            next_tick += cfg.tick_s
        clock.t = t
        d = r["d"]
        if r["k"] == "book":
            book = Book(tuple(map(tuple, d["b"])), tuple(map(tuple, d["a"])), t)
            ex.on_book(d["m"], book)
            handler.on_book(d["m"], book)
        elif r["k"] == "trade":
            ex.on_trade(str(d.get("marketId", "")), int(d.get("price", 0)), int(d.get("size", 0)))
            handler.on_trade(str(d.get("marketId", "")), d)
        if bot.feed.wake.is_set():
            bot.feed.wake.clear()
            bot.step()
    # let the last market resolve and be claimed
    for _ in range(int((cfg.claim_s + 60) / cfg.tick_s) + 1):
        clock.t += cfg.tick_s
        bot.step()
    bot.shutdown()
    log.close()
    return summarize(*read_events(log_path))


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
        runs = [summarize(*read_events(p)) for p in a.logs]
        print(json.dumps(runs))
        return 0
    report(a.logs, a.plot)
    return 0


