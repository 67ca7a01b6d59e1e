"""Unit tests: spike_bot's pure strategy, PnL accounting, signing and configuration."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

import spike_bot as sb
from harness import SEED_QUOTING
from spike_bot import BUY, NO, SELL, YES, Book, Config, LiveOrder, Quote

P = sb.PRICE_SCALE
S = sb.SIZE_SCALE


def cfg(**kw: Any) -> Config:
    """The seed's quoting (0.40 spread, 5 shares, no risk spread), which these tests' prices
    were written against, with `kw` on top."""
    return sb.validate(dataclasses.replace(Config(), **{**SEED_QUOTING, **kw}))


def book(bids: list[tuple[float, float]] = (), asks: list[tuple[float, float]] = ()) -> Book:
    return Book(
        tuple((round(p * P), round(s * S)) for p, s in bids),
        tuple((round(p * P), round(s * S)) for p, s in asks),
        1.0,
    )


def side(qs: list[Quote], s: int) -> Quote | None:
    return next((q for q in qs if q.side == s), None)


# -- fair value ------------------------------------------------------------------------------------
def test_model_probability_shape() -> None:
    assert sb.model_probability(100.0, 100.0, 600, 0.5) == pytest.approx(0.5)
    above = sb.model_probability(100.2, 100.0, 600, 0.5)
    assert above > 0.5
    # the same move matters more with less time left
    assert sb.model_probability(100.2, 100.0, 60, 0.5) > above
    assert sb.model_probability(100.2, 100.0, 0, 0.5) == 1.0
    assert sb.model_probability(99.9, 100.0, 0, 0.5) == 0.0
    assert sb.model_probability(None, 100.0, 60, 0.5) is None


def test_fair_value_sources_and_fallbacks() -> None:
    b = book([(0.40, 10)], [(0.50, 30)])
    assert sb.fair_value(b, None, 1, 600, cfg(fair_source="mid")) == pytest.approx(0.45)
    # micro-price leans to the thin side: little bid size -> towards the bid
    micro = sb.fair_value(b, None, 1, 600, cfg(fair_source="micro"))
    assert micro == pytest.approx((0.40 * 30 + 0.50 * 10) / 40)
    model = sb.fair_value(b, 100.0, 100.0, 600, cfg(fair_source="model"))
    assert model == pytest.approx(0.5)
    blend = sb.fair_value(b, 100.0, 100.0, 600, cfg(fair_source="blend", model_weight=0.7))
    assert blend == pytest.approx(0.7 * 0.5 + 0.3 * micro)
    assert sb.fair_value(Book(), 100.0, 100.0, 600, cfg()) == pytest.approx(0.5)  # no book
    assert sb.fair_value(b, None, 100.0, 600, cfg()) == pytest.approx(micro)  # no price
    assert sb.fair_value(Book(), None, 100.0, 600, cfg()) is None


# -- quotes --------------------------------------------------------------------------------------
def test_symmetric_quotes_at_default_spread() -> None:
    qs = sb.quotes(0.5, 0.0, Book(), 600, cfg())
    bid, ask = side(qs, BUY), side(qs, SELL)
    assert bid.price == 300_000 and ask.price == 700_000
    assert bid.size == ask.size == 5 * S and bid.outcome == ask.outcome == YES


def test_binary_move_is_largest_near_the_strike_and_near_expiry() -> None:
    m = sb.binary_move
    # at the strike with 15 minutes left: phi(0) x sqrt(10 / 900)
    assert m(0.5, 900, 10) == pytest.approx(0.398942 * (10 / 900) ** 0.5, rel=1e-4)
    assert m(0.5, 900, 10) > m(0.7, 900, 10) > m(0.95, 900, 10) > 0
    assert m(0.3, 900, 10) == pytest.approx(m(0.7, 900, 10))  # symmetric about 0.5
    assert m(0.5, 60, 10) > 3 * m(0.5, 900, 10)  # the last minute moves fast
    assert m(0.5, 5, 10) == pytest.approx(0.398942, rel=1e-4)  # capped at the time left
    assert m(0.0, 900, 10) == m(1.0, 900, 10) == m(0.5, 0, 10) == 0.0


def test_risk_spread_widens_where_the_binary_moves() -> None:
    c = cfg(base_spread=0.04, risk_spread=1.0, tminus_widen_s=0, extreme_widen=0)

    def width(fair: float, left: float) -> float:
        qs = sb.quotes(fair, 0.0, book(), left, c)
        return (side(qs, SELL).price - side(qs, BUY).price) / P  # type: ignore[union-attr]

    assert width(0.5, 900) == pytest.approx(0.04 + 2 * sb.binary_move(0.5, 900, 10), abs=2e-4)
    assert width(0.5, 120) > width(0.5, 900) > width(0.8, 900) > 0.04
    off = sb.quotes(0.5, 0.0, book(), 900, cfg(base_spread=0.04, risk_spread=0.0))
    assert (side(off, SELL).price - side(off, BUY).price) / P == pytest.approx(0.04)  # type: ignore[union-attr]


def test_extremes_widen_near_0_and_1_only() -> None:
    c = cfg(base_spread=0.1, extreme_zone=0.15, extreme_widen=0.1)
    assert sb.extremes_half_spread(0.5, 0.05, c) == 0.05
    assert sb.extremes_half_spread(0.15, 0.05, c) == pytest.approx(0.05)
    assert sb.extremes_half_spread(0.05, 0.05, c) == pytest.approx(0.05 + 0.1 * (2 / 3))
    assert sb.extremes_half_spread(0.95, 0.05, c) == pytest.approx(0.05 + 0.1 * (2 / 3))


def test_extremes_widening_is_applied_before_skew() -> None:
    """Fair 0.9 is in the extreme zone; a long inventory skews the centre to 0.82, outside it.
    Widening must follow fair value (wide), not the skewed centre (which would quote tight)."""
    c = cfg(
        base_spread=0.1,
        extreme_zone=0.15,
        extreme_widen=0.1,
        skew_factor=0.08,
        max_position=50,
        price_tick=0.0001,
    )
    qs = sb.quotes(0.9, 49.0, Book(), 600, c)
    bid, ask = side(qs, BUY), side(qs, SELL)
    half = sb.extremes_half_spread(0.9, 0.05, c)
    centre = 0.9 + sb.inventory_skew(49.0, c)
    assert centre < 0.85  # the centre left the zone
    assert (ask.price - bid.price) / P == pytest.approx(2 * half, abs=2e-4)
    assert (ask.price - bid.price) / P > 0.1 + 0.05  # wider than skew-first gives
    assert (bid.price + ask.price) / 2 / P == pytest.approx(centre, abs=2e-4)


def test_inventory_skew_direction() -> None:
    c = cfg(skew_factor=0.1, max_position=10)
    flat = sb.quotes(0.5, 0.0, Book(), 600, c)
    long_ = sb.quotes(0.5, 5.0, Book(), 600, c)
    short = sb.quotes(0.5, -5.0, Book(), 600, c)
    assert side(long_, BUY).price < side(flat, BUY).price
    assert side(long_, SELL).price < side(flat, SELL).price
    assert side(short, BUY).price > side(flat, BUY).price
    assert side(short, SELL).price > side(flat, SELL).price
    assert side(long_, BUY).price == 250_000 and side(short, SELL).price == 750_000


def test_late_skew_ramps_up_only_in_its_window() -> None:
    """tminus_skew_s (off by default): the skew grows linearly to tminus_skew_mult times at
    expiry, unchanged before the window; the quotes' centre follows it."""
    assert cfg().tminus_skew_s == 0.0
    assert sb.inventory_skew(5.0, cfg(skew_factor=0.1, max_position=10), 10.0) == -0.05
    c = cfg(skew_factor=0.1, max_position=10, tminus_skew_s=300, tminus_skew_mult=3.0)
    assert sb.inventory_skew(5.0, c, 600.0) == pytest.approx(-0.05)
    assert sb.inventory_skew(5.0, c, 300.0) == pytest.approx(-0.05)
    assert sb.inventory_skew(5.0, c, 150.0) == pytest.approx(-0.10)
    assert sb.inventory_skew(-5.0, c, 0.0) == pytest.approx(+0.15)
    early, late = sb.quotes(0.5, 5.0, Book(), 600, c), sb.quotes(0.5, 5.0, Book(), 150, c)
    assert side(late, SELL).price < side(early, SELL).price  # sells sooner near the end


def test_position_limits_per_side() -> None:
    c = cfg(max_position=10, order_size=5)
    assert side(sb.quotes(0.5, 10.0, Book(), 600, c), BUY) is None  # no more YES
    assert side(sb.quotes(0.5, 10.0, Book(), 600, c), SELL).size == 5 * S
    assert side(sb.quotes(0.5, -10.0, Book(), 600, c), SELL) is None  # no more short
    assert side(sb.quotes(0.5, 8.0, Book(), 600, c), BUY).size == 2 * S  # only up to limit
    # NO shares from a split count as negative inventory: the SELL side is what grows them
    assert side(sb.quotes(0.5, -8.0, Book(), 600, c), SELL).size == 2 * S


def test_maker_only_clamp_never_crosses_or_touches() -> None:
    c = cfg(base_spread=0.02, price_tick=0.01)
    b = book([(0.48, 1)], [(0.49, 1)])  # a book below our fair of 0.5
    qs = sb.quotes(0.5, 0.0, b, 600, c)
    bid, ask = side(qs, BUY), side(qs, SELL)
    assert bid.price < b.best_ask and ask.price > b.best_bid
    assert bid.price == 480_000  # one tick under the best ask
    assert ask.price == 510_000
    b2 = book([(0.51, 1)], [(0.52, 1)])  # a book above fair: ask must clear the bid
    assert side(sb.quotes(0.5, 0.0, b2, 600, c), SELL).price == 520_000


def test_clamp_at_price_boundaries() -> None:
    c = cfg(base_spread=0.02, price_tick=0.01, extreme_widen=0)
    # best ask at the lowest price: no bid is possible
    qs = sb.quotes(0.02, 0.0, book([], [(0.01, 1)]), 600, c)
    assert side(qs, BUY) is None
    # best bid at the top: no ask is possible
    qs = sb.quotes(0.98, 0.0, book([(0.99, 1)], []), 600, c)
    assert side(qs, SELL) is None
    # quotes outside [tick, 1 - tick] are dropped, not clamped into a bad price
    qs = sb.quotes(0.005, 0.0, Book(), 600, c)
    assert side(qs, BUY) is None and side(qs, SELL).price == 20_000


def test_tick_rounding_is_conservative() -> None:
    c = cfg(base_spread=0.101, price_tick=0.01)
    qs = sb.quotes(0.5, 0.0, Book(), 600, c)
    assert side(qs, BUY).price == 440_000 and side(qs, SELL).price == 560_000


def test_tminus_windows() -> None:
    c = cfg(
        tminus_widen_s=120,
        tminus_widen_mult=1.5,
        tminus_size_mult=0.5,
        tminus_reduce_only_s=60,
        tminus_pull_s=20,
    )
    normal = sb.quotes(0.5, 0.0, Book(), 600, c)
    wide = sb.quotes(0.5, 0.0, Book(), 100, c)
    assert side(wide, SELL).price - side(wide, BUY).price == 600_000
    assert side(wide, BUY).size == side(normal, BUY).size // 2
    assert sb.quotes(0.5, 0.0, Book(), 50, c) == []  # flat: nothing to reduce
    reduce = sb.quotes(0.5, 4.0, Book(), 50, c)
    assert [q.side for q in reduce] == [SELL] and reduce[0].size == int(2.5 * S)
    assert [q.side for q in sb.quotes(0.5, -1.0, Book(), 50, c)] == [BUY]
    assert sb.quotes(0.5, 4.0, Book(), 20, c) == []  # pull everything


@settings(max_examples=300, deadline=None)
@given(
    fair=st.floats(0.001, 0.999),
    inv=st.floats(-80, 80),
    left=st.floats(0, 900),
    bb=st.one_of(st.none(), st.integers(1, 999_998)),
    width=st.integers(1, 300_000),
    spread=st.floats(0.001, 0.9),
    tick=st.sampled_from([0.0001, 0.001, 0.01]),
)
def test_quote_invariants(
    fair: float, inv: float, left: float, bb: int | None, width: int, spread: float, tick: float
) -> None:
    c = cfg(base_spread=spread, price_tick=tick, max_position=50, order_size=5)
    b = Book() if bb is None else Book(((bb, S),), ((min(999_999, bb + width), S),), 1.0)
    qs = sb.quotes(fair, inv, b, left, c)
    bid, ask = side(qs, BUY), side(qs, SELL)
    t = round(tick * P)
    for q in qs:
        assert sb.MIN_PRICE <= q.price <= sb.MAX_PRICE and q.price % t == 0 and q.size > 0
        assert q.size <= c.max_order_size * S
    if bid and ask:
        assert bid.price < ask.price
    if bid and b.best_ask is not None:
        assert bid.price < b.best_ask
        assert inv + bid.size / S <= c.max_position + 1e-9
    if ask and b.best_bid is not None:
        assert ask.price > b.best_bid
    if ask:
        assert inv - ask.size / S >= -c.max_position - 1e-9
    if left <= c.tminus_pull_s:
        assert qs == []


# -- plan ----------------------------------------------------------------------------------------
def lo(
    h: str, s: int, price: int, size: int = 5 * S, rem: int | None = None, at: float = 0.0
) -> LiveOrder:
    return LiveOrder(h, s, YES, price, size, size if rem is None else rem, at)


def test_plan_sends_only_the_difference() -> None:
    want = [Quote(BUY, YES, 300_000, 5 * S), Quote(SELL, YES, 700_000, 5 * S)]
    live = [lo("a", BUY, 305_000), lo("b", SELL, 700_000)]
    assert sb.plan(want, live, 10_000, 10.0, 60) == ([], [])  # calm: nothing
    cancels, places = sb.plan(want, [lo("a", BUY, 310_000), live[1]], 10_000, 10.0, 60)
    assert [o.order_hash for o in cancels] == ["a"] and places == [want[0]]  # moved >= tol
    cancels, places = sb.plan(want, [lo("a", BUY, 300_000, 4 * S), live[1]], 10_000, 10.0, 60)
    assert [o.order_hash for o in cancels] == ["a"]  # size changed
    cancels, places = sb.plan(want, [lo("a", BUY, 300_000, rem=2 * S), live[1]], 10_000, 1, 60)
    assert [o.order_hash for o in cancels] == ["a"]  # mostly filled
    cancels, _ = sb.plan(want, [lo("a", BUY, 300_000, at=0), live[1]], 10_000, 61.0, 60)
    assert {o.order_hash for o in cancels} == {"a", "b"}  # refresh due
    cancels, places = sb.plan([], live, 10_000, 1.0, 60)
    assert len(cancels) == 2 and places == []  # pull all
    dup = [lo("a", BUY, 300_000), lo("c", BUY, 300_000), live[1]]
    cancels, _ = sb.plan(want, dup, 10_000, 1.0, 60)
    assert [o.order_hash for o in cancels] == ["c"]  # one per quote


# -- portfolio limits and budgets ------------------------------------------------------------------
TWO = [Quote(BUY, YES, 400_000, 5 * S), Quote(SELL, YES, 600_000, 5 * S)]


def test_exposure_and_costs() -> None:
    assert sb.exposure(10, 0.6) == pytest.approx(6.0)  # long YES: lost if NO wins
    assert sb.exposure(-10, 0.6) == pytest.approx(-4.0)  # NO held: lost if YES wins
    assert sb.position_cost(10, 0.3) == pytest.approx(3.0)
    assert sb.position_cost(-10, 0.3) == pytest.approx(7.0)  # collateral left after the split
    assert sb.order_cost(BUY, 400_000, 5 * S) == pytest.approx(2.0)
    assert sb.order_cost(SELL, 400_000, 5 * S) == pytest.approx(3.0)


def test_limit_quotes_passes_everything_with_room() -> None:
    out, blocked = sb.limit_quotes(TWO, 0.0, 0.5, sb.Headroom(), set())
    assert out == TWO and blocked == {}
    # exactly enough room: the new quotes need their cost x (1 + hysteresis)
    h = 1 + sb.LIMIT_HYSTERESIS
    out, blocked = sb.limit_quotes(TWO, 0.0, 0.5, sb.Headroom(budget=5.0 * h), set())
    assert out == TWO and blocked == {}


def test_budget_exhausted_quotes_only_the_reducing_side() -> None:
    # long 3 YES, no budget left: the SELL (reducing) keeps 3 of its 5 shares, the BUY goes
    out, blocked = sb.limit_quotes(TWO, 3.0, 0.5, sb.Headroom(budget=0.0), set())
    assert out == [Quote(SELL, YES, 600_000, 3 * S)]
    assert blocked == {BUY: "budget", SELL: "budget"}
    # short 8 (NO held): the BUY reduces whole, the SELL adds and is held back
    out, blocked = sb.limit_quotes(TWO, -8.0, 0.5, sb.Headroom(budget=0.0), set())
    assert out == [TWO[0]] and blocked == {SELL: "budget"}


def test_budget_is_shared_by_the_two_sides() -> None:
    # room for one side (BUY 2.0 x 1.25 = 2.5) but not both (+ SELL 2.0 x 1.25)
    out, blocked = sb.limit_quotes(TWO, 0.0, 0.5, sb.Headroom(budget=3.0), set())
    assert out == [TWO[0]] and blocked == {SELL: "budget"}


def test_net_exposure_room_stops_the_side_that_adds_to_it() -> None:
    # the portfolio may only move 1 USDC further long: BUYs (which add) are held back, SELLs pass
    out, blocked = sb.limit_quotes(TWO, 0.0, 0.5, sb.Headroom(long=1.0), set())
    assert out == [TWO[1]] and blocked == {BUY: "net_exposure"}
    out, blocked = sb.limit_quotes(TWO, 0.0, 0.5, sb.Headroom(short=-3.0), set())
    assert out == [TWO[0]] and blocked == {SELL: "net_exposure"}


def test_open_notional_room() -> None:
    out, blocked = sb.limit_quotes(TWO, 0.0, 0.5, sb.Headroom(notional=0.5), set())
    assert out == [] and blocked == {BUY: "open_notional", SELL: "open_notional"}


def test_limit_hysteresis_keeps_a_resting_side() -> None:
    # 2.2 USDC of budget: a new BUY (2.0 x 1.25) does not fit, a resting one (2.0) does
    room = sb.Headroom(budget=2.2)
    assert sb.limit_quotes(TWO[:1], 0.0, 0.5, room, set())[0] == []
    assert sb.limit_quotes(TWO[:1], 0.0, 0.5, room, {BUY})[0] == TWO[:1]


@settings(max_examples=300, deadline=None)
@given(
    inv=st.floats(-60, 60),
    fair=st.floats(0.01, 0.99),
    budget=st.floats(-10, 50),
    notional=st.floats(-10, 50),
    up=st.floats(-10, 50),
    down=st.floats(-10, 50),
)
def test_limit_quotes_never_add_past_a_limit(
    inv: float, fair: float, budget: float, notional: float, up: float, down: float
) -> None:
    room = sb.Headroom(budget, notional, up, down)
    out, _ = sb.limit_quotes(TWO, inv, fair, room, set())
    spent = used = 0.0
    for q in out:
        held = max(0.0, -inv) if q.side == BUY else max(0.0, inv)
        add = q.size / S - min(q.size / S, held)
        if add <= 1e-6:
            continue  # reducing only: always allowed
        assert q.size == 5 * S  # the adding part passes whole or not at all
        spent += sb.order_cost(q.side, q.price, q.size)  # open notional: the whole order
        used += sb.order_cost(q.side, q.price, round(add * S))  # budget: the adding part
        assert spent <= notional + 1e-6 and used <= budget + 1e-6
        after = inv + 5 if q.side == BUY else inv - 5
        move = sb.exposure(after, fair) - sb.exposure(inv, fair)
        assert (move <= up + 1e-6) if q.side == BUY else (-move <= down + 1e-6)


def test_markets_and_split_parsing() -> None:
    keys = sb.parse_markets("BTC:15, btc:60,ETH:15")
    assert [str(k) for k in keys] == ["BTC:15", "BTC:60", "ETH:15"]
    assert sb.parse_split("", keys) == {k: pytest.approx(1 / 3) for k in keys}
    split = sb.parse_split("BTC:15=2,ETH:15=2", keys)
    assert [split[k] for k in keys] == [0.5, 0.0, 0.5]
    for bad, msg in (
        ("BTC", "expected ASSET:MINUTES"),
        ("BTC:0", "expected ASSET:MINUTES"),
        ("BTC:15,BTC:15", "listed twice"),
        ("B-TC:15", "expected ASSET:MINUTES"),
    ):
        with pytest.raises(sb.ConfigError, match=msg):
            sb.parse_markets(bad)
    for bad, msg in (
        ("BTC:15=x", "expected MARKET=WEIGHT"),
        ("BTC:15=-1", "expected MARKET=WEIGHT"),
        ("SOL:15=1", "not in markets"),
        ("BTC:15=0", "add up to 0"),
    ):
        with pytest.raises(sb.ConfigError, match=msg):
            sb.parse_split(bad, keys)
    c, _ = sb.load_config({"markets": "eth:60,btc:15", "tminus_pull_s": "20"}, {})
    assert c.markets == "ETH:60,BTC:15"
    with pytest.raises(sb.ConfigError, match="replaced by SPIKE_MARKETS"):
        sb.load_config({}, {"SPIKE_ASSET": "ETH"})
    with pytest.raises(sb.ConfigError, match="capital_split"):
        sb.load_config({"capital_split": "ETH:15=1"}, {})


# -- PnL -----------------------------------------------------------------------------------------
def test_pnl_average_cost_and_settlement() -> None:
    p = sb.PnL()
    p.fill(BUY, 0.40, 10)
    p.fill(BUY, 0.50, 10)
    assert p.position == 20 and p.avg == pytest.approx(0.45)
    p.fill(SELL, 0.60, 5)
    assert p.realized == pytest.approx(5 * 0.15) and p.position == 15
    assert p.unrealized(0.5) == pytest.approx(15 * 0.05)
    p.fill(SELL, 0.30, 25)  # flips short 10 @ 0.30 (a split: NO shares)
    assert p.position == -10 and p.avg == pytest.approx(0.30)
    assert p.realized == pytest.approx(0.75 + 15 * (0.30 - 0.45))
    before = p.realized
    assert p.settle(yes_won=False) == pytest.approx(10 * 0.30)  # NO won: short keeps premium
    assert p.realized == pytest.approx(before + 3.0) and p.position == 0
    q = sb.PnL()
    q.fill(SELL, 0.70, 5, fee=0.01)
    assert q.settle(yes_won=True) == pytest.approx(-5 * 0.30) and q.fees == 0.01


# -- signing -------------------------------------------------------------------------------------
def test_orders_match_reference_vectors(vectors: dict[str, Any]) -> None:
    signer = sb.Signer(vectors["key"]["private_key"], 137)
    assert signer.address == vectors["key"]["address"]
    for v in vectors["orders"]:
        o = v["order"]
        f = sb.OrderFields(
            o["marketId"],
            o["trader"],
            o["side"],
            o["outcome"],
            o["price"],
            o["size"],
            o["nonce"],
            o["expiration"],
            o["makerFeeRecipient"],
        )
        assert "0x" + f.struct_hash().hex() == v["struct_hash"]
        so = signer.sign_order(f, v["verifying_contract"])
        assert so.signature == v["signature"]
        assert so.order_hash == v["sdk_order_hash"]
        assert so.body() == v["post_body"]


def test_permits_redemption_registration_and_bearer_match_vectors(vectors: dict[str, Any]) -> None:
    signer = sb.Signer(vectors["key"]["private_key"], 137)
    for p in vectors["usdc_permits"]:
        m = p["message"]
        got = signer.sign_permit(int(m["value"]), int(m["nonce"]), int(m["deadline"]), m["spender"])
        assert (got["v"], got["r"], got["s"]) == (p["v"], p["r"], p["s"])
    r = vectors["redemption"]
    m = r["message"]
    got = signer.sign_redemption(
        r["domain"]["verifyingContract"],
        m["collateralToken"],
        m["conditionId"],
        m["indexSets"],
        m["nonce"],
        m["deadline"],
    )
    assert (got["v"], got["r"], got["s"]) == (r["v"], r["r"], r["s"])
    reg = vectors["api_key_registration"]
    assert sb.registration_text(signer.address) == reg["text"]
    assert signer.sign_personal(reg["text"]) == reg["signature"]
    bt = vectors["bearer_token"]
    auth = sb.BearerAuth(bt["api_key_id"], bt["api_private_key"])
    assert auth.token(bt["ts"], bt["n"]) == bt["token"]


def test_order_hash_and_signature_equal_the_sdk(fresh_key: str) -> None:
    from turbine_client.signer import Signer as SdkSigner
    from turbine_client.types import OrderArgs, Outcome, Side

    sdk = SdkSigner(fresh_key, 137)
    mine = sb.Signer(fresh_key, 137)
    for side_, outcome, price, size in ((0, 0, 123_400, 7_000_000), (1, 1, 999_999, 1)):
        args = OrderArgs(
            market_id="0x" + "ab" * 32,
            side=Side(side_),
            outcome=Outcome(outcome),
            price=price,
            size=size,
            expiration=1_800_000_000,
            nonce=42,
        )
        ref = sdk.sign_order(args)
        so = mine.sign_order(
            sb.OrderFields(
                "0x" + "ab" * 32, mine.address, side_, outcome, price, size, 42, 1_800_000_000
            )
        )
        assert so.order_hash == ref.order_hash
        assert so.signature == "0x" + ref.signature.removeprefix("0x")
        digest = ref.order_hash  # recovering both signatures gives the same signer
        assert Account.recover_message(
            encode_defunct(hexstr=digest), signature=so.signature
        ) == Account.recover_message(encode_defunct(hexstr=digest), signature=ref.signature)


def test_permit_amount_formula() -> None:
    # BUY 10 shares at 0.30: 3 USDC + 1% of size (0.1) = 3.1, +10% = 3.41
    assert sb.permit_amount(BUY, 300_000, 10 * S, 0.10) == 3_410_001
    assert sb.permit_amount(SELL, 300_000, 10 * S, 0.10) == 11_000_001


def test_signer_never_shows_its_key(fresh_key: str) -> None:
    s = sb.Signer(fresh_key, 137)
    assert fresh_key[2:] not in repr(s) and fresh_key[2:] not in str(s.__slots__)
    with pytest.raises(sb.ConfigError) as e:
        sb.Signer(fresh_key[:-2], 137)
    assert fresh_key[4:-2] not in str(e.value)
    sec = sb.Secrets(private_key=fresh_key, api_private_key="ab" * 32)
    assert fresh_key[2:] not in repr(sec) and "ab" * 32 not in repr(sec)


# -- configuration ---------------------------------------------------------------------------------
def test_config_precedence_and_validation() -> None:
    c, sec = sb.load_config(
        {"base_spread": "0.3"},
        {
            "SPIKE_BASE_SPREAD": "0.5",
            "SPIKE_TICK_S": "1.5",
            "TURBINE_HOST": "http://127.0.0.1:1/",
            "TURBINE_PRIVATE_KEY": "0x1",
        },
    )
    assert c.base_spread == 0.3 and c.tick_s == 1.5 and c.host == "http://127.0.0.1:1"
    assert sec.private_key == "0x1"
    with pytest.raises(sb.ConfigError, match=r"base_spread must be <= 0.98 \(got 2.0, from --base"):
        sb.load_config({"base_spread": "2"}, {})
    with pytest.raises(
        sb.ConfigError, match=r"tick_s: expected float, got 'abc' \(from SPIKE_TICK_S"
    ):
        sb.load_config({}, {"SPIKE_TICK_S": "abc"})
    with pytest.raises(sb.ConfigError, match="fair_source must be one of"):
        sb.load_config({"fair_source": "vibes"}, {})
    with pytest.raises(sb.ConfigError, match="order_size"):
        sb.load_config({"order_size": "60", "max_order_size": "50"}, {})
    with pytest.raises(sb.ConfigError, match="chain_id"):
        sb.load_config({"chain_id": "1"}, {})
    with pytest.raises(sb.ConfigError, match="expected float"):
        sb.load_config({"base_spread": "nan"}, {})


def test_every_setting_has_env_flag_and_example(tmp_path: pathlib.Path) -> None:
    """A setting's declaration is the one place: its flag exists, and .env.example and the
    configuration page are exactly what scripts/gen_config_docs.py writes from Config."""
    import importlib.util

    root = pathlib.Path(__file__).parent
    spec = importlib.util.spec_from_file_location("gen", root / "scripts" / "gen_config_docs.py")
    gen = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(gen)  # type: ignore[union-attr]
    example = (root / ".env.example").read_text()
    page = (root / "docs" / "configuration.md").read_text()
    assert example == gen.env_example(), "stale .env.example: run scripts/gen_config_docs.py"
    assert gen.table() in page, "stale docs/configuration.md: run scripts/gen_config_docs.py"
    help_ = sb.build_parser().format_help()
    for f in dataclasses.fields(Config):
        assert sb.env_name(f) in example, f"{sb.env_name(f)} missing from .env.example"
        assert "--" + f.name.replace("_", "-") in help_


def test_a_reload_applies_exactly_the_settings_declared_reloadable() -> None:
    """Every setting declared reload=True is changed by a reload, every other one is reported
    as needing a restart (a new setting cannot be half-wired: TUNABLE follows from _f)."""
    import threading

    cfg = Config()
    new = Config()
    changed: dict[str, Any] = {}
    for f in dataclasses.fields(Config):
        v = getattr(cfg, f.name)
        if isinstance(v, bool):
            continue
        if f.metadata["choices"]:
            nv: Any = next(c for c in f.metadata["choices"] if c != v)
        elif isinstance(v, int | float):
            hi = f.metadata["hi"]
            nv = type(v)(min(hi, v + 1) if hi is not None and v + 1 > hi else v + 1)
            if nv == v:
                nv = type(v)(v - 1)
        else:
            continue
        setattr(new, f.name, nv)
        changed[f.name] = nv
    log_lines: list[dict[str, Any]] = []

    class Log:
        def event(self, ev: str, **kw: Any) -> None:
            log_lines.append({"event": ev, **kw})

    tun = sb.Tuning(cfg, Log(), lambda: new, threading.Event())  # type: ignore[arg-type]
    tun.request()
    applied = tun.apply_requested()
    reloadable = {f.name for f in dataclasses.fields(Config) if f.metadata["reload"]}
    assert applied == reloadable & set(changed)
    assert all(getattr(cfg, k) == changed[k] for k in applied)
    restart = set(log_lines[-1]["needs_restart"])
    assert restart == (set(changed) - reloadable) - {"host", "rate_limit_per_s"}


def test_save_api_credentials_keeps_other_lines(tmp_path: pathlib.Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# my wallet\nTURBINE_PRIVATE_KEY=0xabc\nSPIKE_BASE_SPREAD=0.3\n")
    sb.save_api_credentials(str(env), "kid-1", "00" * 32)
    text = env.read_text()
    assert "# my wallet" in text and "TURBINE_PRIVATE_KEY=0xabc" in text
    assert "SPIKE_BASE_SPREAD=0.3" in text
    assert "TURBINE_API_KEY_ID=kid-1" in text and "TURBINE_API_PRIVATE_KEY=" + "00" * 32 in text
    assert env.stat().st_mode & 0o077 == 0


def test_dispatch_frame_survives_garbage() -> None:
    got: list[Any] = []

    class H:
        def on_book(self, mid: str, b: Book) -> None:
            got.append(("book", mid, b.best_bid, b.best_ask))

        def on_trade(self, mid: str, t: dict[str, Any]) -> None:
            got.append(("trade", mid))

        def on_market(self, qm: dict[str, Any]) -> None:
            got.append(("market", qm["marketId"]))

        def on_order_cancelled(self, mid: str, d: dict[str, Any]) -> None:
            got.append(("cancelled", d.get("orderHash")))

        def on_status(self, c: bool, reason: str = "") -> None: ...

        def on_bad_frame(self, why: str) -> None:
            got.append(("bad", why.split(":", maxsplit=1)[0]))

    frame = "\n".join(
        [
            json.dumps(
                {
                    "type": "orderbook",
                    "marketId": "0x1",
                    "data": {"bids": [{"price": 1, "size": 2}], "asks": [{"price": 5, "size": 1}]},
                }
            ),
            "{not json",
            "[1]",
            json.dumps(
                {
                    "type": "orderbook",
                    "marketId": "0x1",
                    "data": {"bids": [{"price": -3, "size": 1}]},
                }
            ),
            json.dumps({"type": "trade", "marketId": "0x1", "data": {"price": 1}}),
            json.dumps({"type": "quick_market", "data": {"marketId": "0x2"}}),
            json.dumps({"type": "order_cancelled", "data": {"orderHash": "0xh"}}),
            json.dumps({"no": "type"}),
        ]
    )
    sb.dispatch_frame(frame, H(), 0.0)
    assert got[0] == ("book", "0x1", 1, 5)
    assert [g[0] for g in got].count("bad") == 4
    assert ("trade", "0x1") in got and ("market", "0x2") in got and ("cancelled", "0xh") in got


def test_pacer_holds_the_rate() -> None:
    import time

    p = sb.Pacer(50.0, burst=5)
    t = time.perf_counter()
    for _ in range(30):
        p.acquire()
    # 5 from the burst, 25 at 50/s: at least 0.5 s
    assert time.perf_counter() - t >= 0.45


def test_no_unused_outcome_constants() -> None:
    assert (YES, NO, BUY, SELL) == (0, 1, 0, 1)


def test_ci_runs_the_readme_test_command() -> None:
    root = pathlib.Path(__file__).parent
    readme = (root / "README.md").read_text()
    cmd = next(line for line in readme.splitlines() if "requirements-dev.txt" in line)
    assert cmd in (root / ".ci" / "run").read_text()


def test_a_price_in_the_wrong_unit_is_no_price() -> None:
    """The price endpoint's scale is unconfirmed (spec 1.3): a price off by 1e6 or 1e8 would
    read as probability 0 or 1; outside price_band of the strike it counts as missing."""
    cfg = sb.Config()
    strike = 95_000.0
    assert sb.price_consistent(95_500.0, strike, cfg.price_band)
    for bad in (95_000.0 * 1e6, 95_000.0 * 1e8, 95_000.0 / 1e6, 0.0, None):
        assert not sb.price_consistent(bad, strike, cfg.price_band)
    book = sb.Book(((400_000, 5_000_000),), ((600_000, 5_000_000),), 0.0)
    model_cfg = dataclasses.replace(cfg, fair_source="model")
    assert sb.fair_value(book, strike * 1e6, strike, 300, model_cfg) is None  # no quotes
    assert sb.fair_value(book, strike, strike, 300, model_cfg) == pytest.approx(0.5)
    # blend without a usable price: the book alone, never a model read as 0 or 1
    assert sb.fair_value(book, strike * 1e8, strike, 300, cfg) == sb.micro_price(book)


# -- deep books (issue 23) -------------------------------------------------------------------------
def deep_book(bid: float, ask: float, size: float = 400) -> Book:
    """Five levels a side one cent apart, `size` shares each: 2,000 a side."""
    return book(
        [(bid - i / 100, size) for i in range(5)], [(ask + i / 100, size) for i in range(5)]
    )


def test_a_deep_book_is_met_at_its_touch_one_price_tick_ahead() -> None:
    c = sb.validate(Config())  # today's defaults: a thin-market spread, deep mode on
    b = deep_book(0.52, 0.53)
    assert sb.book_is_deep(b, c)
    qs = sb.quotes(0.525, 0.0, b, 600, c)
    bid, ask = side(qs, BUY), side(qs, SELL)
    assert bid and ask
    # fair 0.525 leaves 0.005 to each touch, more than deep_edge: step ahead of the queue
    assert (bid.price, ask.price) == (520_100, 529_900)
    assert bid.size == ask.size == round(c.deep_order_size * S)
    # the same book in thin mode would rest a risk spread away
    thin = sb.quotes(0.525, 0.0, b, 600, sb.validate(dataclasses.replace(c, deep_depth=0)))
    assert side(thin, BUY).price < 0.50 * P and side(thin, SELL).price > 0.55 * P


def test_a_deep_quote_never_comes_closer_to_fair_than_deep_edge() -> None:
    c = sb.validate(Config())
    b = deep_book(0.52, 0.53)
    qs = sb.quotes(0.5215, 0.0, b, 600, c)  # the bid touch is only 0.0015 under fair
    assert side(qs, BUY).price == 517_500  # fair - deep_edge, behind the touch
    assert side(qs, SELL).price == 529_900
    joined = sb.quotes(0.525, 0.0, b, 600, sb.validate(dataclasses.replace(c, deep_improve=0)))
    assert (side(joined, BUY).price, side(joined, SELL).price) == (520_000, 530_000)


def test_a_deep_book_with_inventory_sells_at_the_touch_and_backs_the_bid_off() -> None:
    c = sb.validate(Config())
    b = deep_book(0.52, 0.53)
    qs = sb.quotes(0.525, 30.0, b, 600, c)  # long 30 of max_position 50: skew -0.09
    assert side(qs, SELL).price == 529_900
    assert side(qs, BUY).price <= round((0.525 - 0.09 - c.deep_edge) * P)


def test_a_thin_or_wide_book_is_not_deep() -> None:
    c = sb.validate(Config())
    assert not sb.book_is_deep(deep_book(0.52, 0.53, size=100), c)  # 500 shares a side
    assert not sb.book_is_deep(deep_book(0.40, 0.60), c)  # deep but 20 ticks wide
    assert not sb.book_is_deep(book([(0.52, 3000)], []), c)  # one-sided
    assert not sb.book_is_deep(deep_book(0.52, 0.53), sb.validate(Config(deep_depth=0)))


@settings(max_examples=200, deadline=None)
@given(
    fair=st.floats(0.02, 0.98),
    inv=st.floats(-60, 60),
    left=st.floats(0, 900),
    bb=st.integers(60, 930),
    width=st.integers(1, 3),
)
def test_deep_quote_invariants(fair: float, inv: float, left: float, bb: int, width: int) -> None:
    """A deep book's quotes never cross or lock it, never sit closer to fair (after skew) than
    deep_edge, and never step further inside the others' best than deep_improve."""
    c = sb.validate(Config())
    b = deep_book(bb / 1000, (bb + width * 10) / 1000)
    qs = sb.quotes(fair, inv, b, left, c)
    centre = fair + sb.inventory_skew(inv, c)
    step = round(c.deep_improve * P)
    for q in qs:
        if q.side == BUY:
            assert q.price < b.best_ask and q.price <= b.best_bid + step
            assert q.price <= (centre - c.deep_edge) * P + 1
        else:
            assert q.price > b.best_bid and q.price >= b.best_ask - step
            assert q.price >= (centre + c.deep_edge) * P - 1
    if left <= c.tminus_pull_s:
        assert qs == []


def test_a_deep_book_weighs_the_book_more_in_the_blend() -> None:
    """Thin book: 0.7 model + 0.3 micro-price; deep book: deep_model_weight (0.3) model."""
    c = sb.validate(Config())
    deep = deep_book(0.52, 0.53)  # equal sizes: micro-price = mid = 0.525
    model = sb.model_probability(100.1, 100.0, 600, c.model_vol)
    got = sb.fair_value(deep, 100.1, 100.0, 600, c)
    assert got == pytest.approx(c.deep_model_weight * model + (1 - c.deep_model_weight) * 0.525)
    thin = deep_book(0.52, 0.53, size=10)
    got = sb.fair_value(thin, 100.1, 100.0, 600, c)
    assert got == pytest.approx(c.model_weight * model + (1 - c.model_weight) * 0.525)


def test_stops_answer_in_their_order_of_priority() -> None:
    """STOPS is the one ordered answer to "may this market quote": with several stops holding
    the first in the list is the reason; a hold-only stop (the host failing) keeps resting
    orders; a side rule stops that side's new orders only."""
    from spike_bot import Check, MarketState, QuickMarket, first_stop

    m = MarketState(QuickMarket("0x" + "ab" * 32, "0x" + "cd" * 20, "BTC", 100.0, 0, 900))
    m.fair = 0.5

    def first(side: int | None = None, **kw: Any) -> Any:
        base = {
            "cfg": cfg(), "m": m, "now": 100.0, "fresh": True, "day_killed": False,
            "bad_read": None,
            "log_ok": True, "host_failing": False, "move_bp": None, "sell_ok": True,
            "dry_run": False,
        }  # fmt: skip
        return first_stop(Check(**{**base, **kw}), side)

    assert first() is None
    assert first(fresh=False, day_killed=True, bad_read="orders").reason == "stale_feed"
    assert first(day_killed=True, log_ok=False).reason == "day_loss_limit"
    host = first(host_failing=True)
    assert host.reason == "host_failing" and not host.close
    m.pnl.position = 5.0
    assert first(side=BUY, sell_ok=False) is None
    sell = first(side=SELL, sell_ok=False)
    assert sell.reason == "held_sell_unapproved" and sell.side == SELL
    # the fast-move pause is off by default; on, a move past it is a closing stop
    assert first(move_bp=80.0) is None
    on = cfg(pause_move_bp=20.0)
    assert first(cfg=on, move_bp=80.0).reason == "fast_move"
    assert first(cfg=on, move_bp=5.0) is None
    m.fair = None
    assert first(cfg=on, move_bp=80.0).reason == "no_fair_value"  # before the pause
