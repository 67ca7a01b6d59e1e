"""turbine_sim against the official SDK (turbine-py-client, unmodified) and raw requests.

Signing here uses eth-account and the SDK only, never spike_bot, so the simulator is checked
independently of the bot it will judge.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import pytest
import requests
import websocket
from eth_account import Account
from eth_account.messages import encode_defunct
from turbine_client import Outcome, Side, TurbineClient, TurbineWSClient
from turbine_client.auth import create_bearer_auth
from turbine_client.exceptions import TurbineApiError

import turbine_sim as ts
from conftest import SETTLEMENT, SIM_START, TEST_KEY, wait_until

MAX = 2**256 - 1
DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


# -- helpers (independent of spike_bot) --------------------------------------------------------
def register(sim: ts.Sim, key: str) -> tuple[str, str]:
    return ts.new_api_credentials_for_tests(sim, key)


def client(sim: ts.Sim, key: str) -> TurbineClient:
    kid, sec = register(sim, key)
    return TurbineClient(sim.base_url, 137, private_key=key, api_key_id=kid, api_private_key=sec)


def headers(c: TurbineClient) -> dict[str, str]:
    return c._auth.get_auth_header()  # the SDK's own bearer token


def permit(key: str, value: int, nonce: int, deadline: int) -> dict[str, Any]:
    owner = Account.from_key(key).address
    td = {
        "types": {
            "EIP712Domain": DOMAIN_FIELDS,
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "Permit",
        "domain": {
            "name": "USD Coin",
            "version": "2",
            "chainId": 137,
            "verifyingContract": ts.CHAINS[137]["usdc"],
        },
        "message": {
            "owner": owner,
            "spender": SETTLEMENT,
            "value": value,
            "nonce": nonce,
            "deadline": deadline,
        },
    }
    sm = Account.sign_typed_data(key, full_message=td)
    return {
        "nonce": nonce,
        "value": str(value),
        "deadline": str(deadline),
        "v": sm.v,
        "r": "0x" + sm.r.to_bytes(32, "big").hex(),
        "s": "0x" + sm.s.to_bytes(32, "big").hex(),
    }


def approve_max(sim: ts.Sim, c: TurbineClient, key: str) -> None:
    p = permit(key, MAX, 0, MAX)
    r = requests.post(
        sim.base_url + "/api/v1/relayer/usdc-permit",
        headers=headers(c),
        json={
            "chainId": 137,
            "owner": c.address,
            "spender": SETTLEMENT,
            "value": p["value"],
            "deadline": p["deadline"],
            "v": p["v"],
            "r": p["r"],
            "s": p["s"],
        },
        timeout=5,
    )
    assert r.status_code == 200, r.text


def redemption(key: str, cd: dict[str, Any], deadline: int) -> dict[str, Any]:
    owner = Account.from_key(key).address
    idx = [1] if cd["winning_outcome"] == 0 else [2]
    td = {
        "types": {
            "EIP712Domain": DOMAIN_FIELDS,
            "RedeemPositions": [
                {"name": "owner", "type": "address"},
                {"name": "collateralToken", "type": "address"},
                {"name": "parentCollectionId", "type": "bytes32"},
                {"name": "conditionId", "type": "bytes32"},
                {"name": "indexSets", "type": "uint256[]"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "RedeemPositions",
        "domain": {
            "name": "ConditionalTokensWithPermit",
            "version": "1",
            "chainId": 137,
            "verifyingContract": cd["ctf_address"],
        },
        "message": {
            "owner": owner,
            "collateralToken": cd["collateral_token"],
            "parentCollectionId": b"\0" * 32,
            "conditionId": bytes.fromhex(cd["condition_id"][2:]),
            "indexSets": idx,
            "nonce": cd["ctf_nonce"],
            "deadline": deadline,
        },
    }
    sm = Account.sign_typed_data(key, full_message=td)
    return {
        "chainId": 137,
        "owner": owner,
        "collateralToken": cd["collateral_token"],
        "parentCollectionId": "0x" + "00" * 32,
        "conditionId": cd["condition_id"],
        "indexSets": [str(i) for i in idx],
        "deadline": str(deadline),
        "v": sm.v,
        "r": "0x" + sm.r.to_bytes(32, "big").hex(),
        "s": "0x" + sm.s.to_bytes(32, "big").hex(),
        "marketAddress": cd["market_address"],
    }


def quiet_sim(**kw: Any) -> ts.Sim:
    """A simulator without participants: books hold only what the test puts there."""
    from conftest import SIM_START

    return ts.start_sim(
        ts.SimConfig(manual_clock=True, start_time=SIM_START + 1, participants=False, **kw)
    )


# -- signing vectors -----------------------------------------------------------------------------
def test_sim_hashing_matches_reference_vectors(vectors: dict[str, Any]) -> None:
    for v in vectors["orders"]:
        ds = ts.domain_separator("Turbine", "1", v["chain_id"], v["verifying_contract"])
        assert "0x" + ds.hex() == v["domain_separator"]
        sh = ts.order_struct_hash(v["order"])
        assert "0x" + sh.hex() == v["struct_hash"]
        assert "0x" + ts.eip712_digest(ds, sh).hex() == v["digest"]
        assert "0x" + ts.keccak(sh).hex() == v["sdk_order_hash"]
        signer = ts.recover(bytes.fromhex(v["digest"][2:]), bytes.fromhex(v["signature"][2:]))
        assert signer == vectors["key"]["address"].lower()
    for p in vectors["usdc_permits"]:
        m = p["message"]
        struct = ts.keccak(
            ts.PERMIT_TYPEHASH
            + ts._addr32(m["owner"])
            + ts._addr32(m["spender"])
            + ts._u256(int(m["value"]))
            + ts._u256(m["nonce"])
            + ts._u256(int(m["deadline"]))
        )
        d = p["domain"]
        ds = ts.domain_separator(d["name"], d["version"], d["chainId"], d["verifyingContract"])
        assert "0x" + ts.eip712_digest(ds, struct).hex() == p["digest"]


# -- SDK conformance -----------------------------------------------------------------------------
def test_sdk_public_reads_parse(sim: ts.Sim) -> None:
    sim.advance(60)
    c = TurbineClient(sim.base_url, 137)
    qm = c.get_quick_market("BTC")
    assert qm.market_id.startswith("0x") and len(qm.market_id) == 66
    assert qm.asset == "BTC" and qm.start_price > 0 and qm.end_time > sim.clock.now()
    assert any(m.id == qm.market_id for m in c.get_markets())
    assert c.get_market(qm.market_id).settlement_address == SETTLEMENT
    hist = c.get_quick_market_history("BTC", limit=5)
    assert hist[0].market_id == qm.market_id
    ob = c.get_orderbook(qm.market_id)
    assert ob.bids and ob.asks and ob.bids[0].price < ob.asks[0].price
    assert all(ob.bids[i].price > ob.bids[i + 1].price for i in range(len(ob.bids) - 1))
    c.get_trades(qm.market_id)
    assert c.get_stats(qm.market_id).market_id == qm.market_id
    assert c.get_health()["status"] == "ok"
    price = requests.get(sim.base_url + "/api/v1/quick-markets/BTC/price", timeout=5).json()
    assert price["price"] > 0 and abs(price["timestamp"] - sim.clock.now()) < 2


def test_sdk_order_lifecycle(sim: ts.Sim) -> None:
    c = client(sim, TEST_KEY)
    approve_max(sim, c, TEST_KEY)
    qm = c.get_quick_market("BTC")
    exp = int(sim.clock.now()) + 600
    so = c.create_limit_buy(qm.market_id, Outcome.YES, 10_000, 5_000_000, expiration=exp)
    resp = c.post_order(so)
    assert resp["orderHash"] == so.order_hash  # the SDK's hash rule is the simulator's
    open_hashes = [o.order_hash for o in c.get_orders(trader=c.address, status="open")]
    assert so.order_hash in open_hashes
    assert c.get_order(so.order_hash).remaining_size == 5_000_000
    assert so.order_hash in [o.order_hash for o in c.get_user_orders(c.address)]
    assert any(o["orderHash"] == so.order_hash for o in sim.state()["open_orders"])
    c.cancel_order(so.order_hash, qm.market_id, Side.BUY)
    with pytest.raises(TurbineApiError) as e:
        c.cancel_order(so.order_hash, qm.market_id, Side.BUY)
    assert e.value.status_code == 404
    assert not sim.state()["open_orders"]


def test_sdk_fill_shows_in_positions_and_sell_not_held_is_split(fresh_key: str) -> None:
    sim = quiet_sim()
    try:
        buyer_key = TEST_KEY
        b, s = client(sim, buyer_key), client(sim, fresh_key)
        approve_max(sim, b, buyer_key)
        approve_max(sim, s, fresh_key)
        mid = b.get_quick_market("BTC").market_id
        exp = int(sim.clock.now()) + 600
        ask = s.create_limit_sell(mid, Outcome.YES, 400_000, 10_000_000, expiration=exp)
        s.post_order(ask)
        bid = b.create_limit_buy(mid, Outcome.YES, 450_000, 4_000_000, expiration=exp)
        assert b.post_order(bid)["status"] == "filled"
        # matched off-chain: pending until its batch settles (settle_delay_s), positions follow
        # the chain, so they move only then
        pend = requests.get(f"{sim.base_url}/api/v1/pending-trades", timeout=5).json()
        assert [p["fillSize"] for p in pend["pendingTrades"]] == [4_000_000]
        assert b.get_positions(mid, b.address)[0].yes_shares == 0
        sim.advance(2)
        assert requests.get(f"{sim.base_url}/api/v1/pending-trades", timeout=5).json() == {
            "pendingTrades": []
        }
        bp = b.get_positions(mid, b.address)[0]
        sp = s.get_positions(mid, s.address)[0]
        assert bp.yes_shares == 4_000_000 and bp.no_shares == 0
        # seller had no YES: 4 shares were split, 4 YES sold, 4 NO left
        assert sp.yes_shares == 0 and sp.no_shares == 4_000_000
        assert s.get_order(ask.order_hash).remaining_size == 6_000_000
        st = sim.state()
        assert st["invariants_ok"], st["invariant_errors"]
        # buyer (taker) paid 0.40 * 4 plus a 1% fee on size; seller put up 4 USDC, got 1.60
        assert st["balances"][b.address.lower()] == 1_000_000_000 - 1_600_000 - 40_000
        assert st["balances"][s.address.lower()] == 1_000_000_000 - 4_000_000 + 1_600_000
        trades = b.get_trades(mid)
        assert trades[0].price == 400_000 and trades[0].size == 4_000_000
        act = requests.get(
            f"{sim.base_url}/api/v1/users/{b.address}/activity", headers=headers(b), timeout=5
        ).json()
        assert act["totalTrades"] == 1
    finally:
        sim.stop()


def test_price_time_priority() -> None:
    sim = quiet_sim()
    keys = [Account.create().key.hex() for _ in range(3)]
    try:
        cs = [client(sim, k) for k in keys]
        for c, k in zip(cs, keys, strict=True):
            approve_max(sim, c, k)
        mid = cs[0].get_quick_market("BTC").market_id
        exp = int(sim.clock.now()) + 600
        first = cs[0].create_limit_sell(mid, Outcome.YES, 500_000, 1_000_000, expiration=exp)
        second = cs[1].create_limit_sell(mid, Outcome.YES, 500_000, 1_000_000, expiration=exp)
        better = cs[1].create_limit_sell(mid, Outcome.YES, 490_000, 1_000_000, expiration=exp)
        cs[0].post_order(first)
        cs[1].post_order(second)
        cs[1].post_order(better)
        cs[2].post_order(
            cs[2].create_limit_buy(mid, Outcome.YES, 500_000, 2_000_000, expiration=exp)
        )
        assert cs[1].get_order(better.order_hash).status == "filled"
        assert cs[0].get_order(first.order_hash).status == "filled"
        assert cs[1].get_order(second.order_hash).status == "open"
    finally:
        sim.stop()


def test_refusals_tampered_expired_reused_nonce_and_auth(sim: ts.Sim) -> None:
    c = client(sim, TEST_KEY)
    approve_max(sim, c, TEST_KEY)
    mid = c.get_quick_market("BTC").market_id
    now = int(sim.clock.now())
    good = c.create_limit_buy(mid, Outcome.YES, 10_000, 1_000_000, expiration=now + 600)
    body = good.to_dict()
    tampered = json.loads(json.dumps(body))
    tampered["order"]["price"] = 20_000
    r = requests.post(sim.base_url + "/api/v1/orders", json=tampered, headers=headers(c), timeout=5)
    assert r.status_code == 400 and r.json()["error"] == "invalid signature"
    for exp in (now - 1, now + 59):  # [docs] at least 60 s ahead
        short = c.create_limit_buy(mid, Outcome.YES, 10_000, 1_000_000, expiration=exp)
        with pytest.raises(TurbineApiError, match="at least 60 seconds"):
            c.post_order(short)
    # [docs] a taker order must be worth $1; a resting one need not be
    ask = c.create_limit_sell(mid, Outcome.YES, 900_000, 1_000_000, expiration=now + 600)
    c.post_order(ask)
    small = c.create_limit_buy(mid, Outcome.YES, 900_000, 1_000_000, expiration=now + 600)
    with pytest.raises(TurbineApiError, match=r"\$1 minimum"):
        c.post_order(small)
    c.cancel_order(ask.order_hash)
    c.post_order(good)
    with pytest.raises(TurbineApiError, match="nonce"):
        c.post_order(good)
    # no token, a stale token, a token from another key's secret
    r = requests.post(sim.base_url + "/api/v1/orders", json=body, timeout=5)
    assert r.status_code == 401 and "error" in r.json()
    import base64

    stale = json.dumps(
        {"kid": c._auth._credentials.key_id, "ts": int(time.time()) - 400, "n": "00" * 16},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    sig = c._auth._signing_key.sign(stale).signature
    tok = (
        base64.urlsafe_b64encode(stale).rstrip(b"=")
        + b"."
        + base64.urlsafe_b64encode(sig).rstrip(b"=")
    ).decode()
    r = requests.get(
        sim.base_url + "/api/v1/orders", headers={"Authorization": f"Bearer {tok}"}, timeout=5
    )
    assert r.status_code == 401
    forged = create_bearer_auth(c._auth._credentials.key_id, "11" * 32).get_auth_header()
    assert (
        requests.get(sim.base_url + "/api/v1/orders", headers=forged, timeout=5).status_code == 401
    )
    # price range and size
    for field, val in (("price", 0), ("price", 1_000_000), ("size", 0)):
        b2 = json.loads(json.dumps(body))
        b2["order"][field] = val
        r = requests.post(sim.base_url + "/api/v1/orders", json=b2, headers=headers(c), timeout=5)
        assert r.status_code == 400


def test_registration_once_and_409(sim: ts.Sim, fresh_key: str) -> None:
    kid, _ = register(sim, fresh_key)
    acct = Account.from_key(fresh_key)
    sig = Account.sign_message(
        encode_defunct(text=f"Register API key for Turbine: {acct.address}"), fresh_key
    ).signature.hex()
    r = requests.post(
        sim.base_url + "/api/v1/api-keys",
        json={"address": acct.address, "signature": "0x" + sig.removeprefix("0x")},
        timeout=5,
    )
    assert r.status_code == 409 and r.json()["api_key_id"] == kid
    bad = requests.post(
        sim.base_url + "/api/v1/api-keys",
        json={"address": Account.create().address, "signature": "0x" + sig.removeprefix("0x")},
        timeout=5,
    )
    assert bad.status_code in (400, 401)


def test_allowance_per_order_permit_and_nonce(sim: ts.Sim, fresh_key: str) -> None:
    c = client(sim, fresh_key)
    mid = c.get_quick_market("BTC").market_id
    now = int(sim.clock.now())
    o1 = c.create_limit_buy(mid, Outcome.YES, 100_000, 10_000_000, expiration=now + 600)
    with pytest.raises(TurbineApiError, match="exceeds allowance"):
        c.post_order(o1)
    need = 100_000 * 10_000_000 // 1_000_000 + 10_000_000 // 100
    body = o1.to_dict()
    body["permitSignature"] = permit(fresh_key, need * 11 // 10, 0, now + 3600)
    r = requests.post(sim.base_url + "/api/v1/orders", json=body, headers=headers(c), timeout=5)
    assert r.status_code == 200, r.text
    nonce_url = f"{sim.base_url}/api/v1/contracts/nonce/{ts.CHAINS[137]['usdc']}/{c.address}"
    assert requests.get(nonce_url, timeout=5).json()["nonce"] == 1
    # reusing permit nonce 0 is refused, as is a permit for too little
    o2 = c.create_limit_buy(mid, Outcome.YES, 100_000, 10_000_000, expiration=now + 600)
    b2 = o2.to_dict()
    b2["permitSignature"] = permit(fresh_key, need * 2, 0, now + 3600)
    r = requests.post(sim.base_url + "/api/v1/orders", json=b2, headers=headers(c), timeout=5)
    assert r.status_code == 400 and "nonce" in r.json()["error"]
    b2["permitSignature"] = permit(fresh_key, 1, 1, now + 3600)
    r = requests.post(sim.base_url + "/api/v1/orders", json=b2, headers=headers(c), timeout=5)
    assert r.status_code == 400 and "allowance" in r.json()["error"]
    # a permit signed by another key is refused
    b2["permitSignature"] = permit(TEST_KEY, need * 2, 1, now + 3600)
    r = requests.post(sim.base_url + "/api/v1/orders", json=b2, headers=headers(c), timeout=5)
    assert r.status_code == 400 and "permit" in r.json()["error"]


def test_balance_refusal(fresh_key: str) -> None:
    sim = quiet_sim(initial_usdc=1.0)
    try:
        c = client(sim, fresh_key)
        approve_max(sim, c, fresh_key)
        mid = c.get_quick_market("BTC").market_id
        o = c.create_limit_buy(
            mid, Outcome.YES, 500_000, 10_000_000, expiration=int(sim.clock.now()) + 600
        )
        with pytest.raises(TurbineApiError, match="exceeds balance"):
            c.post_order(o)
    finally:
        sim.stop()


def test_cancel_by_market_and_market_closed(sim: ts.Sim) -> None:
    c = client(sim, TEST_KEY)
    approve_max(sim, c, TEST_KEY)
    mid = c.get_quick_market("BTC").market_id
    exp = int(sim.clock.now()) + 3600
    for p in (10_000, 20_000):
        c.post_order(c.create_limit_buy(mid, Outcome.YES, p, 1_000_000, expiration=exp))
    assert c.cancel_market_orders(mid)["cancelled"] == 2
    assert not c.get_orders(trader=c.address, status="open")
    c.post_order(c.create_limit_buy(mid, Outcome.YES, 10_000, 1_000_000, expiration=exp))
    sim.advance(15 * 60)  # the market ends: its orders die, new orders are refused
    assert not sim.state()["open_orders"]
    statuses = sorted(o.status for o in c.get_orders(trader=c.address, market_id=mid))
    assert statuses == ["cancelled", "cancelled", "expired"]
    with pytest.raises(TurbineApiError, match="closed"):
        c.post_order(c.create_limit_buy(mid, Outcome.YES, 10_000, 1_000_000, expiration=exp))


def test_resolution_claim_pays_once(fresh_key: str) -> None:
    sim = quiet_sim()
    try:
        a, b = client(sim, TEST_KEY), client(sim, fresh_key)
        approve_max(sim, a, TEST_KEY)
        approve_max(sim, b, fresh_key)
        qm = a.get_quick_market("BTC")
        mid = qm.market_id
        exp = int(sim.clock.now()) + 600
        b.post_order(b.create_limit_sell(mid, Outcome.YES, 500_000, 10_000_000, expiration=exp))
        a.post_order(a.create_limit_buy(mid, Outcome.YES, 500_000, 10_000_000, expiration=exp))
        sim.fault("resolve_now")
        res = requests.get(f"{sim.base_url}/api/v1/resolution/{mid}", timeout=5).json()
        assert res["resolved"] is True and res["winningOutcome"] in (0, 1)
        winner_key, winner = (TEST_KEY, a) if res["winningOutcome"] == 0 else (fresh_key, b)
        assert a.get_quick_market("BTC").market_id != mid  # the next market opened at once
        contract = requests.get(f"{sim.base_url}/api/v1/markets/{mid}", timeout=5).json()[
            "contractAddress"
        ]
        cl = requests.get(
            f"{sim.base_url}/api/v1/users/{winner.address}/claimable", timeout=5
        ).json()
        assert cl["count"] == 1 and cl["claimable"][0]["payout"] == "10.00"
        cd = requests.get(
            f"{sim.base_url}/api/v1/users/{winner.address}/claim-data",
            params={"chain_id": 137, "markets": contract},
            timeout=5,
        ).json()["markets"][0]
        assert cd["resolved"] and cd["winning_balance"] == "10000000"
        before = sim.state()["balances"][winner.address.lower()]
        body = redemption(winner_key, cd, int(sim.clock.now()) + 3600)
        r = requests.post(
            sim.base_url + "/api/v1/relayer/ctf-redemption",
            json=body,
            headers=headers(winner),
            timeout=5,
        )
        assert r.status_code == 200, r.text
        st = sim.state()
        assert st["balances"][winner.address.lower()] == before + 10_000_000
        # the same signature again is refused (nonce moved); a fresh one pays nothing
        r = requests.post(
            sim.base_url + "/api/v1/relayer/ctf-redemption",
            json=body,
            headers=headers(winner),
            timeout=5,
        )
        assert r.status_code == 400
        cd2 = requests.get(
            f"{sim.base_url}/api/v1/users/{winner.address}/claim-data",
            params={"markets": contract},
            timeout=5,
        ).json()["markets"][0]
        assert cd2["winning_balance"] == "0"
        r = requests.post(
            sim.base_url + "/api/v1/relayer/batch-ctf-redemption",
            json={
                "chainId": 137,
                "owner": winner.address,
                "redemptions": [redemption(winner_key, cd2, int(sim.clock.now()) + 3600)],
            },
            headers=headers(winner),
            timeout=5,
        )
        assert r.status_code == 200 and r.json()["results"][0]["payout"] == "0"
        st = sim.state()
        assert st["balances"][winner.address.lower()] == before + 10_000_000
        assert st["invariants_ok"], st["invariant_errors"]
    finally:
        sim.stop()


# -- stream --------------------------------------------------------------------------------------
class WsReader:
    """A websocket-client reader collecting newline-separated messages."""

    def __init__(self, sim: ts.Sim) -> None:
        self.ws = websocket.create_connection(sim.ws_url, timeout=5)
        self.msgs: list[Any] = []
        self.raw: list[str] = []

    def sub(self, mid: str) -> None:
        self.ws.send(json.dumps({"type": "subscribe", "marketId": mid}))

    def read(self, seconds: float = 0.3) -> list[Any]:
        self.ws.settimeout(seconds)
        got = []
        try:
            while True:
                frame = self.ws.recv()
                self.raw.append(frame)
                for line in frame.split("\n"):
                    try:
                        got.append(json.loads(line))
                    except ValueError:
                        got.append({"type": "_malformed", "raw": line})
        except (websocket.WebSocketTimeoutException, websocket.WebSocketConnectionClosedException):
            pass
        self.msgs += got
        return got


def test_stream_snapshot_trades_and_rollover(sim: ts.Sim) -> None:
    sim.advance(30)
    mid = sim.state()["markets"]["BTC:15"]["marketId"]
    r = WsReader(sim)
    r.sub(mid)
    first = r.read()
    book = next(m for m in first if m["type"] == "orderbook")
    assert book["marketId"] == mid and set(book["data"]) >= {"bids", "asks", "lastUpdate"}
    sim.advance(15 * 60)
    got = r.read()
    types = {m["type"] for m in got}
    assert "trade" in types and "orderbook" in types
    qms = [m for m in got if m["type"] == "quick_market"]
    assert len(qms) == 1 and qms[0]["data"]["marketId"] != mid
    assert qms[0]["data"]["startTime"] == qms[0]["data"]["endTime"] - 900
    tr = next(m for m in got if m["type"] == "trade")["data"]
    assert {"price", "size", "buyer", "seller", "outcome", "timestamp"} <= set(tr)
    r.ws.close()


def test_sdk_ws_client_parses_stream(sim: ts.Sim) -> None:
    sim.advance(30)
    mid = sim.state()["markets"]["BTC:15"]["marketId"]

    async def run() -> Any:
        async with TurbineWSClient(sim.base_url).connect() as stream:
            await stream.subscribe_orderbook(mid)
            ack = await asyncio.wait_for(stream.recv(), 5)
            return ack, await asyncio.wait_for(stream.recv(), 5)

    ack, msg = asyncio.run(run())
    assert ack.type == "subscribe" and ack.data == {"status": "subscribed"}  # [docs] first
    assert msg.type == "orderbook" and msg.orderbook is not None and msg.orderbook.bids


# -- faults --------------------------------------------------------------------------------------
def test_http_faults_429_500_latency_and_admin_surface(sim: ts.Sim) -> None:
    url = sim.base_url + "/api/v1/quick-markets/BTC"
    r = requests.post(sim.base_url + "/sim/fault/http_429", json={"count": 2}, timeout=5)
    assert r.status_code == 200
    codes = [requests.get(url, timeout=5).status_code for _ in range(3)]
    assert codes == [429, 429, 200]
    assert requests.get(sim.base_url + "/sim/state", timeout=5).status_code == 200  # never faulted
    sim.fault("http_500", fraction=1.0)
    r = requests.get(url, timeout=5)
    assert r.status_code == 500 and r.json() == {"error": "internal server error"}
    sim.clear_fault("http_500")
    assert requests.get(url, timeout=5).status_code == 200
    sim.fault("latency", ms=150)
    t = time.perf_counter()
    requests.get(url, timeout=5)
    assert time.perf_counter() - t >= 0.15
    requests.delete(sim.base_url + "/sim/fault/latency", timeout=5)
    assert "latency" not in sim.state()["faults"]
    assert requests.post(sim.base_url + "/sim/fault/nope", timeout=5).status_code == 404
    r = requests.post(sim.base_url + "/sim/advance", json={"seconds": 5}, timeout=5)
    assert r.json()["time"] == pytest.approx(sim.clock.now())
    st = requests.get(sim.base_url + "/sim/state", timeout=5).json()
    assert {"time", "markets", "open_orders", "balances", "invariants_ok"} <= set(st)


def test_cancel_404_and_permit_reject(sim: ts.Sim) -> None:
    c = client(sim, TEST_KEY)
    approve_max(sim, c, TEST_KEY)
    mid = c.get_quick_market("BTC").market_id
    o = c.create_limit_buy(
        mid, Outcome.YES, 10_000, 1_000_000, expiration=int(sim.clock.now()) + 600
    )
    c.post_order(o)
    sim.fault("cancel_404", count=1)
    with pytest.raises(TurbineApiError) as e:
        c.cancel_order(o.order_hash)
    assert e.value.status_code == 404
    assert any(x["orderHash"] == o.order_hash for x in sim.state()["open_orders"])
    c.cancel_order(o.order_hash)  # the count ran out: cancels work again
    sim.fault("permit_reject")
    o2 = c.create_limit_buy(
        mid, Outcome.YES, 10_000, 1_000_000, expiration=int(sim.clock.now()) + 600
    )
    body = o2.to_dict()
    body["permitSignature"] = permit(TEST_KEY, 10**7, 1, int(sim.clock.now()) + 3600)
    r = requests.post(sim.base_url + "/api/v1/orders", json=body, headers=headers(c), timeout=5)
    assert r.status_code == 400 and "permit" in r.json()["error"]
    sim.clear_fault("permit_reject")
    r = requests.post(sim.base_url + "/api/v1/orders", json=body, headers=headers(c), timeout=5)
    assert r.status_code == 200


def test_ws_faults_drop_freeze_malformed(sim: ts.Sim) -> None:
    sim.advance(5)
    mid = sim.state()["markets"]["BTC:15"]["marketId"]
    r = WsReader(sim)
    r.sub(mid)
    assert r.read()
    sim.fault("ws_freeze")
    sim.advance(20)
    assert r.read() == []  # open but silent
    sim.clear_fault("ws_freeze")
    assert any(m["type"] == "orderbook" for m in r.read())
    sim.fault("malformed_ws")
    sim.advance(5)
    assert any(
        m["type"] == "_malformed"
        or "type" not in m
        or m.get("type") is None
        or not isinstance(m, dict)
        for m in r.read()
    )
    sim.clear_fault("malformed_ws")
    sim.fault("ws_drop", refuse=True)
    wait_until(lambda: sim.state()["ws_clients"] == 0)
    with pytest.raises(websocket.WebSocketException):
        websocket.create_connection(sim.ws_url, timeout=2)
    sim.clear_fault("ws_drop")
    r2 = WsReader(sim)
    r2.sub(mid)
    assert r2.read()
    r2.ws.close()


def test_full_day_invariants_hold() -> None:
    """96 markets with participants: every market resolves, USDC and share supply conserve."""
    from conftest import SIM_START

    sim = ts.start_sim(ts.SimConfig(manual_clock=True, start_time=SIM_START, seed=11))
    try:
        sim.advance(24 * 3600 + 60)
        st = sim.state()
        assert st["invariants_ok"], st["invariant_errors"]
        assert st["counters"]["rollovers"] == 96
        assert st["counters"]["resolved"] >= 96
        assert st["counters"]["trades"] > 96 * 10
    finally:
        sim.stop()


def test_deterministic_for_seed() -> None:
    from conftest import SIM_START

    def run() -> tuple[Any, ...]:
        s = ts.start_sim(ts.SimConfig(manual_clock=True, start_time=SIM_START, seed=3))
        try:
            s.advance(1800)
            st = s.state()
            return (
                st["prices"]["BTC"],
                st["counters"]["trades"],
                st["markets"]["BTC:15"]["marketId"],
            )
        finally:
            s.stop()

    assert run() == run()


def test_several_quick_markets_with_independent_paths() -> None:
    """BTC:15, BTC:60 and ETH:15 at once: each rolls on its own schedule; the two assets'
    price paths are independent."""
    import math

    from conftest import SIM_START

    sim = ts.start_sim(
        ts.SimConfig(
            manual_clock=True,
            start_time=SIM_START,
            seed=2,
            assets=("BTC", "ETH"),
            intervals=(15, 60),
        )
    )
    try:
        first = {k: v["marketId"] for k, v in sim.state()["markets"].items()}
        assert set(first) == {"BTC:15", "BTC:60", "ETH:15", "ETH:60"}
        sim.advance(16 * 60)
        st = sim.state()["markets"]
        assert st["BTC:15"]["marketId"] != first["BTC:15"]
        assert st["ETH:15"]["marketId"] != first["ETH:15"]
        assert st["BTC:60"]["marketId"] == first["BTC:60"]  # not yet
        sim.advance(45 * 60)
        assert sim.state()["markets"]["BTC:60"]["marketId"] != first["BTC:60"]
        q = requests.get(
            f"{sim.base_url}/api/v1/quick-markets/ETH", params={"interval": 60}, timeout=5
        ).json()["quickMarket"]
        assert q["asset"] == "ETH" and q["intervalMinutes"] == 60

        def returns(asset: str) -> list[float]:
            hist = sim.call(lambda: [p for _, p in sim.app.ex.price_hist[asset]])
            return [math.log(b / a) for a, b in itertools.pairwise(hist)]

        rb, re_ = returns("BTC"), returns("ETH")
        mb, me = sum(rb) / len(rb), sum(re_) / len(re_)
        cov = sum((x - mb) * (y - me) for x, y in zip(rb, re_, strict=True))
        corr = cov / math.sqrt(sum((x - mb) ** 2 for x in rb) * sum((y - me) ** 2 for y in re_))
        assert abs(corr) < 0.1 and len(rb) > 3000
        assert sim.state()["invariants_ok"]
    finally:
        sim.stop()


def test_chain_tables_agree_with_the_bot_and_the_vectors(vectors: dict[str, Any]) -> None:
    import spike_bot

    assert ts.CHAINS == spike_bot.CHAINS
    v = vectors["orders"][0]
    assert ts.CHAINS[137]["settlement"] == v["verifying_contract"]
    assert vectors["usdc_permits"][0]["domain"]["verifyingContract"] == ts.CHAINS[137]["usdc"]
    assert vectors["redemption"]["domain"]["verifyingContract"] == ts.CHAINS[137]["ctf"]


# -- stream cadence ------------------------------------------------------------------------------
@pytest.mark.parametrize("heartbeat", [0.0, 2.0])
def test_quiet_book_is_quiet_unless_heartbeat_asked(heartbeat: float, fresh_key: str) -> None:
    """Spec 5.1/5.3: an ack and a snapshot on subscribe, a snapshot after every change, nothing
    while the book is quiet (the default); `book_heartbeat_s` > 0 resends books (the option)."""
    sim = quiet_sim(book_heartbeat_s=heartbeat)
    try:
        mid = sim.state()["markets"]["BTC:15"]["marketId"]
        r = WsReader(sim)
        r.sub(mid)
        first = r.read()
        assert [m["type"] for m in first] == ["subscribe", "orderbook"]
        sim.advance(60)
        quiet = r.read()
        if heartbeat:
            assert len([m for m in quiet if m["type"] == "orderbook"]) >= 25
        else:
            assert quiet == []  # a minute, nothing changed, nothing sent
            c = client(sim, fresh_key)
            approve_max(sim, c, fresh_key)
            exp = int(sim.clock.now()) + 600
            c.post_order(c.create_limit_buy(mid, Outcome.YES, 300_000, 5_000_000, expiration=exp))
            changed = r.read()
            assert [m["type"] for m in changed] == ["orderbook"]
            assert changed[0]["data"]["bids"] == [{"price": 300_000, "size": 5_000_000}]
        r.ws.close()
    finally:
        sim.stop()


# -- settlement ----------------------------------------------------------------------------------
def ctf_approve(sim: ts.Sim, c: TurbineClient, key: str, approved: bool = True) -> Any:
    """SetApprovalForAll(settlement) signed as HEAD's approve_ctf_for_settlement signs it."""
    owner = Account.from_key(key).address
    ctf = ts.CHAINS[137]["ctf"]
    nonce = requests.get(f"{sim.base_url}/api/v1/contracts/nonce/{ctf}/{owner}", timeout=5)
    deadline = int(sim.clock.now()) + 3600
    td = {
        "types": {
            "EIP712Domain": DOMAIN_FIELDS,
            "SetApprovalForAll": [
                {"name": "owner", "type": "address"},
                {"name": "operator", "type": "address"},
                {"name": "approved", "type": "bool"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "SetApprovalForAll",
        "domain": {
            "name": "ConditionalTokensWithPermit",
            "version": "1",
            "chainId": 137,
            "verifyingContract": ctf,
        },
        "message": {
            "owner": owner,
            "operator": SETTLEMENT,
            "approved": approved,
            "nonce": nonce.json()["nonce"],
            "deadline": deadline,
        },
    }
    sm = Account.sign_typed_data(key, full_message=td)
    return requests.post(
        f"{sim.base_url}/api/v1/relayer/ctf-approval",
        headers=headers(c),
        json={
            "chainId": 137,
            "owner": owner,
            "operator": SETTLEMENT,
            "approved": approved,
            "deadline": str(deadline),
            "v": sm.v,
            "r": "0x" + hex(sm.r)[2:].zfill(64),
            "s": "0x" + hex(sm.s)[2:].zfill(64),
        },
        timeout=5,
    )


def failed_trades(sim: ts.Sim) -> list[dict[str, Any]]:
    return requests.get(f"{sim.base_url}/api/v1/failed-trades", timeout=5).json()["failedTrades"]


def test_selling_held_shares_needs_the_ctf_approval(fresh_key: str) -> None:
    """The chain moves held ERC-1155 shares only for an approved operator: without the
    approval the match happens and then fails at settlement, reverting nothing on-chain; with
    it, the same sale settles. A naked SELL (split) needs no approval."""
    sim = quiet_sim()
    try:
        a_key, b_key = fresh_key, "0x" + Account.create().key.hex().removeprefix("0x")
        a, b = client(sim, a_key), client(sim, b_key)
        for c, k in ((a, a_key), (b, b_key)):
            approve_max(sim, c, k)
        mid = a.get_quick_market("BTC").market_id
        exp = int(sim.clock.now()) + 600
        # a buys 5 YES from b's naked sell (b splits): settles, no approval needed
        b.post_order(b.create_limit_sell(mid, Outcome.YES, 500_000, 5_000_000, expiration=exp))
        a.post_order(a.create_limit_buy(mid, Outcome.YES, 500_000, 5_000_000, expiration=exp))
        sim.advance(3)
        assert a.get_positions(mid, a.address)[0].yes_shares == 5_000_000
        assert failed_trades(sim) == []
        before = sim.state()
        # a sells its held YES to b: matched, then refused on-chain
        a.post_order(a.create_limit_sell(mid, Outcome.YES, 600_000, 5_000_000, expiration=exp))
        b.post_order(b.create_limit_buy(mid, Outcome.YES, 600_000, 5_000_000, expiration=exp))
        sim.advance(3)
        ft = failed_trades(sim)
        assert len(ft) == 1 and "approved" in ft[0]["reason"]
        assert ft[0]["sellerAddress"] == a.address.lower() and ft[0]["fillSize"] == 5_000_000
        st = sim.state()
        assert st["balances"] == before["balances"] and st["invariants_ok"]
        assert a.get_positions(mid, a.address)[0].yes_shares == 5_000_000  # still a's
        status = requests.get(
            f"{sim.base_url}/api/v1/settlements/{ft[0]['txHash']}", timeout=5
        ).json()
        assert status["status"] == "failed" and status["error"] == ft[0]["reason"]
        # approve, and the same sale settles
        r = ctf_approve(sim, a, a_key)
        assert r.status_code == 200 and r.json()["tx_hash"].startswith("0x")
        assert ctf_approve(sim, a, a_key, approved=True).status_code == 200  # nonce moved on
        a.post_order(a.create_limit_sell(mid, Outcome.YES, 600_000, 5_000_000, expiration=exp))
        b.post_order(b.create_limit_buy(mid, Outcome.YES, 600_000, 5_000_000, expiration=exp))
        sim.advance(3)
        assert len(failed_trades(sim)) == 1
        assert a.get_positions(mid, a.address)[0].yes_shares == 0
        assert sim.state()["invariants_ok"]
    finally:
        sim.stop()


def test_ctf_approval_refuses_a_bad_signature(fresh_key: str) -> None:
    sim = quiet_sim()
    try:
        c = client(sim, fresh_key)
        other = "0x" + Account.create().key.hex().removeprefix("0x")
        r = ctf_approve(sim, c, other)  # signed by another key, sent with c's token
        assert r.status_code in (400, 403)
        assert fresh_key.lower() not in r.text.lower()
        assert c.address.lower() not in sim.state()["ctf_approved"]
    finally:
        sim.stop()


def test_buyer_allowance_gone_before_settlement_fails_the_trade(fresh_key: str) -> None:
    """The buyer's allowance covered the match but not the settlement (a new permit set it to
    zero meanwhile): the trade fails with the chain's reason and nothing moves."""
    sim = quiet_sim(settle_delay_s=10)
    try:
        b_key, s_key = fresh_key, "0x" + Account.create().key.hex().removeprefix("0x")
        b, s = client(sim, b_key), client(sim, s_key)
        approve_max(sim, b, b_key)
        approve_max(sim, s, s_key)
        mid = b.get_quick_market("BTC").market_id
        exp = int(sim.clock.now()) + 600
        s.post_order(s.create_limit_sell(mid, Outcome.YES, 400_000, 5_000_000, expiration=exp))
        b.post_order(b.create_limit_buy(mid, Outcome.YES, 400_000, 5_000_000, expiration=exp))
        before = sim.state()["balances"]
        p = permit(b_key, 0, 1, MAX)  # permits set the allowance: now 0
        r = requests.post(
            sim.base_url + "/api/v1/relayer/usdc-permit",
            headers=headers(b),
            json={"chainId": 137, "owner": b.address, "spender": SETTLEMENT, **p},
            timeout=5,
        )
        assert r.status_code == 200, r.text
        sim.advance(11)
        ft = failed_trades(sim)
        assert len(ft) == 1 and "allowance" in ft[0]["reason"] and "buyer" in ft[0]["reason"]
        st = sim.state()
        assert st["balances"] == before and st["invariants_ok"]
        assert b.get_positions(mid, b.address)[0].yes_shares == 0
        assert s.get_positions(mid, s.address)[0].no_shares == 0  # the split never happened
        # the orders keep their filledSize (README: settlement)
        assert b.get_orders(trader=b.address)[0].filled_size == 5_000_000
    finally:
        sim.stop()


def test_settle_fail_fraction_keeps_the_books_whole() -> None:
    """20% of a simulated hour's trades fail at settlement: every failure is listed, and USDC,
    supply and non-negativity invariants hold throughout."""
    sim = ts.start_sim(ts.SimConfig(manual_clock=True, start_time=SIM_START + 1, seed=9))
    try:
        sim.fault("settle_fail", fraction=0.2)
        for _ in range(12):
            sim.advance(300)
            assert sim.state()["invariants_ok"]
        st = sim.state()
        n, failed = st["counters"]["trades"], st["counters"]["failed_trades"]
        assert n > 50 and 0.1 * n < failed < 0.3 * n
        assert st["counters"]["settled_trades"] + failed + st["pending_trades"] == n
    finally:
        sim.stop()
