#!/usr/bin/env python3
"""Soak and trading quality: spike_bot through simulated hours (default 24 h = 96 markets) on
turbine_sim's manual clock with the default participants, at full speed.

The simulator runs in a child process on a clock shared through shared memory, so memory and
CPU figures are the bot's own. Reports requests per simulated minute, orders, fills, fill rate,
PnL, max inventory, markout, tick time (with I/O), open orders left after each rollover,
errors, resident memory after warm-up and at the end, and CPU seconds per simulated hour. The
baseline in the same run is the same bot with a tolerance of 0 and a refresh of one tick, i.e.
cancel-and-replace of every quote every tick.

    python bench/bench_soak.py [--hours 24] [--quick] [--json] [--seed 11]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import resource
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from eth_account import Account

import spike_bot as sb
import turbine_sim as ts
from spike_tools import pct
from harness import SIM_START, creds_for


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def our_trades(ex: ts.Exchange, addr: str, mid: str) -> Any:
    """(trade, sign, shares, price) of each trade in market `mid` with `addr` on exactly one
    side (a trade with itself changes nothing): sign +1 bought, -1 sold."""
    for tr in ex.api_trades[mid]:
        if (addr == tr["buyer"]) != (addr == tr["seller"]):
            yield tr, 1 if tr["buyer"] == addr else -1, tr["size"] / 1e6, tr["price"] / 1e6


def markouts(ex: ts.Exchange, addr: str) -> tuple[float, float]:
    """Average markout per share of the bot's fills, in USDC: the simulator's true probability
    30 s and 60 s after the fill against the fill price, signed so that positive means the
    fill made money. Runs on the simulator's loop (it reads the model directly)."""
    truth = truth_fn(ex)
    tot = {30: 0.0, 60: 0.0}
    shares = 0.0
    for mid in ex.api_trades:
        m = ex.markets[mid]
        for tr, sign, q, px in our_trades(ex, addr, mid):
            shares += q
            for h in (30, 60):
                tot[h] += sign * (worth(truth, m, tr, h) - px) * q
    if not shares:
        return 0.0, 0.0
    return round(tot[30] / shares, 5), round(tot[60] / shares, 5)


def truth_fn(ex: ts.Exchange) -> Any:
    """The simulator's true probability of YES for market m at time t (the fast price and the
    model's vol then; the outcome once ended), from its recorded history."""
    import bisect

    hists = {a: list(h) for a, h in ex.fast_hist.items()}
    times = {a: [x[0] for x in h] for a, h in hists.items()}
    lag = ex.cfg.oracle_lag_s if ex.model is not None else 0.0

    def truth(m: ts.Market, t: float) -> float:
        if t >= m.end:
            return 1.0 if (m.final_price or 0) > m.strike else 0.0
        _, fast, sig = hists[m.asset][max(0, bisect.bisect_right(times[m.asset], t) - 1)]
        return ts.binary_probability(fast, m.strike, m.end - lag - t, sig)

    return truth


def worth(truth: Any, m: ts.Market, tr: dict[str, Any], h: float) -> float:
    """What a share of the trade's outcome was worth h seconds after it (1 - P(YES) for NO)."""
    p = truth(m, tr["timestamp"] + h)
    return p if tr["outcome"] == ts.YES else 1.0 - p


SIZE_BUCKETS = ((0.0, 5.0), (5.0, 20.0), (20.0, float("inf")))  # shares per order


def market_stats(ex: ts.Exchange, addr: str) -> list[dict[str, Any]]:
    """Per resolved market, from the simulator's own records (not the bot's accounting): PnL
    by ledger arithmetic (sells earn, buys cost, the net YES position pays 1 if YES won),
    maker rebates, traded notional, shares, markouts (30 s, 60 s: true probability then
    against the fill price, signed so that positive made money), the position held into
    resolution, and placed/filled shares by order size."""
    truth = truth_fn(ex)
    out = []
    for mid, m in sorted(ex.markets.items(), key=lambda kv: kv[1].start):
        if not m.resolved:
            continue
        cash = notional = shares = 0.0
        held = {ts.YES: 0.0, ts.NO: 0.0}  # net shares of each outcome
        mk = {30: 0.0, 60: 0.0}
        for tr, sign, q, px in our_trades(ex, addr, mid):
            cash -= sign * q * px
            held[tr["outcome"]] += sign * q
            notional += q * px
            shares += q
            for h in (30, 60):
                mk[h] += sign * (worth(truth, m, tr, h) - px) * q
        net = held[ts.YES] - held[ts.NO]  # YES-equivalent: what the outcome swings
        placed = [0.0] * len(SIZE_BUCKETS)
        filled = [0.0] * len(SIZE_BUCKETS)
        for o in ex.orders.values():
            if o.trader != addr or o.market_id != mid:
                continue
            sz = o.size / 1e6
            i = next(i for i, (lo, hi) in enumerate(SIZE_BUCKETS) if lo < sz <= hi)
            placed[i] += sz
            filled[i] += o.filled / 1e6
        out.append(
            {
                "market": mid,
                "start": m.start,
                "pnl": cash + held[m.outcome],
                "rebate": ex.rebates_by_market.get((addr, mid), 0) / 1e6,
                "notional": notional,
                "shares": shares,
                "markout_30s": mk[30],
                "markout_60s": mk[60],
                "held_into_resolution": abs(net),
                "placed": placed,
                "filled": filled,
            }
        )
    return out


def by_counterparty(ex: ts.Exchange, addr: str, parts: Any) -> dict[str, dict[str, float]]:
    """Our trades in resolved markets by who was on the other side (the simulator's
    participants by role, "api" for other API clients: a rival bot): shares, PnL held to
    resolution (per share traded at its price against the outcome) and the 5 s and 30 s
    markouts against the true probability, per share. Where the money comes from, and who
    takes it back."""
    names: dict[str, str] = {}
    if parts is not None:
        names[parts.noise] = "retail"
        names[parts.informed] = "arbitrageur"
        for i, a in enumerate(getattr(parts, "makers", [])):
            names[a] = f"maker{i}"
        for a in getattr(parts, "steppers", []):
            names[a] = "stepper"
        for a in getattr(parts, "sdk_makers", []):
            names[a] = "sdk_maker"
    truth = truth_fn(ex)
    out: dict[str, dict[str, float]] = {}
    for mid in ex.api_trades:
        m = ex.markets[mid]
        if not m.resolved:
            continue
        for tr, sign, q, px in our_trades(ex, addr, mid):
            who = names.get(tr["seller"] if sign > 0 else tr["buyer"], "api")
            won = 1.0 if m.outcome == ts.YES else 0.0
            worth_end = won if tr["outcome"] == ts.YES else 1.0 - won
            d = out.setdefault(who, {"shares": 0.0, "pnl": 0.0, "mk5": 0.0, "mk30": 0.0})
            d["shares"] += q
            d["pnl"] += sign * (worth_end - px) * q
            for h, k in ((5, "mk5"), (30, "mk30")):
                d[k] += sign * (worth(truth, m, tr, h) - px) * q
    return out


class SharedClock(ts.Clock):
    """A manual clock whose time lives in shared memory: the simulator's process moves it,
    the bot's process reads it (and waits on it like on turbine_sim's manual clock)."""

    def __init__(self, shared: Any) -> None:
        super().__init__(shared.value, 1.0, manual=True)
        self.shared = shared

    def now(self) -> float:
        return self.shared.value

    def set(self, t: float) -> None:
        self.shared.value = max(self.shared.value, t)


def _sim_child(conn: Any, shared: Any, seed: int, sim_kw: dict[str, Any]) -> None:
    sim = ts.Sim(
        ts.SimConfig(manual_clock=True, start_time=SIM_START, seed=seed, **sim_kw),
        SharedClock(shared),
    )
    conn.send(sim.base_url)
    while True:
        cmd, arg = conn.recv()
        if cmd == "advance":
            sim.advance(arg)
            conn.send(None)
        elif cmd == "state":
            conn.send(sim.state())
        elif cmd == "markouts":
            conn.send(sim.call(lambda a=arg: markouts(sim.app.ex, a)))
        elif cmd == "market_stats":
            conn.send(sim.call(lambda a=arg: market_stats(sim.app.ex, a)))
        elif cmd == "by_counterparty":
            conn.send(
                sim.call(lambda a=arg: by_counterparty(sim.app.ex, a, sim.app.participants))
            )
        elif cmd == "register":
            conn.send(creds_for(sim, arg))
        else:
            sim.stop()
            conn.send(None)
            return


class RemoteSim:
    """turbine_sim in a child process: the bot's process measures only the bot."""

    def __init__(self, seed: int, sim_kw: dict[str, Any] | None = None) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.shared = ctx.Value("d", SIM_START, lock=False)
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_sim_child, args=(child, self.shared, seed, sim_kw or {}), daemon=True
        )
        self.proc.start()
        self.base_url = self.conn.recv()
        self.clock = SharedClock(self.shared)

    def _ask(self, cmd: str, arg: Any = None) -> Any:
        self.conn.send((cmd, arg))
        return self.conn.recv()

    def advance(self, s: float) -> None:
        self._ask("advance", s)

    def state(self) -> dict[str, Any]:
        return self._ask("state")

    def stop(self) -> None:
        self._ask("stop")
        self.proc.join(10)


def print_rows(rows: list[dict[str, Any]], keys: list[str], width: int = 20) -> None:
    """One column per run (its `label`), one line per figure."""
    print(f"{'figure':30}" + "".join(f"{r['label']:>{width}}" for r in rows))
    for k in keys:
        print(f"{k:30}" + "".join(f"{r[k]!s:>{width}}" for r in rows))


def _start_bot(
    sim: RemoteSim,
    tmp: pathlib.Path,
    label: str,
    overrides: dict[str, Any] | None,
    strategy: Any,
) -> tuple[Any, threading.Thread, Any, Any, str, Any]:
    """A spike_bot with its own new wallet on `sim`, started on its own thread: (bot, thread,
    metrics, log, address, config)."""
    tmp.mkdir(parents=True, exist_ok=True)
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    addr = Account.from_key(key).address.lower()
    kid, secret = sim._ask("register", key)
    cfg = sb.Config(
        host=sim.base_url,
        log_file=str(tmp / "bot.log"),
        state_file=str(tmp / "state.json"),
        rate_limit_per_s=10_000,
        status_every_s=0,
        bot_name=label,
    )
    for k, v in (overrides or {}).items():
        setattr(cfg, k, sim.base_url if v == "<sim>" else v)  # "<sim>": its own Hermes
    sb.validate(cfg)
    metrics = sb.Metrics(label)
    ex = sb.TurbineExchange(cfg, sb.Signer(key, 137), sb.BearerAuth(kid, secret), metrics)
    log = sb.EventLog(cfg.log_file, label)
    bot = sb.Bot(cfg, ex, sim.clock, log, metrics, strategy=strategy)
    th = threading.Thread(target=bot.run, daemon=True)
    th.start()
    return bot, th, metrics, log, addr, cfg


def run_day(
    hours: float,
    seed: int,
    overrides: dict[str, Any] | None = None,
    label: str = "spike_bot",
    sim_kw: dict[str, Any] | None = None,
    quotes_fn: Any = None,
    rivals: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One bot on one seeded simulator for `hours`. `quotes_fn`: another quoting function in
    place of spike_bot's (a baseline strategy through the same engine). `rivals`: more
    spike_bots (their settings' overrides) competing in the same market, each with its own
    wallet, stepped in lockstep with it; the figures are the first bot's."""
    sim = RemoteSim(seed, sim_kw)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="soak-"))
    bot, th, metrics, log, addr, cfg = _start_bot(sim, tmp, label, overrides, quotes_fn)
    others = [
        _start_bot(sim, tmp / f"rival{i}", f"rival{i}", r, None)
        for i, r in enumerate(rivals or [])
    ]
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for b in [bot] + [o[0] for o in others]:
        while not all(s.m for s in b.slots):
            time.sleep(0.001)
    left_after_rollover: list[int] = []
    rss0 = rss_mb()
    rolls = 0
    steps = int(hours * 3600 / cfg.tick_s)
    warm_req, warm_t = 0, 0.0
    price_ages: list[float] = []  # the model price's age after each step (about quote time)
    bots = [bot] + [o[0] for o in others]
    for i in range(steps):
        before = [b.c.ticks for b in bots]
        sim.advance(cfg.tick_s)
        deadline = time.perf_counter() + 10
        while (
            any(b.c.ticks <= n for b, n in zip(bots, before, strict=True))
            and time.perf_counter() < deadline
        ):
            time.sleep(0.0002)
        if bot.c.rollovers != rolls:
            rolls = bot.c.rollovers
            old = [
                o
                for o in sim.state()["open_orders"]
                if o["trader"] == addr
                and o["marketId"] not in {s.m.qm.market_id for s in bot.slots if s.m}
            ]
            left_after_rollover.append(len(old))
        age = bot.prices.state(bot.slots[0].key.asset)[1]
        if math.isfinite(age) and i > int(steps * 0.05):
            price_ages.append(age)
        if i == int(steps * 0.05):  # skip start-up for the steady-state rate
            warm_req, warm_t = metrics.requests_total, sim.clock.now()
            rss0 = rss_mb()  # after warm-up: imports, pools and caches are in
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    req_per_min = (metrics.requests_total - warm_req) / max(1.0, (sim.clock.now() - warm_t) / 60)
    for b, t_, lg in [(bot, th, log)] + [(o[0], o[1], o[3]) for o in others]:
        b.stop()
        t_.join(30)
        lg.close()
    rss1 = rss_mb()
    events = [json.loads(x) for x in pathlib.Path(cfg.log_file).read_text().splitlines()]
    fills = [e for e in events if e["event"] == "fill"]
    shutdown = events[-1] if events and events[-1]["event"] == "shutdown" else {}
    r, u = shutdown.get("realized", 0.0), shutdown.get("unrealized", 0.0)
    markets = max(1, rolls)
    placed = bot.c.placed_size
    ticks = sorted(bot.tick_times) or [0.0]
    st = sim.state()
    mk30, mk60 = sim._ask("markouts", addr)
    per_market = sim._ask("market_stats", addr)
    counterparties = sim._ask("by_counterparty", addr)
    sim.stop()
    return {
        "label": label,
        "sim_hours": hours,
        "markets": rolls,
        "wall_s": round(wall, 1),
        "orders": bot.c.orders,
        "cancels": bot.c.cancels,
        "requests": metrics.requests_total,
        "requests_per_min": round(req_per_min, 1),
        "order_requests_per_min": round(
            (bot.c.orders + bot.c.cancels + bot.c.rejects) / (hours * 60), 1
        ),
        "fills": len(fills),
        "fill_rate": round(bot.c.filled_size / placed, 6) if placed else 0.0,
        "filled_shares": bot.c.filled_size,
        "pnl_usdc": round(r + u, 4),
        "pnl_per_market_usdc": round((r + u) / markets, 4),
        "max_inventory": max([abs(e["position"]) for e in fills] or [0.0]),
        "markout_30s": mk30,
        "markout_60s": mk60,
        "claimed_usdc": round(bot.c.claimed_usdc, 4),
        "tick_p50_ms": round(ticks[len(ticks) // 2] * 1000, 3),
        "tick_p99_ms": round(ticks[int(len(ticks) * 0.99)] * 1000, 3),
        "orders_left_after_rollover": max(left_after_rollover or [0]),
        # a kill switch (ERROR level) is the risk limits working, counted on its own
        "errors": sum(
            1
            for e in events
            if (e["level"] == "ERROR" or e["event"] == "error") and e["event"] != "kill_switch"
        ),
        "kill_switches": sum(1 for e in events if e["event"] == "kill_switch"),
        "fail_closed": bot.c.fail_closed,
        "rss_start_mb": round(rss0, 1),
        "rss_end_mb": round(rss1, 1),
        "rss_growth_mb": round(rss1 - rss0, 1),
        "cpu_s_per_sim_hour": round(cpu / hours, 2),  # the bot's process only
        "sim_invariants_ok": st["invariants_ok"],
        "price_age_p50_s": pct(price_ages, 0.5),
        "price_age_p99_s": pct(price_ages, 0.99),
        "per_market": per_market,
        "by_counterparty": counterparties,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--quick", action="store_true", help="1 simulated hour each")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-baseline", action="store_true")
    a = ap.parse_args()
    hours = 1.0 if a.quick else a.hours
    ours = run_day(hours, a.seed)
    rows = [ours]
    if not a.no_baseline:
        # cancel-and-replace every quote every tick: tolerance 0, refresh = one tick
        rows.append(
            run_day(
                hours,
                a.seed,
                {"requote_tolerance": 0.0, "order_refresh_s": 2.0},
                "replace_every_tick",
            )
        )
    keys = [
        "sim_hours",
        "markets",
        "wall_s",
        "orders",
        "requests_per_min",
        "fills",
        "fill_rate",
        "pnl_usdc",
        "pnl_per_market_usdc",
        "max_inventory",
        "markout_30s",
        "markout_60s",
        "claimed_usdc",
        "tick_p50_ms",
        "tick_p99_ms",
        "orders_left_after_rollover",
        "errors",
        "fail_closed",
        "rss_start_mb",
        "rss_end_mb",
        "rss_growth_mb",
        "cpu_s_per_sim_hour",
        "sim_invariants_ok",
    ]
    print_rows(rows, keys)
    if len(rows) == 2:
        red = rows[1]["requests_per_min"] / max(ours["requests_per_min"], 1e-9)
        print(f"request reduction vs replace-every-tick: {red:.1f}x")
    if a.json:
        out = {"bench": "soak", **{k: ours[k] for k in keys}}
        if len(rows) == 2:
            out["baseline_requests_per_min"] = rows[1]["requests_per_min"]
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
