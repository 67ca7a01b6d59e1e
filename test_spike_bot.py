"""End-to-end: spike_bot against turbine_sim on loopback, time driven by the simulator's clock.

Every scenario is parametrised over the exchange layer (`spike` = spike_bot's own requests and
websocket-client adapter; `official` = official_spike_bot's turbine-py-client adapter, when
present) so both bots pass the same money-safety scenarios.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
from eth_account import Account

import turbine_sim as ts
from conftest import ROOT, SIM_START, BotHarness, free_port, quiet_sim_cfg, wait_until

KINDS = ["spike"]
if (ROOT / "official_spike_bot.py").exists():
    KINDS.append("official")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def take(
    sim: ts.Sim, market_id: str, side: int, price: int, size: int, keep: bool = False
) -> None:
    """Someone outside the bot trades against the book (an internal participant order); with
    `keep`, what does not match stays in the book as its own resting order."""
    other = "0x" + ("7b" if keep else "7a") * 20

    def go() -> None:
        ex = sim.app.ex
        ex.ledger.ensure(other, 10**15)
        ex.ledger.allowance[other] = ts.MAX_UINT
        ex.place_internal(other, market_id, side, ts.YES, price, size, not keep)
        sim.app.flush()

    sim.call(go)


def rest(sim: ts.Sim, market_id: str, side: int, price: int, size: int) -> None:
    """Someone else's resting order."""
    take(sim, market_id, side, price, size, keep=True)


def bot_quotes(h: BotHarness) -> tuple[dict[str, Any], dict[str, Any]]:
    oo = h.open_orders(h.market_id())
    bid = next(o for o in oo if o["side"] == ts.BUY)
    ask = next(o for o in oo if o["side"] == ts.SELL)
    return bid, ask


def no_orphans(h: BotHarness) -> None:
    """What the exchange holds for the bot is exactly what the bot thinks it holds."""
    h.tick(2)
    on_exchange = {o["orderHash"] for o in h.open_orders()}
    assert on_exchange == set(h.slot.m.live), (on_exchange, set(h.slot.m.live))
    assert len(on_exchange) <= h.cfg.max_open_orders


# -- the happy path --------------------------------------------------------------------------------
def test_quotes_rest_on_both_sides(qsim: ts.Sim, tmp_path: pathlib.Path, kind: str) -> None:
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        bid, ask = bot_quotes(h)
        assert bid["price"] < ask["price"]
        assert (ask["price"] - bid["price"]) / 1e6 == pytest.approx(0.40, abs=0.002)
        assert bid["size"] == ask["size"] == 5_000_000
        placed = h.events("order_placed")
        assert {"market", "side", "outcome", "price", "size", "order_hash"} <= set(placed[0])
        assert {e["bot"] for e in h.events()} == {h.cfg.bot_name}
        # calm market: no requotes over a few ticks
        n = len(placed)
        h.tick(5)
        assert len(h.events("order_placed")) == n
    finally:
        h.stop()
    assert h.open_orders() == []
    assert h.events("shutdown")[-1]["orders_left_ok"] is True


def test_fill_changes_inventory_skews_quotes_and_pnl(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    h = BotHarness(qsim, tmp_path, exchange_kind=kind, skew_factor=0.2, max_position=10).start()
    try:
        bid, ask = bot_quotes(h)
        fair0 = h.slot.m.fair
        assert abs((bid["price"] + ask["price"]) / 2e6 - fair0) < 0.031
        take(qsim, h.market_id(), ts.SELL, bid["price"], bid["size"])
        fill = h.tick_until(lambda: h.events("fill"))[0]
        assert fill["order_hash"] == bid["orderHash"] and fill["size"] == 5.0
        assert fill["price"] == bid["price"] / 1e6 and fill["position"] == 5.0
        h.tick_until(lambda: len(h.open_orders()) == 2)
        h.tick(2)
        bid2, ask2 = bot_quotes(h)
        centre = (bid2["price"] + ask2["price"]) / 2e6
        # long 5 of 10: skew -0.1 moves both quotes down from fair
        assert centre - h.slot.m.fair == pytest.approx(-0.1, abs=0.031)
        assert bid2["size"] == 5_000_000
        _, u = h.bot.ledger.pnl_now()
        assert u == pytest.approx(5 * (h.slot.m.fair - fill["price"]), abs=1e-6)
        pos = requests.get(f"{qsim.base_url}/sim/state", timeout=5).json()
        assert pos["invariants_ok"]
    finally:
        h.stop()
    assert h.open_orders() == []
    assert len(h.events("fill")) == 1  # counted once, whichever path saw it


def test_position_limit_stops_the_growing_side(qsim: ts.Sim, tmp_path: pathlib.Path) -> None:
    h = BotHarness(qsim, tmp_path, max_position=5, order_size=5).start()
    try:
        bid, _ = bot_quotes(h)
        take(qsim, h.market_id(), ts.SELL, bid["price"], bid["size"])
        h.tick_until(lambda: h.events("fill"))
        h.tick(3)
        sides = [o["side"] for o in h.open_orders()]
        assert sides == [ts.SELL]  # at the limit: only the reducing side
    finally:
        h.stop()


# -- rollover and claims ---------------------------------------------------------------------------
def test_rollover_leaves_no_order_on_old_market(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """Timing decisions asserted on the simulated time of their events (issue 29): flat, the
    last orders go within a tick of T-tminus_reduce_only_s (nothing to reduce), the roll
    within a tick of the end, and the new market's first orders within a tick of the roll."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        old = h.market_id()
        end = qsim.state()["markets"]["BTC:15"]["endTime"]
        tick, pull = h.cfg.tick_s, h.cfg.tminus_reduce_only_s
        qsim.advance(end - qsim.clock.now() - pull - 3 * tick)  # just before the window
        h.tick(6)
        assert h.open_orders(old) == []  # pulled before the end
        gone = [e for e in h.events("order_cancelled") if e["market"] == old]
        assert gone and end - pull <= gone[-1]["t"] <= end - pull + tick, (gone[-1], end)
        h.tick_until(lambda: h.events("rollover"))
        ev = h.events("rollover")[0]
        assert ev["old_market"] == old and ev["new_market"] == h.market_id() != old
        assert end <= ev["t"] <= end + tick, (ev["t"], end)
        h.tick_until(lambda: len(h.open_orders(h.market_id())) == 2)
        first = [e for e in h.events("order_placed") if e["market"] == ev["new_market"]]
        assert first[0]["t"] <= ev["t"] + tick, (first[0]["t"], ev["t"])
        assert h.open_orders(old) == []
    finally:
        h.stop()


def test_market_closing_mid_tick(qsim: ts.Sim, tmp_path: pathlib.Path) -> None:
    """The market resolves between the bot reading it and placing: the place is refused,
    the bot rolls at once, and nothing is left on the old market."""
    h = BotHarness(qsim, tmp_path)
    sb = h.sb
    tripped: list[str] = []

    class ClosingExchange(sb.TurbineExchange):
        def place(self, market: Any, *a: Any, **kw: Any) -> str:
            if not tripped:
                tripped.append(market.market_id)
                qsim.fault("resolve_now")
            return super().place(market, *a, **kw)

    h.make_exchange = lambda: ClosingExchange(
        h.cfg, sb.Signer(h.key, 137), sb.BearerAuth(h.kid, h.secret), h.metrics
    )
    h.start(wait_quotes=False)
    try:
        h.tick_until(lambda: len(h.open_orders(h.market_id())) == 2)
        old = tripped[0]
        assert h.open_orders(old) == []
        assert any("closed" in e["reason"] for e in h.events("order_rejected"))
        assert h.events("rollover")[0]["old_market"] == old
    finally:
        h.stop()


def _fill_on_side(h: BotHarness, sim: ts.Sim, winning: bool) -> int:
    """Get the bot a 5-share position that wins (or loses) if the market resolved now."""
    st = sim.state()
    yes_now = st["prices"]["BTC"] > st["markets"]["BTC:15"]["startPrice"] / 1e6
    bid, ask = bot_quotes(h)
    # long YES wins when YES wins; short YES (NO shares) wins when NO wins
    go_long = yes_now == winning
    o = bid if go_long else ask
    take(sim, h.market_id(), ts.SELL if go_long else ts.BUY, o["price"], o["size"])
    h.tick_until(lambda: h.events("fill"))
    return o["size"]


def test_claim_once_and_survives_restart(qsim: ts.Sim, tmp_path: pathlib.Path, kind: str) -> None:
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    h = BotHarness(qsim, tmp_path, key=key, exchange_kind=kind, claim_s=30).start()
    size = _fill_on_side(h, qsim, winning=True)
    old = h.market_id()
    qsim.fault("resolve_now")
    h.tick_until(lambda: h.events("rollover"))
    h.stop()  # before any claim round ran on it
    assert not h.events("claim")
    addr = h.address
    bal0 = qsim.state()["balances"][addr]
    # restart with the same key and state file: the remembered market is claimed, once
    h2 = BotHarness(qsim, tmp_path, key=key, exchange_kind=kind, claim_s=30).start()
    try:
        claims = h2.tick_until(lambda: h2.events("claim"))
        assert claims[0]["market"] == old and claims[0]["amount"] == size / 1e6
        assert qsim.state()["balances"][addr] >= bal0 + size
        h2.tick(20, seconds=2)  # more claim rounds: nothing more
        assert len(h2.events("claim")) == 1
        assert old not in h2.bot.claims.pending
    finally:
        h2.stop()
    import json

    state = json.loads(h2.state_path.read_text())
    assert old not in state["claims"]


def test_losing_market_is_dropped_and_day_loss_kill_switch(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    h = BotHarness(qsim, tmp_path, claim_s=2, max_loss_per_day=0.5).start()
    try:
        _fill_on_side(h, qsim, winning=False)
        qsim.fault("resolve_now")
        h.tick_until(lambda: h.events("claim_none"))
        assert h.events("claim_none")[0]["settled_pnl"] < -0.5
        h.tick_until(lambda: h.events("kill_switch"))
        h.tick(2)
        assert h.open_orders() == []
        assert h.events("fail_closed")[-1]["reason"] == "day_loss_limit"
    finally:
        h.stop()


# -- failures --------------------------------------------------------------------------------------
def test_quiet_stream_is_not_a_stale_feed(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """The real stream sends nothing while a book does not change (spec 5.1). A quiet book
    that REST confirms stays fresh: the bot keeps its quotes for minutes without a frame."""
    h = BotHarness(
        qsim, tmp_path, exchange_kind=kind, order_refresh_s=3600, requote_tolerance=0.3
    ).start()
    try:
        before = {o["orderHash"] for o in h.open_orders()}
        frames0 = qsim.state()["counters"].get("ws_frames", 0)
        h.tick(90)  # 3 simulated minutes, 6x stale_after_s
        assert {o["orderHash"] for o in h.open_orders()} == before
        assert not h.events("fail_closed") and not h.events("book_unconfirmed")
        assert h.slot.c.books_confirmed >= 90 * h.cfg.tick_s / h.cfg.stale_after_s
        assert qsim.state()["counters"].get("ws_frames", 0) == frames0  # silent: no heartbeat
        assert h.bot.feed.connected
    finally:
        h.stop()



def test_frozen_stream_is_replaced_by_rest_then_resumes(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """The stream stays connected but stops delivering while the book changes: REST no longer
    confirms the stream's book, so REST's book stands in (fresh, the new best bid seen: no
    fail-closed), the stream is reconnected ("missed a change"), and the thaw's first book
    from the stream ends the dispute."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        bid, _ = bot_quotes(h)
        qsim.fault("ws_freeze")
        t0 = qsim.clock.now()
        rest(qsim, h.market_id(), ts.BUY, bid["price"] + 10_000, 3_000_000)  # a new best bid
        unc = h.tick_until(lambda: h.events("book_unconfirmed"), max_ticks=12)
        assert qsim.clock.now() - t0 <= h.cfg.book_confirm_s + 2 * h.cfg.tick_s
        assert unc[0]["rest"][0] == bid["price"] + 10_000
        ev = h.tick_until(lambda: h.events("stream_reconnect"), max_ticks=12)
        assert ev[0]["reason"] == "missed a change"
        h.tick(3)
        assert h.bot.feed.book(h.market_id()).best_bid == bid["price"] + 10_000
        assert not h.events("fail_closed") and len(h.open_orders()) == 2
        qsim.clear_fault("ws_freeze")
        wait_until(h.bot.feed.is_connected)  # reconnected (the kick)
        rest(qsim, h.market_id(), ts.SELL, 990_000, 1_000_000)  # the thaw: streamed
        h.tick(3)
        assert h.bot.feed.in_dispute(h.market_id()) is None
        # the stream's books are used again (its snapshot may trail a REST poll a moment)
        wait_until(lambda: h.bot.feed.book(h.market_id()).stream, 5)
    finally:
        h.stop()


def test_outage_never_logs_a_cancel_the_exchange_did_not_confirm(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """Stream frozen and every REST call failing: the bot fails closed, cannot cancel, says so
    (`cancel_unconfirmed`, once per order) and keeps tracking the orders; when REST is back the
    cancels are confirmed and each order is `order_cancelled` exactly once."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind, max_retries=1).start()
    try:
        bid, ask = bot_quotes(h)
        hashes = {bid["orderHash"], ask["orderHash"]}
        qsim.fault("ws_freeze")
        qsim.fault("http_500", fraction=1.0)
        rest(qsim, h.market_id(), ts.BUY, bid["price"] + 10_000, 2_000_000)  # unseen change
        n0 = len(h.events())
        h.tick_until(lambda: h.events("fail_closed"), max_ticks=30)
        h.tick(5)
        during = h.events()[n0:]
        assert not [e for e in during if e["event"] == "order_cancelled"]
        unconf = [e for e in during if e["event"] == "cancel_unconfirmed"]
        assert {e["order_hash"] for e in unconf} == hashes and len(unconf) == 2
        assert {o["orderHash"] for o in h.open_orders()} == hashes  # really still there
        assert set(h.slot.m.live) == hashes  # and still tracked
        # REST is back but for the book (still blind: closed): the cancels are confirmed
        qsim.fault("http_500", path="/api/v1/orderbook")
        h.tick_until(lambda: h.open_orders() == [], max_ticks=5)
        h.tick(2)
        done = [e for e in h.events() if e["event"] == "order_cancelled"]
        assert sorted(e["order_hash"] for e in done) == sorted(hashes)  # once each
        assert not h.slot.m.live
        qsim.clear_fault("ws_freeze")
        qsim.clear_fault("http_500")
        h.tick_until(lambda: len(h.open_orders()) == 2)
        assert len([e for e in h.events() if e["event"] == "order_cancelled"]) == 2
    finally:
        h.stop()


def test_http_429_and_500_bursts_leave_no_orphans(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    h = BotHarness(qsim, tmp_path, exchange_kind=kind, order_refresh_s=6).start()
    try:
        qsim.fault("http_429", count=8)
        h.tick(3)
        qsim.fault("http_500", fraction=0.35)
        h.tick(12)
        qsim.clear_fault("http_500")
        h.tick_until(lambda: len(h.open_orders()) == 2)
        no_orphans(h)
        assert h.thread.is_alive()
        assert h.metrics.errors_by_kind.get("retryable", 0) > 0
        assert h.metrics.errors_by_kind.get("rate_limited", 0) > 0
    finally:
        h.stop()
    assert h.open_orders() == []


def test_dropped_connections_reconnect(qsim: ts.Sim, tmp_path: pathlib.Path, kind: str) -> None:
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        for _ in range(2):
            qsim.fault("ws_drop")
            wait_until(lambda: qsim.state()["ws_clients"] >= 1, 10)
        h.tick(3)
        assert len(h.events("stream_connected")) >= 3
        assert len(h.open_orders()) == 2
        no_orphans(h)
    finally:
        h.stop()


def test_404_on_cancel_resyncs(qsim: ts.Sim, tmp_path: pathlib.Path, kind: str) -> None:
    h = BotHarness(qsim, tmp_path, exchange_kind=kind, order_refresh_s=10).start()
    try:
        first = {o["orderHash"] for o in h.open_orders()}
        qsim.fault("cancel_404", count=2)
        h.tick(6)  # refresh due: both cancels answer 404
        h.tick_until(lambda: not first & {o["orderHash"] for o in h.open_orders()})
        no_orphans(h)
        assert len(h.open_orders()) == 2
    finally:
        h.stop()
    assert h.open_orders() == []


def test_malformed_frames_are_skipped(qsim: ts.Sim, tmp_path: pathlib.Path, kind: str) -> None:
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        qsim.fault("malformed_ws")
        for i in range(3):  # book changes away from the top: frames (each after a bad one)
            rest(qsim, h.market_id(), ts.BUY, 20_000 + i * 10_000, 1_000_000)
            h.tick(2)
        qsim.clear_fault("malformed_ws")
        h.tick(2)
        bad = [e for e in h.events("error") if e.get("kind") == "bad_frame"]
        assert bad
        assert len(h.open_orders()) == 2 and h.slot.quoting
        no_orphans(h)
    finally:
        h.stop()


def test_restart_cancels_leftover_orders(qsim: ts.Sim, tmp_path: pathlib.Path) -> None:
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    h = BotHarness(qsim, tmp_path, key=key).start()
    leftovers = {o["orderHash"] for o in h.open_orders()}
    # a crash: the thread dies without its shutdown (no cancels)
    h.bot.shutdown = lambda: None
    h.bot.stop()
    h.thread.join(10)
    h.bot.stream.stop()
    assert {o["orderHash"] for o in h.open_orders()} == leftovers
    h2 = BotHarness(qsim, tmp_path, key=key).start()
    try:
        assert h2.events("leftovers_cancelled")[-1]["count"] == 2
        assert not leftovers & {o["orderHash"] for o in h2.open_orders()}
    finally:
        h2.stop()


def test_dry_run_places_nothing(qsim: ts.Sim, tmp_path: pathlib.Path) -> None:
    h = BotHarness(qsim, tmp_path)
    sb = h.sb
    h.make_exchange = lambda: sb.TurbineExchange(h.cfg, None, None, h.metrics)
    h.bot_kw["dry_run"] = True
    h.start(wait_quotes=False)
    try:
        h.tick_until(lambda: len(h.events("dry_run_quote")) >= 2)
        assert qsim.state()["open_orders"] == []
        assert not h.events("order_placed")
    finally:
        h.stop()


# -- the CLI as a process --------------------------------------------------------------------------
SCRIPTS = ["spike_bot.py"] + (["official_spike_bot.py"] if "official" in KINDS else [])


@pytest.fixture(params=SCRIPTS)
def script(request: pytest.FixtureRequest) -> str:
    return request.param


def _run(
    args: list[str],
    script: str = "spike_bot.py",
    env: dict[str, str] | None = None,
    cwd: pathlib.Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("TURBINE_", "SPIKE_"))}
    e.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        env=e,
        cwd=cwd,
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
    )


def test_cli_bad_input_is_one_clear_line(tmp_path: pathlib.Path) -> None:
    r = _run(["--base-spread", "2", "--sim"], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "base_spread" in r.stderr
    (tmp_path / ".env").write_text("SPIKE_TICK_S=fast\n")
    r = _run([], cwd=tmp_path)
    assert r.returncode == 2 and "SPIKE_TICK_S" in r.stderr and r.stderr.count("\n") == 1
    (tmp_path / ".env").write_text("")
    r = _run([], cwd=tmp_path)
    assert r.returncode == 2 and "TURBINE_PRIVATE_KEY" in r.stderr and "--sim" in r.stderr
    secretish = "0x" + "5e" * 31
    (tmp_path / ".env").write_text(f"TURBINE_PRIVATE_KEY={secretish}\n")
    r = _run([], cwd=tmp_path)
    assert r.returncode == 2 and secretish[2:] not in r.stderr + r.stdout
    r = _run(["--help"])
    assert r.returncode == 0 and "--base-spread" in r.stdout and "0.4" in r.stdout


def test_sigterm_cancels_everything_and_secrets_stay_out_of_logs(
    tmp_path: pathlib.Path, script: str
) -> None:
    """A live-mode process (the real code path: .env key, first-run registration saved to
    .env) against a real-time simulator; SIGTERM leaves no open order and exits 0."""
    sim = ts.start_sim(ts.SimConfig(participants=True, seed=3, market_age_s=5))
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    addr = Account.from_key(key).address.lower()
    env_file = tmp_path / ".env"
    env_file.write_text(f"# test wallet\nTURBINE_PRIVATE_KEY={key}\nSPIKE_ORDER_SIZE=2\n")
    log = tmp_path / "bot.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / script),
            "--host",
            sim.base_url,
            "--env-file",
            str(env_file),
            "--log-file",
            str(log),
            "--state-file",
            str(tmp_path / "state.json"),
            "--tick-s",
            "0.5",
            "--status-every-s",
            "1",
            "--metrics-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith(("TURBINE_", "SPIKE_"))},
    )
    try:
        wait_until(
            lambda: len([o for o in sim.state()["open_orders"] if o["trader"] == addr]) == 2, 30
        )
        # live tuning through the real signal: a new spread from the env file
        env_file.write_text(env_file.read_text() + "SPIKE_BASE_SPREAD=0.3\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: '"event":"params_reloaded"' in log.read_text(), 20)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err[-2000:]
        left = [o for o in sim.state()["open_orders"] if o["trader"] == addr]
        assert left == [], (left, log.read_text()[-3000:])
        text = env_file.read_text()
        assert "# test wallet" in text and "SPIKE_ORDER_SIZE=2" in text
        assert "TURBINE_API_KEY_ID=" in text
        api_secret = text.split("TURBINE_API_PRIVATE_KEY=")[1].split()[0]
        everything = out + err + log.read_text()
        assert key[2:] not in everything and api_secret not in everything
        assert "status" not in err.lower() or "Traceback" not in err
        assert '"event":"shutdown"' in log.read_text()
        assert " QUOTING | BTC:15 T-" in out, out[-1000:]  # the status line
    finally:
        if proc.poll() is None:
            proc.kill()
        sim.stop()


def test_sim_mode_runs_and_stops_cleanly(tmp_path: pathlib.Path, script: str) -> None:
    r = _run(
        [
            "--sim",
            "--speed",
            "60",
            "--duration",
            "5",
            "--log-file",
            str(tmp_path / "l.log"),
            "--state-file",
            str(tmp_path / "s.json"),
        ],
        cwd=tmp_path,
        timeout=60,
        script=script,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    import json

    events = [json.loads(x) for x in (tmp_path / "l.log").read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "start" and names[-1] == "shutdown" and "order_placed" in names
    assert not [e for e in events if e["level"] == "ERROR"]
    assert events[-1]["orders_left_ok"] is True


def test_time_budget_marker() -> None:
    """Keeps the e2e file honest about its cost: the harness ticks on the manual clock."""
    assert quiet_sim_cfg().manual_clock and time.time() > 0


def test_unknown_remembered_market_does_not_block_claims(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    """A state file naming a market this host does not know (another host's, say): the other
    claims still go through; the unknown one is asked again with a backoff, never dropped
    silently: after claim_give_up_s it is given up (an ERROR) and kept in the state file."""
    import json

    key = "0x" + Account.create().key.hex().removeprefix("0x")
    h = BotHarness(qsim, tmp_path, key=key, claim_s=2).start()
    _fill_on_side(h, qsim, winning=True)
    qsim.fault("resolve_now")
    h.tick_until(lambda: h.events("rollover"))
    h.stop()
    state = json.loads(h.state_path.read_text())
    ghost = "0x" + "99" * 32
    state["claims"][ghost] = "0x" + "98" * 20
    h.state_path.write_text(json.dumps(state))
    h2 = BotHarness(qsim, tmp_path, key=key, claim_s=2, claim_give_up_s=600).start()
    try:
        h2.tick_until(lambda: h2.events("claim"))
        assert h2.events("claim_deferred")[0]["market"] == ghost
        asked = len(h2.events("claim_deferred"))
        h2.tick(20, seconds=10)  # backed off: not asked every round, still pending
        assert ghost in h2.bot.claims.pending and h2.bot.claims.strikes[ghost] < 20
        for _ in range(60):
            if h2.events("claim_given_up"):
                break
            h2.tick(seconds=10)
        gone = h2.events("claim_given_up")
        assert gone[0]["market"] == ghost and gone[0]["level"] == "ERROR" and asked == 1
        state = json.loads(h2.state_path.read_text())
        assert ghost not in state["claims"] and ghost in state["claims_given_up"]
    finally:
        h2.stop()


# -- more money-safety paths -----------------------------------------------------------------------
def test_max_allowance_permit_mode(qsim: ts.Sim, tmp_path: pathlib.Path, kind: str) -> None:
    h = BotHarness(qsim, tmp_path, exchange_kind=kind, permit_mode="max").start()
    try:
        assert qsim.state()["allowances"][h.address] == str(ts.MAX_UINT)
        nonce_url = f"{qsim.base_url}/api/v1/contracts/nonce/{ts.CHAINS[137]['usdc']}/{h.address}"
        assert requests.get(nonce_url, timeout=5).json()["nonce"] == 1  # one permit only
    finally:
        h.stop()


def test_firewall_refuses_orders_on_a_stale_feed(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    h = BotHarness(qsim, tmp_path, exchange_kind=kind)
    ex = h.make_exchange()
    ex.gate.blocked = lambda market_id: "stale_feed"
    qm = ex.quick_market(h.sb.MarketKey("BTC", 15))
    with pytest.raises(h.sb.ExchangeError) as e:
        ex.place(
            qm, ts.BUY, ts.YES, 100_000, 1_000_000, int(qsim.clock.now()) + 60, qsim.clock.now()
        )
    assert e.value.kind == "stale_feed"
    assert qsim.state()["counters"].get("orders_placed", 0) == 0


def test_fill_racing_its_cancel_is_counted_once(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """The bid fills while the bot is cancelling it for a refresh: the cancel answers 404,
    the bot reads its orders back and counts the fill exactly once."""
    h = BotHarness(
        qsim, tmp_path, exchange_kind=kind, positions_s=600, orders_sync_s=600, order_refresh_s=4
    ).start()
    try:
        bid, _ = bot_quotes(h)
        qsim.fault("ws_freeze")  # the trade is not seen on the stream: only the cancel
        take(qsim, h.market_id(), ts.SELL, bid["price"], bid["size"])
        h.tick(4)
        assert h.metrics.errors_by_kind.get("not_found", 0) >= 1  # the cancel's 404
        qsim.clear_fault("ws_freeze")
        fills = [e for e in h.events("fill") if e["order_hash"] == bid["orderHash"]]
        assert len(fills) == 1 and fills[0]["size"] == 5.0
        h.tick(10)
        assert len([e for e in h.events("fill") if e["order_hash"] == bid["orderHash"]]) == 1
        assert h.bot.ledger.inventory() == 5.0
    finally:
        h.stop()


def test_exception_in_a_tick_fails_closed_and_the_loop_lives(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    h = BotHarness(qsim, tmp_path)
    sb = h.sb
    real = sb.quotes
    boom = {"on": False}

    def broken(*a: Any, **kw: Any) -> Any:
        if boom["on"]:
            raise RuntimeError("strategy bug")
        return real(*a, **kw)

    h.bot_kw["strategy"] = broken  # the bot's strategy, as a bench baseline is given
    h.start()
    boom["on"] = True
    try:
        h.tick(2)
        assert h.open_orders() == []  # failed closed: orders cancelled
        err = [e for e in h.events("error") if e.get("kind") == "exception"]
        assert err and "strategy bug" in err[0]["error"] and err[0]["job"] == "quote"
        assert h.events("fail_closed")[-1]["reason"] == "exception"
        boom["on"] = False
        h.tick_until(lambda: len(h.open_orders()) == 2)
        assert h.thread.is_alive()
    finally:
        h.stop()


def test_market_loss_kill_switch(qsim: ts.Sim, tmp_path: pathlib.Path) -> None:
    h = BotHarness(qsim, tmp_path, max_loss_per_market=0.01, fair_source="model").start()
    try:
        bid, _ = bot_quotes(h)
        take(qsim, h.market_id(), ts.SELL, bid["price"], bid["size"])
        h.tick_until(lambda: h.events("fill"))
        # the price falls hard: long YES is now worth much less than paid
        qsim.call(lambda: qsim.app.ex.prices.__setitem__("BTC", qsim.app.ex.prices["BTC"] * 0.97))
        h.tick_until(lambda: h.events("kill_switch"))
        h.tick(2)
        assert h.events("kill_switch")[0]["scope"] == "market"
        assert h.open_orders() == []
        assert h.events("fail_closed")[-1]["reason"] == "market_loss_limit"
    finally:
        h.stop()


def test_metrics_endpoint(qsim: ts.Sim, tmp_path: pathlib.Path) -> None:
    port = free_port()
    h = BotHarness(qsim, tmp_path, metrics_port=port).start()
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for name in (
            "spike_orders_placed_total",
            "spike_fill_ratio",
            "spike_feed_age_seconds",
            "spike_request_seconds_bucket",
            "spike_pnl_realized_usdc",
            "spike_inventory_shares",
        ):
            assert name in text
        assert 'spike_orders_placed_total{bot="spike_bot",market="BTC:15"} 2.0' in text
    finally:
        h.stop()


def test_live_tuning_reload_applies_valid_and_keeps_old_on_invalid(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    h = BotHarness(qsim, tmp_path)
    sb = h.sb
    env = tmp_path / "tune.env"
    env.write_text("SPIKE_BASE_SPREAD=0.40\n")
    h.bot_kw["reloader"] = lambda: sb.load_config({}, sb.read_env_file(str(env)), h.cfg)[0]
    h.start()
    try:
        env.write_text("SPIKE_BASE_SPREAD=0.30\nSPIKE_TICK_S=1\n")
        h.bot.request_reload()
        h.tick_until(lambda: h.events("params_reloaded"))
        ev = h.events("params_reloaded")[-1]
        assert ev["changed"] == {"base_spread": [0.4, 0.3]} and ev["needs_restart"] == ["tick_s"]

        def spread() -> float | None:
            oo = h.open_orders()  # one read: the bot may requote between two
            sides = {o["side"]: o["price"] for o in oo}
            if len(oo) != 2 or set(sides) != {ts.BUY, ts.SELL}:
                return None
            return (sides[ts.SELL] - sides[ts.BUY]) / 1e6

        h.tick_until(lambda: (sp := spread()) is not None and abs(sp - 0.30) < 0.002)
        env.write_text("SPIKE_BASE_SPREAD=2.5\n")  # invalid: keep 0.30
        h.bot.request_reload()
        h.tick(2)
        bad = [e for e in h.events("error") if e.get("kind") == "reload_invalid"]
        assert bad and "base_spread" in bad[-1]["reason"]
        assert h.bot.cfg.base_spread == 0.30
        assert len(h.open_orders()) == 2
    finally:
        h.stop()


def test_sim_runs_start_from_a_fresh_state(qsim: ts.Sim, tmp_path: pathlib.Path) -> None:
    """Each --sim run is a new simulated world: it must not inherit claims or PnL."""
    import json

    h = BotHarness(qsim, tmp_path)
    h.state_path.write_text(
        json.dumps({"claims": {"0x" + "99" * 32: "0x" + "98" * 20}, "realized_total": 12.5})
    )
    h.start(wait_quotes=False)
    h.bot.stop()
    h.thread.join(10)
    assert h.events("start")[0]["pending_claims"] == 1  # a live run keeps its state
    h2 = BotHarness(qsim, tmp_path)
    h2.state_path.write_text(
        json.dumps({"claims": {"0x" + "99" * 32: "0x" + "98" * 20}, "realized_total": 12.5})
    )
    log = h2.sb.EventLog(str(h2.log_path), "spike_bot")
    bot = h2.sb.Bot(h2.cfg, h2.make_exchange(), qsim.clock, log, h2.metrics, fresh_state=True)
    import threading

    th = threading.Thread(target=bot.run, daemon=True)
    th.start()
    wait_until(lambda: all(s.m for s in bot.slots))
    bot.stop()
    th.join(10)
    log.close()
    assert h2.events("start")[-1]["pending_claims"] == 0 and bot.ledger.realized_total == 0.0


# -- settlement failures ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["spike", "official"])
def test_fills_failing_at_settlement_are_reversed(tmp_path: pathlib.Path, kind: str) -> None:
    """A simulated hour with participants where 20% of trades fail on-chain: each failed fill
    of ours is taken back once (`fill_reversed`), no position ever needs reconciling, and at
    the end the bot's position and realized PnL equal the simulator's ledger for its address."""
    sim = ts.start_sim(ts.SimConfig(manual_clock=True, start_time=SIM_START + 1, seed=21))
    h = BotHarness(sim, tmp_path, exchange_kind=kind, claim_s=2, tick_s=10.0)
    try:
        sim.fault("settle_fail", fraction=0.2)
        h.start()
        h.tick(360)  # a simulated hour in 10 s ticks: four markets
        sim.clear_fault("settle_fail")
        h.tick(5)
        addr = h.address
        ev = h.events()
        rev = [e for e in ev if e["event"] == "fill_reversed"]
        fails = [
            f
            for f in requests.get(f"{sim.base_url}/api/v1/failed-trades", timeout=5).json()[
                "failedTrades"
            ]
            if addr in (f["buyerAddress"], f["sellerAddress"])
        ]
        assert fails and len(rev) == len(fails)  # every failure of ours, once
        print(f"{kind}: {len(h.events('fill'))} fills, {len(rev)} reversed")
        assert len({e["tx"] for e in rev}) == len(rev)
        assert not [e for e in ev if e["event"] == "position_reconciled"]
        m = h.slot.m
        chain = sim.call(lambda: sim.app.ex.ledger.pos(addr, m.qm.market_id))
        assert m.pnl.position == pytest.approx((chain.yes - chain.no) / 1e6)
        # resolve the current market, claim everything, stop (cancels): the ledger's USDC is
        # the start plus every realized PnL
        sim.fault("resolve_now")
        h.tick_until(lambda: not h.bot.claims.pending and h.slot.m.qm.market_id != m.qm.market_id)
        h.tick(3)
        h.stop()
        st = sim.state()
        assert not [o for o in st["open_orders"] if o["trader"] == addr]
        realized, _ = h.bot.ledger.pnl_now()
        assert st["balances"][addr] / 1e6 - 1000.0 == pytest.approx(realized, abs=1e-3)
        assert st["invariants_ok"]
    finally:
        h.stop()
        sim.stop()


@pytest.mark.parametrize("kind", ["spike", "official"])
def test_no_sell_of_held_shares_without_the_ctf_approval(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """The relayer refuses the start-up approval: the bot quotes while flat, but once it holds
    YES it quotes no SELL (it would fail at settlement) and asks again every 30 s; when the
    relayer accepts, the SELL comes back and its fill settles."""
    qsim.fault("ctf_reject")
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        errs = [e for e in h.events("error") if e["kind"] == "ctf_approval_failed"]
        assert len(errs) == 1 and not h.events("approval_requested")
        bid, _ = bot_quotes(h)
        take(qsim, h.market_id(), ts.SELL, bid["price"], bid["size"])
        h.tick_until(lambda: h.bot.ledger.inventory() == 5.0)
        h.tick(3)
        assert {o["side"] for o in h.open_orders()} == {ts.BUY}  # no SELL of held shares
        h.tick(15)  # 30 s: asked again, refused again
        assert len([e for e in h.events("error") if e["kind"] == "ctf_approval_failed"]) >= 2
        qsim.clear_fault("ctf_reject")
        h.tick_until(lambda: h.events("approval_requested"), max_ticks=20)
        h.tick_until(lambda: ts.SELL in {o["side"] for o in h.open_orders()})
        ask = next(o for o in h.open_orders() if o["side"] == ts.SELL)
        take(qsim, h.market_id(), ts.BUY, ask["price"], ask["size"])
        h.tick(4)
        assert h.address in qsim.state()["ctf_approved"]
        fails = requests.get(f"{qsim.base_url}/api/v1/failed-trades", timeout=5).json()
        assert not fails["failedTrades"]
        assert h.bot.ledger.inventory() == 0.0
    finally:
        h.stop()


def test_asset_price_in_the_wrong_unit_quotes_nothing_model_based(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    h = BotHarness(qsim, tmp_path, fair_source="model").start()
    try:
        real = h.bot.ex.asset_price
        h.bot.ex.asset_price = lambda a: None if (p := real(a)) is None else p * 1e8
        h.tick_until(lambda: h.open_orders() == [])
        err = [e for e in h.events("error") if e["kind"] == "price_scale"]
        assert len(err) == 1 and err[0]["ratio"] == pytest.approx(1e8, rel=0.05)
        assert h.events("fail_closed")[-1]["reason"] == "no_fair_value"
        h.tick(3)
        assert h.open_orders() == []
        h.bot.ex.asset_price = real
        h.tick_until(lambda: len(h.open_orders()) == 2)
    finally:
        h.stop()


@pytest.mark.parametrize("kind", ["spike", "official"])
def test_streamed_oracle_price_and_its_fallback(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """price_source=pyth: the model reads Hermes' stream and Turbine's price endpoint is left
    alone; a frozen stream goes stale after price_max_age_s and the poll stands in (quoting
    goes on, never on the stale price); the stream back, the poll stops again."""
    h = BotHarness(
        qsim,
        tmp_path,
        exchange_kind=kind,
        price_source="pyth",
        hermes_url=qsim.base_url,
        fair_source="model",
    ).start()
    try:
        h.tick_until(lambda: h.bot.prices.state("BTC")[0] == "pyth")
        n0 = qsim.state()["counters"].get("price_requests", 0)
        h.tick(10)
        assert qsim.state()["counters"].get("price_requests", 0) == n0  # no poll needed
        assert h.bot.prices.state("BTC")[1] <= h.cfg.price_max_age_s
        qsim.fault("hermes_freeze")
        h.tick_until(lambda: h.bot.prices.state("BTC")[0] == "turbine", max_ticks=10)
        h.tick(3)
        assert qsim.state()["counters"]["price_requests"] > n0  # the poll stands in
        src = h.events("price_source")
        assert src[-1]["source"] == "turbine" and src[-1]["level"] == "WARNING"
        assert len(h.open_orders()) == 2 and h.slot.quoting
        qsim.clear_fault("hermes_freeze")
        h.tick_until(lambda: h.bot.prices.state("BTC")[0] == "pyth", max_ticks=10)
        h.tick(2)
        n1 = qsim.state()["counters"]["price_requests"]
        h.tick(5)
        assert qsim.state()["counters"]["price_requests"] == n1
        assert h.events("price_source")[-1]["source"] == "pyth"
    finally:
        h.stop()


def test_reload_finds_the_running_bot_and_the_pane_says_what_changed(
    tmp_path: pathlib.Path,
) -> None:
    """`spike_bot.py reload` reads the pid from the state file's lock and sends SIGHUP; the
    bot's pane prints the change and its status line leads with time and state."""
    env = tmp_path / "bot.env"
    env.write_text("SPIKE_BASE_SPREAD=0.04\n")
    files = ["--env-file", str(env), "--state-file", str(tmp_path / "s.json"),
             "--log-file", str(tmp_path / "l.log")]
    e = {k: v for k, v in os.environ.items() if not k.startswith(("TURBINE_", "SPIKE_"))}
    p = subprocess.Popen(
        [sys.executable, str(ROOT / "spike_bot.py"), "--sim", "--speed", "30", "--duration", "6",
         "--status-every-s", "1", *files],
        env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        wait_until(lambda: (tmp_path / "l.log").exists() and "order_placed" in
                   (tmp_path / "l.log").read_text(), 20)
        env.write_text("SPIKE_BASE_SPREAD=0.06\n")
        r = _run(["reload", *files], cwd=tmp_path)
        assert r.returncode == 0 and "SIGHUP sent" in r.stdout, r.stderr
        out, _ = p.communicate(timeout=30)
    finally:
        p.kill()
    assert "params_reloaded" in out and "base_spread" in out
    status = [x for x in out.splitlines() if " spike QUOTING" in x or " spike CLOSED" in x]
    assert status and all(len(x) <= 120 for x in status), status[:2]
    r = _run(["reload", *files], cwd=tmp_path)  # the bot has stopped
    assert r.returncode == 1 and "no bot is running" in r.stderr


def test_a_fast_oracle_move_pauses_quoting_when_turned_on(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    """pause_move_bp (off by default) is one rule in STOPS: a move of the oracle price past it
    within pause_window_s cancels and stops the market (`fast_move`) until the window holds a
    smaller move; a price in another unit (the unit check's business) never trips it."""
    h = BotHarness(qsim, tmp_path, pause_move_bp=8.0, pause_window_s=3.0).start()
    try:
        price = qsim.state()["prices"]["BTC"]
        qsim.call(lambda: qsim.app.ex.prices.__setitem__("BTC", price * 1.0015))  # 15 bp
        h.tick_until(lambda: h.events("fail_closed"), 5)
        assert h.events("fail_closed")[-1]["reason"] == "fast_move"
        assert h.open_orders() == []
        h.tick_until(lambda: len(h.open_orders()) == 2, 10)  # the window moves on: resumed
        assert h.events("resumed")[-1]["after"] == "fast_move"
    finally:
        h.stop()


def test_no_quoting_in_a_markets_first_seconds_when_asked(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    """open_quiet_s (off by default) is one rule in STOPS: the next market's first orders go
    out no sooner than open_quiet_s after its start (simulated time)."""
    h = BotHarness(qsim, tmp_path, open_quiet_s=20.0).start(wait_quotes=False)
    try:
        qsim.fault("resolve_now")  # a new market starts now
        roll = h.tick_until(lambda: h.events("rollover"))[0]
        new, start = roll["new_market"], qsim.state()["markets"]["BTC:15"]["startTime"]
        h.tick_until(lambda: len(h.open_orders(new)) == 2, 30)
        first = next(e for e in h.events("order_placed") if e["market"] == new)
        assert start + 20 <= first["t"] <= start + 20 + 2 * h.cfg.tick_s, (first["t"], start)
        assert "market_opening" in {e["reason"] for e in h.events("fail_closed")}
    finally:
        h.stop()
