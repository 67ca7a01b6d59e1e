"""Every simulator reply against the wire rules of ../shared/turbine-api.md (section 3.3 and the
endpoint table): field names, JSON types, scales and nullability, one test per type the official
SDK (HEAD) parses. HEAD converts many fields with int(...), so a string where the spec says
integer (a hex market id as QuickMarket.id, say) breaks the real client even when 0.1.0 copes.

The scenario is built once: two accounts trade (settled, pending and failed trades), a market
resolves and one account claims. Signing uses eth-account and the SDK only, never spike_bot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from eth_account import Account
from eth_account.messages import encode_defunct
from turbine_client import Outcome

import spike_bot as sb
import turbine_sim as ts
from conftest import SIM_START, TEST_KEY
from test_turbine_sim import approve_max, client, ctf_approve, headers, redemption

# -- the rules: spike_wire (preflight compares the live API with the same ones) -------------------
from spike_wire import INT, diff


def check(kind: str, obj: Any) -> None:
    """Every field the spec names, present and of its type (fields it does not name are
    allowed: the simulator sends the union of what the SDK versions read)."""
    assert isinstance(obj, dict), f"{kind}: not an object: {obj!r}"
    bad = diff(kind, obj, extra=False)
    assert not bad, f"{kind}: fields break the spec: {bad}"


# -- the scenario ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def replies() -> Iterator[dict[str, Any]]:
    sim = ts.start_sim(
        ts.SimConfig(
            manual_clock=True, start_time=SIM_START + 1, participants=False, settle_delay_s=5.0
        )
    )
    try:
        out: dict[str, Any] = {}
        get = lambda path, c=None, **q: requests.get(  # noqa: E731
            sim.base_url + path, headers=headers(c) if c else None, params=q, timeout=5
        ).json()
        b_key, s_key = TEST_KEY, "0x" + Account.create().key.hex().removeprefix("0x")
        b, s = client(sim, b_key), client(sim, s_key)
        new = Account.create()
        sig = Account.sign_message(
            encode_defunct(text=f"Register API key for Turbine: {new.address}"), new.key
        ).signature.hex()
        out["ApiKey"] = requests.post(
            sim.base_url + "/api/v1/api-keys",
            json={"address": new.address, "signature": "0x" + sig.removeprefix("0x")},
            timeout=5,
        ).json()
        approve_max(sim, b, b_key)
        approve_max(sim, s, s_key)
        r = ctf_approve(sim, s, s_key)
        assert r.status_code == 200, r.text
        out["RelayerReply"] = r.json()
        qm_reply = get("/api/v1/quick-markets/BTC")
        mid = qm_reply["quickMarket"]["marketId"]
        exp = int(sim.clock.now()) + 600
        # a settled trade: s sells YES it does not hold (split), b buys
        s.post_order(s.create_limit_sell(mid, Outcome.YES, 400_000, 12_000_000, expiration=exp))
        out["OrderReply"] = b.post_order(
            b.create_limit_buy(mid, Outcome.YES, 450_000, 4_000_000, expiration=exp)
        )
        out["PendingTrades"] = get("/api/v1/pending-trades")
        tx_settled = out["PendingTrades"]["pendingTrades"][0]["txHash"]
        out["SettlementPending"] = get(f"/api/v1/settlements/{tx_settled}")
        sim.advance(6)
        out["SettlementSettled"] = get(f"/api/v1/settlements/{tx_settled}")
        # a failed trade (settle_fail), then one left pending
        sim.fault("settle_fail", count=1)
        b.post_order(b.create_limit_buy(mid, Outcome.YES, 400_000, 3_000_000, expiration=exp))
        sim.advance(6)
        out["FailedTrades"] = get("/api/v1/failed-trades")
        b.post_order(b.create_limit_buy(mid, Outcome.YES, 400_000, 3_000_000, expiration=exp))
        out["PendingTrades2"] = get("/api/v1/pending-trades")
        out["Markets"] = get("/api/v1/markets")
        out["QuickMarketReply"] = get("/api/v1/quick-markets/BTC")
        out["MarketStats"] = get(f"/api/v1/stats/{mid}")
        out["OrderBook"] = get(f"/api/v1/orderbook/{mid}")
        out["Trades"] = get(f"/api/v1/trades/{mid}")
        out["Orders"] = get("/api/v1/orders", b, trader=b.address)
        out["Positions"] = get(f"/api/v1/users/{b.address}/positions", b, chain_id=137)
        out["UserActivity"] = get(f"/api/v1/users/{b.address}/activity", b)
        out["UserStats"] = get("/api/v1/user-stats", b)
        out["AssetPrice"] = get("/api/v1/quick-markets/BTC/price")
        out["PriceHistory"] = get("/api/v1/quick-markets/BTC/price-history")
        out["Balances"] = get(f"/api/v1/users/{b.address}/balances", chain_id=137)
        out["Nonce"] = get(f"/api/v1/contracts/nonce/{ts.CHAINS[137]['usdc']}/{b.address}")
        out["Holders"] = get(f"/api/v1/holders/{mid}")
        out["PlatformStats"] = get("/api/v1/platform/stats")
        out["ResolutionOpen"] = get(f"/api/v1/resolution/{mid}")
        out["FailedClaims"] = get("/api/v1/failed-claims")
        out["PendingClaims"] = get("/api/v1/pending-claims")
        # resolve with b holding YES, YES winning
        strike = qm_reply["quickMarket"]["startPrice"] / 1e6
        sim.call(lambda: sim.app.ex.prices.__setitem__("BTC", strike * 1.01))
        sim.fault("resolve_now")
        out["ResolutionDone"] = get(f"/api/v1/resolution/{mid}")
        out["History"] = get("/api/v1/quick-markets/BTC/history")
        out["Claimable"] = get(f"/api/v1/users/{b.address}/claimable", b, chain_id=137)
        contract = out["MarketStats"]["contractAddress"]
        cd = get(f"/api/v1/users/{b.address}/claim-data", chain_id=137, markets=contract)
        out["ClaimData"] = cd
        red = redemption(b_key, cd["markets"][0], int(sim.clock.now()) + 3600)
        out["BatchRelayerReply"] = requests.post(
            sim.base_url + "/api/v1/relayer/batch-ctf-redemption",
            headers=headers(b),
            json={"chainId": 137, "owner": b.address, "redemptions": [red]},
            timeout=5,
        ).json()
        out["address"] = b.address
        yield out
    finally:
        sim.stop()


# -- one test per type --------------------------------------------------------------------------
def test_market(replies: dict[str, Any]) -> None:
    ms = replies["Markets"]["markets"]
    assert ms
    for m in ms:
        check("Market", m)


def test_market_stats(replies: dict[str, Any]) -> None:
    check("MarketStats", replies["MarketStats"])
    assert replies["MarketStats"]["totalVolume"] == 10_000_000  # settled, failed and pending


def test_quick_market(replies: dict[str, Any]) -> None:
    r = replies["QuickMarketReply"]
    check("QuickMarketReply", r)
    qm = r["quickMarket"]
    check("QuickMarket", qm)
    assert 10_000 < qm["startPrice"] / 1e6 < 1_000_000  # BTC in USD at 1e6, not 1e8
    assert qm["endTime"] - qm["startTime"] == qm["intervalMinutes"] * 60
    hist = replies["History"]["markets"]
    for q in hist:
        check("QuickMarket", q)
    done = next(q for q in hist if q["resolved"])
    assert INT(done["endPrice"]) and done["outcome"] == 0
    assert len({q["id"] for q in hist}) == len(hist)


def test_order_book_and_levels(replies: dict[str, Any]) -> None:
    ob = replies["OrderBook"]
    check("OrderBook", ob)
    assert ob["asks"], "the resting ask is in the book"
    for lv in ob["bids"] + ob["asks"]:
        check("Level", lv)
    assert [x["price"] for x in ob["asks"]] == sorted(x["price"] for x in ob["asks"])
    bids = [x["price"] for x in ob["bids"]]
    assert bids == sorted(bids, reverse=True)


def test_trade(replies: dict[str, Any]) -> None:
    trades = replies["Trades"]["trades"]
    assert len(trades) == 3
    for t in trades:
        check("Trade", t)
    assert len({t["id"] for t in trades}) == 3
    assert trades[0]["timestamp"] >= trades[-1]["timestamp"]  # newest first


def test_order_and_post_reply(replies: dict[str, Any]) -> None:
    check("OrderReply", replies["OrderReply"])
    assert replies["OrderReply"]["matches"] == 1
    for o in replies["Orders"]["orders"]:
        check("Order", o)


def test_position(replies: dict[str, Any]) -> None:
    ps = replies["Positions"]["positions"]
    assert ps
    for p in ps:
        check("Position", p)
    # the settled trade only: the failed one moved nothing, the last one is still pending
    assert sum(p["yesShares"] for p in ps) == 4_000_000


def test_user_activity_and_stats(replies: dict[str, Any]) -> None:
    check("UserActivity", replies["UserActivity"])
    check("UserStats", replies["UserStats"])


def test_pending_trade(replies: dict[str, Any]) -> None:
    for key in ("PendingTrades", "PendingTrades2"):
        rows = replies[key]["pendingTrades"]
        assert len(rows) == 1
        check("PendingTrade", rows[0])


def test_failed_trade(replies: dict[str, Any]) -> None:
    rows = replies["FailedTrades"]["failedTrades"]
    assert len(rows) == 1
    check("FailedTrade", rows[0])
    assert "settle_fail" in rows[0]["reason"] and rows[0]["fillSize"] == 3_000_000


def test_failed_and_pending_claims(replies: dict[str, Any]) -> None:
    # redemptions execute at once in the simulator: the lists exist and are empty
    assert replies["FailedClaims"] == {"failedClaims": []}
    assert replies["PendingClaims"] == {"pendingClaims": []}


def test_settlement_status(replies: dict[str, Any]) -> None:
    check("SettlementStatus", replies["SettlementPending"])
    check("SettlementStatus", replies["SettlementSettled"])
    assert replies["SettlementPending"]["status"] == "pending"
    assert replies["SettlementSettled"]["status"] == "settled"


def test_resolution(replies: dict[str, Any]) -> None:
    open_, done = replies["ResolutionOpen"], replies["ResolutionDone"]
    check("Resolution", open_)
    check("Resolution", done)
    # HEAD does int(winningOutcome): absent (not null) until resolved
    assert "winningOutcome" not in open_ and not open_["resolved"]
    assert done["resolved"] and done["winningOutcome"] == 0


def test_asset_price(replies: dict[str, Any]) -> None:
    check("AssetPrice", replies["AssetPrice"])
    for p in replies["PriceHistory"]["prices"]:
        check("AssetPrice", p)


def test_claimable_and_claim_data(replies: dict[str, Any]) -> None:
    r = replies["Claimable"]
    check("ClaimableReply", r)
    # 4 settled shares, plus the pending one: resolution waits for the market's last batch
    assert r["count"] == 1 and r["totalPayout"] == "7.00"
    check("Claimable", r["claimable"][0])
    check("ClaimData", replies["ClaimData"]["markets"][0])


def test_balances_and_nonce(replies: dict[str, Any]) -> None:
    check("Balances", replies["Balances"])
    assert int(replies["Balances"]["allowance"]) == 2**256 - 1
    check("Nonce", replies["Nonce"])


def test_api_key_and_relayer_replies(replies: dict[str, Any]) -> None:
    check("ApiKey", replies["ApiKey"])
    check("RelayerReply", replies["RelayerReply"])
    check("BatchRelayerReply", replies["BatchRelayerReply"])


def test_holders_and_platform_stats(replies: dict[str, Any]) -> None:
    for h in replies["Holders"]["topHolders"]:
        check("Holder", h)
    ps = replies["PlatformStats"]
    check("PlatformStats", ps)
    check("ChainStats", ps["chains"][0])


def test_bot_parses_what_the_sdk_parses(replies: dict[str, Any]) -> None:
    """spike_bot's parsers take the integer QuickMarket id (and ignore it: marketId is the key)."""
    qm = sb.QuickMarket.parse(replies["QuickMarketReply"])
    assert qm.market_id == replies["QuickMarketReply"]["quickMarket"]["marketId"]
    only_int_id = {**replies["QuickMarketReply"]["quickMarket"], "id": 12345}
    assert sb.QuickMarket.parse(only_int_id).market_id == qm.market_id


def test_bot_reads_every_documented_positions_shape(replies: dict[str, Any]) -> None:
    """GET /positions/{market}: the SDK's wrapped list, a bare list, and the single object of
    the API docs (which the SDK turns into []) all give the bot its shares."""
    rows = replies["Positions"]["positions"]
    mid = rows[0]["marketId"]
    want = (rows[0]["yesShares"], rows[0]["noShares"])
    assert sb.parse_position({"positions": rows}, mid) == want
    assert sb.parse_position(rows, mid) == want
    single = {k: rows[0][k] for k in ("yesShares", "noShares", "totalInvested")}
    assert sb.parse_position(single, mid) == want
    assert sb.parse_position({"yesShares": 0, "noShares": 0}, mid) == (0, 0)
    assert sb.parse_position({"positions": rows}, "0x" + "ab" * 32) == (0, 0)
    with pytest.raises(sb.ExchangeError):
        sb.parse_position({"positions": [{"marketId": mid, "yesShares": "x"}]}, mid)
