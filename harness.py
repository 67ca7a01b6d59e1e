"""Drive a Bot against turbine_sim on the simulator's manual clock (tests and bench/).

`BotHarness` runs the real engine on its own thread; `tick()` moves simulated time one tick at a
time and waits until the bot has finished that step, so scenarios are fast and repeatable.
"""

from __future__ import annotations

import json
import pathlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from eth_account import Account

import turbine_sim

SIM_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a quick-market boundary
SEED_QUOTING = {"base_spread": 0.40, "order_size": 5.0, "risk_spread": 0.0, "skew_factor": 0.08}


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> Any:
    """Poll `pred` until truthy (real time); fail the test with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s (last={last!r})")


_CREDS: dict[tuple[int, str], tuple[str, str]] = {}


def free_port() -> int:
    """A loopback port nobody listens on now (a metrics endpoint, a Prometheus, a simulator)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def creds_for(sim: turbine_sim.Sim, key: str) -> tuple[str, str]:
    """API credentials for `key` on `sim`, registered once (a restart reuses them, as a bot
    reuses the ones saved in its .env)."""
    k = (id(sim), key)
    if k not in _CREDS:
        _CREDS[k] = turbine_sim.new_api_credentials_for_tests(sim, key)
    return _CREDS[k]


class WatchedClock:
    """The simulator's clock as the bot under test sees it, telling the harness since when the
    bot has been parked in `wait` (None while it is working): idle is measured, not guessed."""

    def __init__(self, inner: turbine_sim.Clock) -> None:
        self.inner = inner
        self.parked_since: float | None = None  # written by the bot's thread only

    def now(self) -> float:
        return self.inner.now()

    def wait(self, event: threading.Event | None, seconds: float) -> bool:
        self.parked_since = time.monotonic()
        try:
            return self.inner.wait(event, seconds)
        finally:
            self.parked_since = None


# -- bot harness -----------------------------------------------------------------------------------
class BotHarness:
    """A Bot running on its own thread against a simulator, on the simulator's manual clock.

    Tests move time with `tick()` / `advance()` and assert on the simulator's state and the
    bot's JSON events, not on private attributes.
    """

    def __init__(
        self,
        sim: turbine_sim.Sim,
        tmp: pathlib.Path,
        key: str | None = None,
        exchange_kind: str = "spike",
        record: pathlib.Path | None = None,
        paper: bool = False,
        metrics_port: int = 0,  # serve /metrics on 127.0.0.1 (a real Prometheus scrapes it)
        **overrides: Any,
    ) -> None:
        import spike_bot as sb

        self.sb = sb
        self.sim = sim
        self.key = key or "0x" + Account.create().key.hex().removeprefix("0x")
        self.address = Account.from_key(self.key).address.lower()
        self.log_path = tmp / f"bot-{self.address[:8]}.log"
        self.state_path = tmp / f"state-{self.address[:8]}.json"
        cfg = sb.Config(
            host=sim.base_url,
            log_file=str(self.log_path),
            state_file=str(self.state_path),
            rate_limit_per_s=10_000,
            status_every_s=0,
            http_timeout_s=5,
            max_retries=3,
        )
        # the seed's quoting (a 0.40 spread, 5 shares, no risk spread): the scenarios are
        # about plumbing and money safety, written against those known quote prices
        for k, v in {**SEED_QUOTING, **overrides}.items():
            setattr(cfg, k, v)
        self.cfg = sb.validate(cfg)
        self.exchange_kind = exchange_kind
        self.paper = paper  # --paper: the simulator is the live market, orders are paper
        self.record = record
        self.metrics_port = metrics_port
        self.metrics = sb.Metrics(cfg.bot_name, metrics_port)
        self.kid, self.secret = creds_for(sim, self.key)
        self.thread: threading.Thread | None = None
        self.bot = None
        # more of the Bot's constructor arguments (alerter, reloader, hermes_key, ...)
        self.bot_kw: dict[str, Any] = {}

    def make_exchange(self) -> Any:
        sb = self.sb
        # paper trading reads without a key, as `--paper` does
        key, kid, secret = (None, None, None) if self.paper else (self.key, self.kid, self.secret)
        if self.exchange_kind == "official":
            import official_spike_bot as ob

            ex = ob.OfficialExchange(self.cfg, key, kid, secret, self.metrics)
        else:
            ex = sb.spike_exchange(self.cfg, key, kid, secret, self.metrics)
        if self.paper:
            import spike_paper

            ex = spike_paper.PaperExchange(ex, self.cfg, self.sim.clock.now)
        return ex

    def start(self, wait_quotes: bool = True) -> BotHarness:
        sb = self.sb
        log = sb.EventLog(str(self.log_path), self.cfg.bot_name)
        ex = self.make_exchange()
        recorder = None
        if self.record is not None:
            recorder = sb.Recorder(str(self.record), self.sim.clock.now)
            if self.paper:
                ex.recorder = recorder
        self.clock = WatchedClock(self.sim.clock)
        self.bot = sb.Bot(
            self.cfg,
            ex,
            self.clock,
            log,
            self.metrics,
            mode="paper" if self.paper else None,
            recorder=recorder,
            **self.bot_kw,
        )
        self.thread = threading.Thread(target=self.bot.run, name="bot-under-test", daemon=True)
        self.thread.start()
        wait_until(lambda: all(s.m is not None for s in self.bot.slots), 10)
        if wait_quotes:
            self.tick_until(lambda: len(self.open_orders()) == 2 * len(self.bot.slots))
        return self


    def stop(self) -> None:
        if self.bot is not None and self.thread is not None:
            self.bot.stop()
            self.thread.join(20)
            assert not self.thread.is_alive(), "bot did not stop"
            self.bot.log.close()

    # -- time ----------------------------------------------------------------------------------
    def tick(self, n: int = 1, seconds: float | None = None, quiet: float = 0.015) -> None:
        """Advance the clock one tick at a time and wait for the bot to finish each step.
        `quiet`: how long the bot must stay parked in its clock's wait after a step (the
        stream's frames caused by that step arrive and are handled within it; less: faster,
        but a frame may arrive after the next step has begun)."""
        for _ in range(n):
            before = self.bot.c.ticks
            self.sim.advance(seconds if seconds is not None else self.cfg.tick_s)
            wait_until(
                lambda b=before: self.bot.c.ticks > b or not self.thread.is_alive(), 10, 0.002
            )
            assert self.thread.is_alive(), "bot thread died"
            self.settle(quiet)

    def settle(self, quiet: float = 0.015) -> None:
        """Wait for the bot to go idle: parked in its clock's wait for `quiet` seconds on end
        (a frame that wakes it starts another step and the count again)."""
        clock = self.clock

        def idle() -> bool:
            since = clock.parked_since
            return since is not None and time.monotonic() - since >= quiet

        wait_until(lambda: idle() or not self.thread.is_alive(), 10, 0.002)

    def tick_until(self, pred: Callable[[], Any], max_ticks: int = 60) -> Any:
        # The bot may be mid-step (its first step runs without a tick): a predicate read
        # then can see the exchange ahead of the bot's own log and state.
        self.settle()
        for _ in range(max_ticks):
            v = pred()
            if v:
                return v
            self.tick()
        raise AssertionError(f"condition not met within {max_ticks} ticks")

    # -- observation ---------------------------------------------------------------------------
    def open_orders(self, market_id: str | None = None) -> list[dict[str, Any]]:
        """Our open orders on the simulator (paper mode: on the paper venue, as dicts)."""
        if self.paper and self.bot is not None:
            return [
                {"marketId": o.market_id, "side": o.side, "price": o.price, "size": o.size}
                for o in self.bot.ex.orders(market_id, "open")
            ]
        return [
            o
            for o in self.sim.state()["open_orders"]
            if o["trader"] == self.address and (market_id is None or o["marketId"] == market_id)
        ]

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if name is None or e["event"] == name:
                out.append(e)
        return out

    @property
    def slot(self) -> Any:
        """The first (in single-market tests: the only) market slot."""
        return self.bot.slots[0]

    def market_id(self, key: str | None = None) -> str:
        return self.sim.state()["markets"][key or self.cfg.markets.split(",")[0]]["marketId"]


def quiet_sim_cfg(**kw: Any) -> turbine_sim.SimConfig:
    """No participants and a calm price (10% vol), so a test decides every trade and the
    model's fair value stays within the requote tolerance between ticks."""
    kw.setdefault("annual_vol", 0.10)
    return turbine_sim.SimConfig(
        manual_clock=True, start_time=SIM_START + 1, seed=5, participants=False, **kw
    )
