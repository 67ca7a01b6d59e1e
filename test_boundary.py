"""What the bot refuses to believe (issue 20): replies that cannot be true, sent by turbine_sim's
`corrupt`, `cancel_ignore` and `ws_crossed` faults, and a disk that fails. For both bots: the
engine stays alive, places no order it should not, books nothing from the bad reply, trips no
loss limit, leaves no order behind at stop, and quotes again within a few ticks of the end of
the fault."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

import spike_bot as sb
import turbine_sim as ts
from conftest import BotHarness
from test_spike_bot import KINDS, bot_quotes, rest, take

OTHER_MARKET = "0x" + "cd" * 32
OTHER_CONTRACT = "0x" + "ce" * 20


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def rejected(h: BotHarness, endpoint: str | None = None) -> list[dict[str, Any]]:
    return [e for e in h.events("reply_rejected") if endpoint in (None, e["endpoint"])]


def quoting_again(h: BotHarness, ticks: int = 4) -> None:
    """Both sides rest on the real market again within `ticks` ticks."""
    h.tick_until(lambda: {o["side"] for o in h.open_orders(h.market_id())} == {0, 1}, ticks)


def nothing_left(h: BotHarness) -> None:
    h.stop()
    assert h.open_orders() == []
    assert h.events("shutdown")[-1]["orders_left_ok"] is True


def test_order_rows_of_another_market_are_never_booked(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """GET /orders answers rows for another market (an API ignoring the filter), all filled:
    no fill is booked, the PnL stays 0, no kill switch; the market fails closed meanwhile."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind, orders_sync_s=2).start()
    try:
        rule = {"set": {"marketId": OTHER_MARKET, "filledSize": 5_000_000}}
        qsim.fault("corrupt", path="/api/v1/orders", at="orders", **rule)
        h.tick(8)
        assert rejected(h) and {e["field"] for e in rejected(h)} == {"marketId"}
        assert not h.events("fill") and not h.events("kill_switch")
        assert h.bot.ledger.pnl_now() == (0.0, 0.0) and h.slot.m.pnl.position == 0.0
        assert h.events("fail_closed")[-1]["reason"] == "bad_replies"
        qsim.clear_fault("corrupt")
        quoting_again(h)
        assert not h.events("fill")
    finally:
        nothing_left(h)


@pytest.mark.parametrize("shares", [10**9, -5])
def test_an_impossible_position_is_an_alert_never_a_fill(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str, shares: int
) -> None:
    """1e9 shares, or negative ones: never reconciled into PnL (no kill switch), the market
    fails closed with the last good position kept, and resumes when positions make sense."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        qsim.fault("corrupt", path="/api/v1/positions", at="positions",
                   set={"yesShares": shares * 1_000_000})
        h.tick(20)  # 40 s: far past settle_grace_s, when a mismatch used to be reconciled
        assert not h.events("position_reconciled") and not h.events("kill_switch")
        assert h.slot.m.pnl.position == 0.0 and h.bot.ledger.pnl_now()[0] == 0.0
        if shares > 0:
            ev = h.events("position_implausible")
            assert len(ev) == 1 and ev[0]["yes"] == shares and ev[0]["kept"] == [0.0, 0.0]
            assert h.events("fail_closed")[-1]["reason"] == "position_implausible"
        else:
            assert rejected(h, "positions")[0]["field"] == "yesShares/noShares"
            assert h.events("fail_closed")[-1]["reason"] == "bad_replies"
        assert h.open_orders() == []  # closed: nothing rests while we cannot know our position
        qsim.clear_fault("corrupt")
        quoting_again(h)
    finally:
        nothing_left(h)


@pytest.mark.parametrize(
    "lie", [{"asset": "ETH"}, {"endTime": 1_000}, {"intervalMinutes": 60, "startPrice": 1}]
)
def test_a_quick_market_that_cannot_be_ours_is_never_rolled_onto(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str, lie: dict[str, Any]
) -> None:
    """A quick-market reply for another asset, one already ended, or one with an absurd
    strike: the bot stays on its market and quotes on; the real next market is taken at the
    first good poll after the current one ends."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        real = h.market_id()
        qsim.fault("corrupt", path="/api/v1/quick-markets/BTC", at="quickMarket",
                   set={"marketId": OTHER_MARKET, **lie})
        h.tick(12)  # 24 s: two or three polls
        # refused at the boundary; the SDK's adapter first reads the market it names, which
        # the exchange does not know (404): refused there, as an error of the poll
        refused = rejected(h, "quick_market") or (
            kind == "official" and [e for e in h.events("error") if e.get("job") == "rollover"]
        )
        assert refused and not h.events("rollover")
        assert h.slot.m.qm.market_id == real
        assert {o["side"] for o in h.open_orders(real)} == {0, 1}  # still quoting
        qsim.clear_fault("corrupt")
        qsim.fault("resolve_now")  # the market ends: the next good poll rolls
        h.tick_until(lambda: h.events("rollover"), 8)
        assert h.slot.m.qm.market_id == h.market_id() != real
        quoting_again(h)
    finally:
        nothing_left(h)


def test_a_claim_row_of_another_contract_never_decides_our_claim(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """claim-data answers a row for another contract (with nothing to pay): our market is
    neither claimed nor dropped on its word; once the reply is right, the win is claimed."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind, claim_s=2).start()
    try:
        first = h.market_id()
        bid, _ = bot_quotes(h)
        take(qsim, first, ts.SELL, bid["price"], bid["size"])
        h.tick_until(lambda: h.events("fill"))
        strike = qsim.state()["markets"]["BTC:15"]["startPrice"] / 1e6
        qsim.call(lambda: qsim.app.ex.prices.__setitem__("BTC", strike * 1.001))  # YES wins
        qsim.fault("corrupt", path="/api/v1/users/", at="markets",
                   set={"market_address": OTHER_CONTRACT, "winning_balance": 0})
        qsim.fault("resolve_now")
        h.tick_until(lambda: h.events("rollover"))
        h.tick(10)  # five claim rounds on the lying reply
        assert not [e for e in h.events() if e["event"].startswith("claim")]
        assert first in h.bot.claims.pending
        qsim.clear_fault("corrupt")
        h.tick_until(lambda: h.events("claim"), 10)
        claim = h.events("claim")[0]
        assert claim["market"] == first and claim["amount"] == bid["size"] / 1e6
        assert first not in h.bot.claims.pending
    finally:
        nothing_left(h)


def test_an_unreadable_reply_is_a_failing_host(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """Truncated JSON on the positions read: the bot cannot read its fills, so nothing rests
    and nothing new is placed until positions read again."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        qsim.fault("corrupt", path="/api/v1/positions", truncate=True)
        h.tick_until(lambda: h.events("fail_closed"), 10)  # two positions reads: a run
        assert h.events("fail_closed")[-1]["reason"] == "bad_replies"
        assert {e["field"] for e in rejected(h, "positions")} == {"body"}
        placed = len(h.events("order_placed"))
        h.tick(5)
        assert len(h.events("order_placed")) == placed and h.open_orders() == []
        qsim.clear_fault("corrupt")
        quoting_again(h)
    finally:
        nothing_left(h)


def test_a_cancel_that_lies_never_doubles_a_side(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """Every cancel answered 200 and ignored, while the price moves the quotes every tick:
    the lie is found on read-back (`cancel_unconfirmed`), and no side ever has two orders."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        qsim.fault("cancel_ignore")
        price = qsim.state()["prices"]["BTC"]
        for i in range(12):  # 10 bp up, 10 bp down: the fair value moves past the tolerance
            p = price * (1 + 0.001 * (-1) ** i)
            qsim.call(lambda p=p: qsim.app.ex.prices.__setitem__("BTC", p))
            h.tick()
            sides = [o["side"] for o in h.open_orders(h.market_id())]
            assert sides.count(0) <= 1 and sides.count(1) <= 1, sides
        lies = [e for e in h.events("cancel_unconfirmed") if e["reason"] == "read_back"]
        assert lies
        # the stream never confirmed a cancel that lied: each was read back over REST
        assert h.slot.c.cancels_streamed == 0 and h.slot.c.cancels_read_back >= len(lies)
        qsim.clear_fault("cancel_ignore")
        h.tick(4)
        sides = [o["side"] for o in h.open_orders(h.market_id())]
        assert sorted(sides) == [0, 1]
    finally:
        nothing_left(h)


def test_a_crossed_book_on_the_stream_is_refused(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """Books with the best bid above the best ask are dropped (`reply_rejected` stream), never
    priced from: the book ages, the market fails closed as stale, and heals with the fault."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    try:
        qsim.fault("ws_crossed")
        bid, _ = bot_quotes(h)
        take(qsim, h.market_id(), ts.SELL, bid["price"], 1_000_000)  # the book changes
        h.tick(3)
        assert rejected(h, "stream")
        with h.bot.feed.lock:
            book = h.bot.feed.books[h.market_id().lower()]
        assert book.best_bid is None or book.best_ask is None or book.best_bid < book.best_ask
        qsim.clear_fault("ws_crossed")
        rest(qsim, h.market_id(), ts.BUY, bid["price"] - 20_000, 1_000_000)  # a true book
        quoting_again(h)
    finally:
        nothing_left(h)


def test_a_full_log_disk_fails_closed_and_keeps_the_engine_and_the_state(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """Every log write fails (ENOSPC): the engine thread lives, cancels and stops quoting
    (log_write_failed), shutdown still cancels and writes the state file; when the disk is
    back, quoting resumes."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind).start()
    log = h.bot.log
    real = log._fh

    class Full:
        def write(self, _s: str) -> int:
            raise OSError(28, "No space left on device")

        def flush(self) -> None:
            return None

        def close(self) -> None:
            return None

    price = qsim.state()["prices"]["BTC"]

    def move(f: float) -> None:  # the quotes move: the bot has something to log
        qsim.call(lambda: qsim.app.ex.prices.__setitem__("BTC", price * f))

    try:
        log._fh = Full()
        move(1.001)
        h.tick(3)
        assert h.thread.is_alive() and h.open_orders() == []
        assert h.bot.slots[0].closed_reason == "log_write_failed"
        log._fh = real
        move(1.0)
        quoting_again(h)
        log._fh = Full()
        move(1.001)
        h.tick(2)
        before = h.state_path.stat().st_mtime_ns
    finally:
        h.stop()
    assert h.open_orders() == [] and h.state_path.stat().st_mtime_ns > before
    assert sb.json.loads(h.state_path.read_text())["markets"]["BTC:15"]["market"]


def test_an_unwritable_log_at_start_is_one_clear_line(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "no" / "such" / "dir" / "bot.log"
    code = sb.main(["--dry-run", "--log-file", str(bad), "--state-file", str(tmp_path / "s")])
    assert code == 2


def test_a_slow_placement_holds_the_tick_one_timeout_at_most(
    qsim: ts.Sim, tmp_path: pathlib.Path, kind: str
) -> None:
    """POST /orders answering after 3 s against a 0.5 s timeout: each placement is tried once
    (an unknown outcome is read back, never resent inside the tick), and the orders that did
    land are found and counted, none doubled."""
    h = BotHarness(qsim, tmp_path, exchange_kind=kind, http_timeout_s=0.5).start()
    try:
        qsim.fault("latency", path="/api/v1/orders", method="POST", ms=3000)
        price = qsim.state()["prices"]["BTC"]
        qsim.call(lambda: qsim.app.ex.prices.__setitem__("BTC", price * 1.001))
        h.tick(3)
        timed_out = [e for e in h.events("order_rejected") if e["kind"] == "network"]
        assert timed_out
        tries = h.metrics.registry.get_sample_value(
            "spike_requests_total",
            {"bot": h.cfg.bot_name, "endpoint": "place", "outcome": "network"},
        )
        assert tries == len(timed_out)  # one attempt each
        assert max(h.bot.tick_times[-3:]) < 3.0  # the tick never waited for the slow reply
        qsim.clear_fault("latency")
        h.tick(4)
        sides = [o["side"] for o in h.open_orders(h.market_id())]
        assert sides.count(0) <= 1 and sides.count(1) <= 1, sides
    finally:
        nothing_left(h)


def test_a_believable_mismatch_is_reconciled_without_inventing_realized_pnl(
    qsim: ts.Sim, tmp_path: pathlib.Path
) -> None:
    """The books say 5 YES at 0.40 that the exchange does not hold (within what our orders
    could have filled): after the settlement grace the position follows the exchange, closed
    at its own average price, so realized PnL stays what named fills made (0)."""
    h = BotHarness(qsim, tmp_path).start()
    try:
        h.slot.m.pnl = sb.PnL(position=5.0, avg=0.40)  # the engine is parked between ticks
        h.tick_until(lambda: h.events("position_reconciled"), 20)
        ev = h.events("position_reconciled")[0]
        assert ev["tracked"] == 5.0 and ev["exchange"] == 0.0 and ev["closed_at_avg"] == 5.0
        assert h.slot.m.pnl.position == 0.0 and h.slot.m.pnl.realized == 0.0
        assert not h.events("position_implausible")
    finally:
        nothing_left(h)


def test_quick_market_checks_on_made_up_replies() -> None:
    """check_quick_market alone: what passes and what each refusal names."""
    key = sb.MarketKey("BTC", 15)
    now = 1_000_000.0
    cur = sb.QuickMarket("0x" + "11" * 32, "", "BTC", 95_000.0, int(now) - 300, int(now) + 600)
    new = sb.QuickMarket("0x" + "22" * 32, "", "BTC", 95_100.0, int(now) + 600, int(now) + 1500)
    sb.check_quick_market(new, key, cur, now + 601, 95_050.0, 0.05)  # the next one: fine
    no_start = sb.dataclasses.replace(new, start=0)  # a reply without startTime: by its end
    sb.check_quick_market(no_start, key, cur, now + 601, None, 0.05)
    cases = {
        "asset": sb.dataclasses.replace(new, asset="ETH"),
        "endTime-startTime": sb.dataclasses.replace(new, start=int(now)),
        "startTime/endTime": sb.dataclasses.replace(new, start=cur.start - 900, end=cur.end - 900),
        "endTime": sb.dataclasses.replace(new, end=int(now) + 5 * 900, start=int(now) + 4 * 900),
        "startPrice": sb.dataclasses.replace(new, strike=1.0),
    }
    for field, qm in cases.items():
        with pytest.raises(sb.ReplyRejected) as e:
            sb.check_quick_market(qm, key, cur, now + 601, 95_050.0, 0.05)
        assert e.value.field == field, (field, e.value.message)
