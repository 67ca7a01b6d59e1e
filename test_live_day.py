"""The live day's surprises (issue 28): what a careful operator still meets on the real exchange
in a 24-hour run. Each test fails on the code before the fix and passes after; both adapters
where they differ.

    * a restart in the middle of a market carries its PnL through every path that rebuilds it
      (a fill reversed at settlement, a reconciled position, the rollover)
    * a redirect is a failing reply, never followed
    * a position read is bounded by what our orders could have filled since the last good one
    * a stream that repeats a stale book is found out, confirmed from REST and reconnected
    * a claim waits as long as resolution takes, through claim endpoints that answer 404
    * a cancel confirmed by the stream costs no REST read-back
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from eth_account import Account

import turbine_sim as ts
from conftest import BotHarness, wait_until
from test_spike_bot import KINDS, bot_quotes, take


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def sample_sum(h: BotHarness, name: str) -> float:
    """The sum of a metric's samples over every label (the bot's own registry)."""
    return sum(
        x.value for m in h.metrics.registry.collect() for x in m.samples if x.name == name
    )


def pnl_of(h: BotHarness) -> tuple[float, float, float]:
    p = h.slot.m.pnl
    return round(p.position, 6), round(p.avg, 6), round(p.realized, 6)


def restarted_with_a_position(
    sim: ts.Sim, tmp: pathlib.Path, kind: str, **kw: Any
) -> tuple[BotHarness, tuple[float, float, float]]:
    """A bot that bought 5, sold 2 (some realized PnL), stopped and started again in the same
    market: the second harness and the PnL it carried over (position, average, realized)."""
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    h = BotHarness(sim, tmp, key=key, exchange_kind=kind, **kw).start()
    try:
        bid, _ = bot_quotes(h)
        take(sim, h.market_id(), ts.SELL, bid["price"], bid["size"])  # we buy 5
        h.tick_until(lambda: len(h.events("fill")) >= 1)
        h.tick(3)
        _, ask = bot_quotes(h)
        take(sim, h.market_id(), ts.BUY, ask["price"], 2_000_000)  # we sell 2 of them
        h.tick_until(lambda: len(h.events("fill")) >= 2)
        h.tick(8)  # settled: the exchange's position agrees with ours
        before = pnl_of(h)
        assert before[0] == 3.0 and before[2] > 0
    finally:
        h.stop()
    h2 = BotHarness(sim, tmp, key=key, exchange_kind=kind, **kw).start()
    h2.tick(3)
    assert pnl_of(h2) == before  # carried over
    return h2, before


# -- 1. a restart's PnL survives every rebuild ---------------------------------------------------
def test_restart_then_a_failed_settlement_keeps_the_carried_pnl(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """The issue's case: carried position, average and realized, then a BUY that fails at
    settlement: taken back, the carried PnL stands (it was wiped to 0 / 0 / 0)."""
    h, carried = restarted_with_a_position(qsim, tmp_path, kind)
    try:
        n = len(h.events("fill"))
        qsim.fault("settle_fail", count=1)
        bid, _ = bot_quotes(h)
        take(qsim, h.market_id(), ts.SELL, bid["price"], bid["size"])
        h.tick_until(lambda: len(h.events("fill")) > n)
        assert pnl_of(h)[0] == carried[0] + bid["size"] / 1e6  # booked first
        h.tick_until(lambda: h.events("fill_reversed"), 40)
        rev = h.events("fill_reversed")[-1]
        assert rev["booked"] is True
        assert pnl_of(h) == carried, (pnl_of(h), carried)
        h.tick(8)
        assert not h.events("position_reconciled")
    finally:
        h.stop()


def test_restart_then_a_reconcile_keeps_the_carried_realized(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    """A position the exchange shows beyond ours after the restart (3 more YES): reconciled at
    fair on top of the carried position; the carried realized PnL is untouched."""
    h, carried = restarted_with_a_position(qsim, tmp_path, "spike")
    try:
        addr, mid = h.address, h.market_id()

        def more() -> None:
            qsim.app.ex.ledger.pos(addr, mid).yes += 3_000_000

        qsim.call(more)
        h.tick_until(lambda: h.events("position_reconciled"), 20)
        pos, _, realized = pnl_of(h)
        assert pos == carried[0] + 3 and realized == carried[2]
    finally:
        h.stop()


def test_restart_then_rollover_realizes_the_carried_pnl(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    """The market ends after the restart: its carried realized PnL goes to the run's total,
    and its carried position is what resolution settles."""
    h, carried = restarted_with_a_position(qsim, tmp_path, "spike")
    try:
        old = h.market_id()
        realized0 = h.bot.ledger.realized_total
        qsim.fault("resolve_now")
        h.tick_until(lambda: h.events("rollover"))
        assert h.bot.ledger.realized_total == pytest.approx(realized0 + carried[2])
        settled = h.bot.claims.settled.get(old) or {}
        if old in h.bot.claims.pending:  # not yet claimed: the position waits for resolution
            assert settled["position"] == pytest.approx(carried[0])
        h.tick_until(lambda: old not in h.bot.claims.pending, 30)
        won = [e for e in h.events() if e["event"] in ("claim", "claim_none")][-1]
        settle = carried[0] * ((1.0 if won["yes_won"] else 0.0) - carried[1])
        assert won["settled_pnl"] == pytest.approx(settle, abs=1e-6)
    finally:
        h.stop()


# -- 2. a redirect is a failing reply ------------------------------------------------------------
class CountingHost:
    """Another host on loopback that counts what reaches it and answers every request with a
    plausible JSON body (what a redirect would have the bot read as the exchange's)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.hits: list[str] = []
        hits = self.hits

        class H(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                hits.append(f"{self.command} {self.path}")
                body = b'{"orders": [], "orderHash": "0x00", "bids": [], "asks": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _any

            def log_message(self, *a: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_redirect_is_never_followed(qsim: ts.Sim, tmp_path: pathlib.Path, kind: str) -> None:
    """Every REST reply a 307 to another host: nothing reaches that host, each refusal is
    logged (`reply_rejected`, naming the redirect) and counted, no order goes out while it
    lasts, and quoting resumes when the exchange answers again."""
    other = CountingHost()
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        placed = len(h.events("order_placed"))
        qsim.fault("redirect", to=other.url)
        h.tick(20)
        assert other.hits == []
        why = [e["why"] for e in h.events("reply_rejected")]
        assert why and all("redirect 307 to 127.0.0.1" in w for w in why), why[:3]
        assert len(h.events("order_placed")) == placed
        assert sample_sum(h, "spike_replies_rejected_total") >= len(why)
        qsim.clear_fault("redirect")
        h.tick_until(lambda: len(h.open_orders(h.market_id())) == 2, 20)
        assert other.hits == []
    finally:
        h.stop()
        other.stop()


# -- 3. a believable lie about our position ------------------------------------------------------
def test_a_position_read_beyond_what_our_orders_could_fill_is_refused(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """Short 10 (NO held), then positions replies that swap YES and NO: +10 YES is under the
    market's capacity but no order of ours could have moved the net position by +20 since
    the last good read. `position_implausible`, the market fails closed with the last good
    position kept, nothing is reconciled, and it quotes again when the truth comes back."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        for n in (1, 2):
            _, ask = bot_quotes(h)
            take(qsim, h.market_id(), ts.BUY, ask["price"], ask["size"])  # we sell 5
            h.tick_until(lambda n=n: len(h.events("fill")) >= n)
            h.tick(3)
        h.tick(6)
        assert h.slot.m.pnl.position == -10.0 and h.slot.m.exch_no == 10_000_000
        qsim.fault(
            "corrupt", path="/api/v1/positions", at="positions",
            set={"yesShares": 10_000_000, "noShares": 0},
        )
        h.tick(12)
        ev = h.events("position_implausible")
        assert len(ev) == 1 and ev[0]["yes"] == 10.0 and ev[0]["kept"] == [0.0, 10.0], ev
        assert "since the last good read" in ev[0]["why"]
        assert not h.events("position_reconciled")
        assert h.slot.m.pnl.position == -10.0
        assert h.events("fail_closed")[-1]["reason"] == "position_implausible"
        assert h.open_orders(h.market_id()) == []
        qsim.clear_fault("corrupt")
        h.tick_until(lambda: h.events("position_believable"), 10)
        h.tick_until(lambda: len(h.open_orders(h.market_id())) == 2, 10)
    finally:
        h.stop()


def test_a_buy_and_a_sell_settling_after_a_read_are_believed(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    """Found in a contested bench run (2026-12-06): both sides filled twice, a positions read
    came before the chain settled them (net lag 0, so nothing looked pending), then YES and NO
    each grew by 10 at settlement, beyond what our orders since that read could fill, and the
    market failed closed as `position_implausible` for its last 342 s. The window bounds the
    net position (the number the engine trades on), YES and NO alone only by capacity; the
    net is bounded as before (a lie about it is refused; so, for a few seconds, is a batch
    that settles our sells before our buys: the two cannot be told apart). The reads are put
    to the engine's own check while it is parked between ticks (when a read lands in the
    settlement lag is thread timing in a harness run)."""
    h = BotHarness(qsim, tmp_path).start()
    try:
        s, fills, m = h.slot, h.bot.fills, h.slot.m
        assert m.good is not None and (m.good[0], m.good[1]) == (0, 0)
        for side, px in ((ts.SELL, 600_000), (ts.SELL, 600_000), (ts.BUY, 400_000),
                         (ts.BUY, 400_000)):
            fills.on_fill(s, "0x" + "ab" * 32, side, px, 5_000_000)  # matched, not settled
        assert m.pnl.position == 0.0
        assert fills.believable(s, 0, 0)  # the read in the settlement lag: nothing moved yet
        assert fills.believable(s, 10_000_000, 10_000_000)  # settled: YES and NO each +10
        assert not h.events("position_implausible")
        # the net is still held to what our orders explain: +10 net from nowhere is refused
        assert not fills.believable(s, 10_000_000, 0)
        ev = h.events("position_implausible")
        assert len(ev) == 1 and "net moved +10" in ev[0]["why"], ev
    finally:
        h.stop()


# -- 4. a stream that keeps talking but has stopped telling the truth ---------------------------
def test_a_stream_repeating_a_stale_book_is_found_out(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """The publisher sends our market's first book every second, unchanged, while the market
    moves (a new best bid rests): within book_confirm_s and a tick, REST disproves it
    (`book_unconfirmed`), REST's book stands in (the bot sees the new bid and keeps quoting,
    fresh), the stream is reconnected (`stream_reconnect`, a WARNING naming the repeats); when
    the publisher recovers, the stream's books are used again and the REST polls stop."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        bid, _ = bot_quotes(h)
        qsim.fault("ws_stuck")
        h.tick(2)
        t0 = qsim.clock.now()
        new_bid = bid["price"] + 10_000
        from test_spike_bot import rest

        rest(qsim, h.market_id(), ts.BUY, new_bid, 3_000_000)
        h.tick_until(lambda: h.events("book_unconfirmed"), 12)
        assert qsim.clock.now() - t0 <= h.cfg.book_confirm_s + 2 * h.cfg.tick_s
        assert h.events("book_unconfirmed")[0]["rest"][0] == new_bid
        h.tick_until(lambda: h.events("stream_reconnect"), 10)
        ev = h.events("stream_reconnect")[0]
        assert ev["level"] == "WARNING" and "repeats" in ev["reason"]
        h.tick(10)
        book = h.bot.feed.book(h.market_id())
        assert book is not None and book.best_bid == new_bid  # REST's, not the stuck stream's
        assert not h.events("fail_closed")  # fresh all along: REST stood in
        assert len(h.open_orders(h.market_id())) == 2
        qsim.clear_fault("ws_stuck")
        wait_until(h.bot.feed.is_connected)
        rest(qsim, h.market_id(), ts.SELL, 990_000, 1_000_000)  # the next change is streamed
        h.tick(3)
        assert h.bot.feed.in_dispute(h.market_id()) is None
        # the stream's books are used again (its snapshot may trail a REST poll a moment)
        wait_until(lambda: h.bot.feed.book(h.market_id()).stream, 5)
    finally:
        h.stop()


# -- 5. resolution takes its time ----------------------------------------------------------------
def long_yes_that_wins(h: BotHarness, sim: ts.Sim) -> int:
    """Buy 5 YES, then move the price well above the strike: YES wins at resolution."""
    bid, _ = bot_quotes(h)
    take(sim, h.market_id(), ts.SELL, bid["price"], bid["size"])
    h.tick_until(lambda: h.events("fill"))
    strike = sim.state()["markets"]["BTC:15"]["startPrice"] / 1e6
    sim.call(lambda: sim.app.ex.prices.__setitem__("BTC", strike * 1.01))
    return int(bid["size"])


def test_a_claim_waits_through_a_404_outage_of_the_claim_endpoint(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """claim-data answers 404 for three simulated minutes after the market ended: the claim is
    deferred (a WARNING, asked again with a backoff), never dropped, and paid when the venue
    answers again."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind, claim_s=10).start()
    try:
        size = long_yes_that_wins(h, qsim)
        old = h.market_id()
        qsim.fault("http_404", path=f"/api/v1/users/{h.address}/claim-data")
        qsim.fault("resolve_now")
        h.tick_until(lambda: h.events("rollover"))
        t0 = qsim.clock.now()
        while qsim.clock.now() - t0 < 180:
            h.tick(seconds=5)
        assert h.events("claim_deferred")[0]["market"] == old
        assert old in h.bot.claims.pending and not h.events("claim_given_up")
        asked = qsim.state()["counters"]["requests"]
        qsim.clear_fault("http_404")
        claim = h.tick_until(lambda: h.events("claim"), 150)[0]
        assert claim["market"] == old and claim["amount"] == size / 1e6
        assert old not in h.bot.claims.pending
        assert qsim.state()["counters"]["requests"] > asked
    finally:
        h.stop()


def test_a_failed_resolution_is_waited_for_and_alerted_then_claimed(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    """The market's resolution fails and is retried a cycle (15 minutes) later: the claim
    waits, a `claim_waiting` ERROR goes out once claim_alert_s have passed, and the winnings
    are claimed when the market resolves."""
    h = BotHarness(qsim, tmp_path, claim_s=10, claim_alert_s=300).start()
    try:
        size = long_yes_that_wins(h, qsim)
        old = h.market_id()
        end = qsim.state()["markets"]["BTC:15"]["endTime"]
        qsim.fault("resolve_fail", count=1)
        h.tick_until(lambda: h.events("rollover"), 500)
        h.tick_until(lambda: h.events("claim_waiting"), 200)
        w = h.events("claim_waiting")[0]
        assert w["level"] == "ERROR" and w["market"] == old and w["waited_s"] >= 300
        claim = h.tick_until(lambda: h.events("claim"), 600)[0]
        assert claim["market"] == old and claim["amount"] == size / 1e6
        assert claim["t"] >= end + 900  # the next cycle: a claim can wait that long
        assert len(h.events("claim_waiting")) == 1 and not h.events("claim_given_up")
    finally:
        h.stop()


def test_usdc_waiting_in_a_claim_is_not_quoted_with(qsim: ts.Sim, tmp_path: pathlib.Path) -> None:
    """The wallet's USDC is in a winning position whose resolution is delayed: after the
    rollover the budgets are read again (the position is now a claim, not capital), so the
    bot does not quote what the wallet cannot fund: no storm of balance rejections, the
    limit said once per side (`risk_limit`) and shown on the status line with the claim;
    when the claim pays, both sides come back."""
    # the periodic balance read far apart: the budgets must not wait for it
    h = BotHarness(qsim, tmp_path, claim_s=10, balance_s=3600).start()
    try:
        long_yes_that_wins(h, qsim)
        qsim.fault("resolve_fail", count=1)
        # the orders pulled (T-minus), the last periodic balance read done: the wallet spent
        h.tick_until(lambda: h.slot.m.qm.end - qsim.clock.now() < h.cfg.tminus_pull_s, 500)
        qsim.call(lambda: qsim.app.ex.ledger.balance.__setitem__(h.address, 1_000_000))
        n = len(h.events())
        h.tick_until(lambda: h.events("rollover"), 500)
        h.tick(30)
        after = h.events()[n:]
        after = after[[e["event"] for e in after].index("rollover") :]
        refused = [e for e in after if e["event"] == "order_rejected" and "balance" in e["reason"]]
        assert len(refused) <= 1, refused
        limits = [e for e in after if e["event"] == "risk_limit" and e["state"] == "on"]
        assert {e["side"] for e in limits} == {"BUY", "SELL"} and len(limits) == 2
        assert {e["limit"] for e in limits} == {"budget"}
        line = h.bot.status.line()
        assert "LIMIT(" in line and "claims 1 (5 sh)" in line, line
        assert h.open_orders(h.market_id()) == []
        h.tick_until(lambda: h.events("claim"), 600)
        h.tick_until(lambda: len(h.open_orders(h.market_id())) == 2, 10)
    finally:
        h.stop()


# -- 6. a cancel the stream confirms costs no read-back ------------------------------------------
def test_a_requote_confirmed_by_the_stream_reads_nothing_back(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """The price moves the quotes: each replaced side's cancel is confirmed by the stream (its
    cancel event, its level gone from the book) and the new order goes out in the same step
    without reading our orders back over REST. (A cancel that lies is read back:
    test_boundary's test_a_cancel_that_lies_never_doubles_a_side.)"""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind, orders_sync_s=3600).start()
    try:
        price = qsim.state()["prices"]["BTC"]
        replaced = 0
        for i in range(8):  # 10 bp up, 10 bp down: past the tolerance, both ways
            before = {o["orderHash"] for o in h.open_orders(h.market_id())}
            p = price * (1 + 0.001 * (-1) ** i)
            qsim.call(lambda p=p: qsim.app.ex.prices.__setitem__("BTC", p))
            h.tick()
            after = {o["orderHash"] for o in h.open_orders(h.market_id())}
            assert len(after) == 2
            replaced += len(before - after)
        assert replaced >= 8
        assert h.slot.c.cancels_streamed >= replaced - 1
        assert h.slot.c.cancels_read_back <= 1
        syncs = [
            x.value
            for m in h.metrics.registry.collect()
            for x in m.samples
            if x.name == "spike_requests_total" and x.labels.get("endpoint") == "orders_sync"
        ]
        assert sum(syncs) <= 2, syncs  # startup and at most one read-back
    finally:
        h.stop()
