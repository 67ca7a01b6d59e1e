"""Paper trading (`--paper`): the simulator stands in for the live market, our orders go to the
paper venue. The fill model on hand-made books and trades; both bots against turbine_sim
(fills, rollover, paper claims, fail-closed); a paper run and the replay of its recording agree
fill for fill; the paper wallet equals the ledger arithmetic of the fills and outcomes."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
from typing import Any

import pytest

import spike_bot as sb
import spike_tools as st
import turbine_sim as ts
from harness import SIM_START, BotHarness, quiet_sim_cfg
from spike_paper import PAPER_ADDRESS, PaperVenue

U = sb.SIZE_SCALE
QM = sb.QuickMarket(
    market_id="0xm", contract="0xc", asset="BTC", strike=100.0, start=0.0, end=900.0
)


def venue(usdc: float = 100.0) -> PaperVenue:
    return PaperVenue(round(usdc * U))


def book(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> sb.Book:
    lv = lambda xs: tuple((round(p * U), round(s * U)) for p, s in xs)  # noqa: E731
    return sb.Book(lv(bids), lv(asks), 0.0)


def place(v: PaperVenue, side: int, price: float, size: float, now: float = 10.0) -> str:
    return v.place(QM, side, sb.YES, round(price * U), round(size * U), int(now) + 100, now)


def filled(v: PaperVenue, h: str) -> float:
    return v.orders[h].filled / U


# -- the fill model ----------------------------------------------------------------------------
def test_queue_position_trades_ahead_of_us_first() -> None:
    v = venue()
    v.on_book("0xm", book([(0.40, 10)], [(0.60, 5)]), 1)
    h = place(v, sb.BUY, 0.40, 5)  # joins behind 10 shares at 0.40
    v.on_trade("0xm", round(0.40 * U), 6 * U, 11)
    assert filled(v, h) == 0  # 6 of the 10 ahead traded
    v.on_book("0xm", book([(0.40, 2)], [(0.60, 5)]), 12)  # the level shrank: 2 ahead at most
    v.on_trade("0xm", round(0.40 * U), 4 * U, 13)
    assert filled(v, h) == 2  # 2 ahead, then 2 of ours
    v.on_trade("0xm", round(0.39 * U), 10 * U, 14)  # through our price: we come first
    assert filled(v, h) == 5 and v.orders[h].status == "filled"
    assert v.position("0xm") == (5 * U, 0)
    assert v.usdc == round(100 * U - 5 * 0.40 * U)
    v.on_trade("0xm", round(0.41 * U), 10 * U, 15)  # above a bid: not ours
    assert len(v.fills) == 2


def test_opposite_best_reaching_us_is_used_once_and_sell_splits_collateral() -> None:
    v = venue(10)
    v.on_book("0xm", book([(0.40, 10)], [(0.60, 5)]), 1)
    h = place(v, sb.SELL, 0.60, 8)  # no shares held: sells YES from split collateral
    v.on_book("0xm", book([(0.62, 3)], [(0.65, 5)]), 2)  # a bid at 0.62 reaches our ask
    assert filled(v, h) == 3
    v.on_book("0xm", book([(0.62, 3)], [(0.65, 5)]), 3)  # the same bid again: not new size
    assert filled(v, h) == 3
    v.on_book("0xm", book([(0.62, 7)], [(0.65, 5)]), 4)  # 4 more at that level
    assert filled(v, h) == 7
    # at 0.60 a share a short sale locks 1 USDC and earns 0.60: 10 - 7 x 0.40
    assert v.usdc == round(10 * U - 7 * U + 7 * 0.60 * U)
    assert v.position("0xm") == (0, 7 * U)
    assert v.settle("0xm", yes_won=False) == 7 * U and v.usdc == round(10 * U + 7 * 0.60 * U)


def test_validation_like_the_api() -> None:
    v = venue(1)
    v.on_book("0xm", book([(0.40, 10)], [(0.60, 5)]), 1)
    cases = [
        (lambda: place(v, sb.BUY, 0.5, 10), "exceeds balance"),  # 5 USDC > 1
        (lambda: v.place(QM, sb.BUY, sb.YES, 0, U, 200, 10), "between 1 and 999999"),
        (lambda: v.place(QM, sb.BUY, sb.YES, 400_000, 0, 200, 10), "size must be positive"),
        (lambda: v.place(QM, sb.BUY, sb.YES, 400_000, U, 30, 10), "at least 60 seconds"),
        (lambda: v.place(QM, sb.BUY, sb.YES, 400_000, U, 2000, 900), "market is closed"),
        (lambda: v.place(QM, sb.BUY, sb.NO, 400_000, U, 200, 10), "YES book only"),
        (lambda: place(v, sb.BUY, 0.60, 1), "$1 minimum"),  # crosses: a taker for $0.60
    ]
    for fn, words in cases:
        with pytest.raises(sb.ExchangeError, match=words.replace("$", r"\$")) as e:
            fn()
        assert e.value.kind == "rejected"
    assert v.orders == {} and v.usdc == U
    with pytest.raises(sb.ExchangeError) as e:
        v.cancel("0xnope", 10)
    assert e.value.status == 404


def test_taker_on_placement_expiry_and_market_end() -> None:
    v = venue(100)
    v.on_book("0xm", book([(0.40, 10)], [(0.55, 2), (0.60, 5)]), 1)
    h = place(v, sb.BUY, 0.60, 4)  # takes 2 at 0.55 and 2 at 0.60, at their prices
    assert [(f.price, f.size, f.taker) for f in v.fills] == [
        (550_000, 2 * U, True),
        (600_000, 2 * U, True),
    ]
    assert v.orders[h].status == "filled"
    h2 = place(v, sb.BUY, 0.30, 5, now=20)  # expires at 120
    assert [o.status for o in v.order_rows(None, "open", 119)] == ["open"]
    assert v.order_rows(None, None, 120)[-1].status == "expired"
    h3 = v.place(QM, sb.BUY, sb.YES, 300_000, 5 * U, 2000, 800)
    assert v.order_rows(None, "open", 900) == []  # the market ended: the exchange pulls it
    assert v.orders[h3].status == "cancelled" and h2 != h3


def test_wallet_survives_a_restart(tmp_path: pathlib.Path) -> None:
    v = venue(100)
    v.on_book("0xm", book([(0.40, 10)], [(0.60, 5)]), 1)
    place(v, sb.BUY, 0.60, 5)
    p = tmp_path / "w.json"
    v.save(str(p))
    w = venue(1)
    assert w.load(str(p)) and w.usdc == v.usdc and w.position("0xm") == (5 * U, 0)
    p.write_text("{not json")
    with pytest.raises(sb.ExchangeError, match="paper wallet"):
        w.load(str(p))


# -- the paper bot against the simulator --------------------------------------------------------
def ledger_pnl(fills: list[Any], yes_won: bool) -> float:
    """A market's PnL from its fills and outcome: sells earn, buys cost, and the net YES
    position (shares bought less sold; a sale beyond holdings is a split) pays 1 if YES."""
    cash = sum((f.price * f.size if f.side == sb.SELL else -f.price * f.size) for f in fills)
    net = sum((f.size if f.side == sb.BUY else -f.size) for f in fills)
    return (cash / U + (net if yes_won else 0)) / U


def paid_out(h: BotHarness, market: str) -> list[dict[str, Any]]:
    return [
        e for e in h.events() if e["event"] in ("claim", "claim_none") and e.get("market") == market
    ]


@pytest.mark.parametrize("kind", ["spike", "official"])
def test_paper_bot_fills_rolls_over_and_claims(tmp_path: pathlib.Path, kind: str) -> None:
    """Participants trade on the simulator; the paper bot's orders never reach it, fill on the
    paper venue, roll to the next market, and are paid from the real outcome; the wallet ends
    at 1000 USDC plus the ledger PnL of the resolved markets."""
    sim = ts.start_sim(
        ts.SimConfig(manual_clock=True, start_time=SIM_START + 1, seed=3, annual_vol=0.3)
    )
    # quotes inside the background maker's ladder: noise takers trade through them
    h = BotHarness(
        sim, tmp_path, exchange_kind=kind, paper=True, paper_usdc=1000.0, base_spread=0.04
    )
    try:
        h.start()
        first = h.market_id()
        # 18 simulated minutes: one rollover, the first market resolved (a paper bot takes
        # the stream's messages at its next step, so a short idle wait is enough)
        h.tick(540, quiet=0.005)
        h.tick_until(
            lambda: [
                e
                for e in h.events()
                if e.get("market") == first and e["event"] in ("claim", "claim_none")
            ],
            60,
        )
        ven = h.bot.ex.venue
        assert sim.app.ex.counters["orders_placed"] == 0  # nothing reached the exchange
        assert h.events("rollover") and h.events("fill")
        assert all(e["event"] != "order_rejected" for e in h.events())
        hist = sim.call(lambda: sim.app.ex.markets[first])
        assert hist.resolved
        mine = [f for f in ven.fills if f.market_id == first]
        assert mine, "no paper fill in the first market"
        pnl = ledger_pnl(mine, hist.outcome == ts.YES)
        # the bot's PnL of that market: realized through its last fill, then the settlement
        last = [e for e in h.events("fill") if e["market"] == first][-1]
        settled = paid_out(h, first)[0]["settled_pnl"]
        assert last["realized"] + settled == pytest.approx(pnl, abs=1e-4)
        # the wallet: the resolved market's ledger PnL, then the open markets' cash flows less
        # the collateral their short sales locked (the NO shares held)
        opened = {f.market_id for f in ven.fills} - {first}
        rest = sum(
            (f.price * f.size if f.side == sb.SELL else -f.price * f.size) / U / U
            for f in ven.fills
            if f.market_id in opened
        )
        locked = sum(ven.pos.get(m, [0, 0])[1] for m in opened) / U
        assert ven.usdc / U == pytest.approx(1000 + pnl + rest - locked, abs=1e-3)
        fills = h.events("fill")
        assert all(e["order_hash"].startswith("0xpaper") for e in fills)
    finally:
        h.stop()
        sim.stop()
    assert h.bot.ex.venue.order_rows(None, "open", sim.clock.now()) == []  # shutdown cancelled
    start = h.events("start")[0]
    assert start["mode"] == "paper" and start["address"] == PAPER_ADDRESS


@pytest.mark.parametrize("kind", ["spike", "official"])
def test_paper_bot_fails_closed_on_a_stale_feed(tmp_path: pathlib.Path, kind: str) -> None:
    sim = ts.start_sim(quiet_sim_cfg())
    h = BotHarness(sim, tmp_path, exchange_kind=kind, paper=True, stale_after_s=6).start()
    try:
        assert len(h.open_orders()) == 2
        sim.fault("ws_freeze")
        sim.fault("http_500")  # no REST book to confirm the quiet one either
        h.tick_until(lambda: h.events("fail_closed"), 20)
        assert h.open_orders() == []  # the paper orders were cancelled
        assert h.events("fail_closed")[0]["reason"] == "stale_feed"
    finally:
        h.stop()
        sim.stop()


def test_paper_fills_equal_the_replay_of_its_recording(tmp_path: pathlib.Path) -> None:
    """A paper day recorded on the simulator; replay runs the same fill model over the
    recording and must find the same fills, in the same order, at the same times."""
    sim = ts.start_sim(
        ts.SimConfig(manual_clock=True, start_time=SIM_START + 1, seed=9, annual_vol=0.3)
    )
    rec = tmp_path / "paper.jsonl"
    h = BotHarness(sim, tmp_path, paper=True, record=rec, base_spread=0.04)
    try:
        h.start()
        h.tick(500, quiet=0.005)
    finally:
        h.stop()
        sim.stop()
    live = [(e["t"], e["order_hash"], e["side"], e["price"], e["size"]) for e in h.events("fill")]
    assert len(live) >= 5
    recs = st.read_recording(str(rec))
    assert {"step", "book", "trade", "price", "market"} <= {r["k"] for r in recs}
    cfg = dataclasses.replace(h.cfg, state_file=str(tmp_path / "rs.json"), bot_name="replay")
    out = tmp_path / "replay.log"
    st.replay_run(recs, cfg, str(out))
    replayed = [
        (e["t"], e["order_hash"], e["side"], e["price"], e["size"])
        for e in st.read_events(str(out))[0]
        if e["event"] == "fill"
    ]
    assert replayed[: len(live)] == live


def test_report_tells_a_paper_run_from_a_live_one(tmp_path: pathlib.Path) -> None:
    """Two runs on the same market, one paper and one live: the report's mode row."""
    sim = ts.start_sim(quiet_sim_cfg())
    paper = BotHarness(sim, tmp_path / "p", paper=True)
    live = BotHarness(sim, tmp_path / "l")
    for h in (paper, live):
        h.log_path.parent.mkdir(exist_ok=True)
    try:
        paper.start()
        live.start()
        live.tick(3)
    finally:
        live.stop()
        paper.stop()
        sim.stop()
    runs = [st.summarize(*st.read_events(str(h.log_path))) for h in (paper, live)]
    assert [r["mode"] for r in runs] == ["paper", "live"]
    assert all(r["orders_placed"] >= 2 for r in runs)


def test_paper_cli_runs_on_the_simulator_and_refuses_bad_flags(tmp_path: pathlib.Path) -> None:
    bot = str(pathlib.Path(__file__).parent / "spike_bot.py")
    r = subprocess.run(
        [sys.executable, bot, "--paper", "--dry-run"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert r.returncode == 2 and "--paper and --dry-run: choose one" in r.stderr
    r = subprocess.run(
        [sys.executable, bot, "--sim", "--paper", "--duration", "6", "--speed", "30"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "mode=paper" in r.stdout and " spike PAPER " in r.stdout
    log = (tmp_path / "spike_bot.sim.paper.log").read_text()
    assert '"event":"order_placed"' in log and '"order_hash":"0xpaper' in log
    assert not (tmp_path / "spike_bot.log").exists()  # never the live run's files
