"""The spec's wire rules as data (../shared/turbine-api.md section 3.3 and the endpoint
table): each object the API returns, its fields, their JSON types, scales and nullability.

Two readers hold the same rules: test_sim_schema.py holds the simulator to them, and
`spike_bot.py preflight` compares the live API's replies with them and prints every
difference as a line (field, expected, seen), so that on the first morning an operator sees
what the real API does differently before a single order. Not the bot's boundary checks
(those decide what the engine believes); a difference here is news, not a refusal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """One field's rule: what it should be (for the drift line) and the check."""

    what: str
    ok: Callable[[Any], bool]
    may_be_absent: bool = False  # a field some versions send and others do not

    def __call__(self, v: Any) -> bool:
        return bool(self.ok(v))


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _dec(v: Any) -> bool:
    return isinstance(v, str) and re.fullmatch(r"[0-9]{1,78}", v) is not None


def _ts(v: Any) -> bool:
    return _int(v) and 1_600_000_000 < v < 4_000_000_000


# a JSON integer (HEAD's int() would also take "12"; the spec says integer)
INT = Rule("integer", _int)
STR = Rule("string", lambda v: isinstance(v, str))
BOOL = Rule("boolean", lambda v: isinstance(v, bool))
NUM = Rule("number", lambda v: isinstance(v, int | float) and not isinstance(v, bool))
LIST = Rule("list", lambda v: isinstance(v, list))
OBJ = Rule("object", lambda v: isinstance(v, dict))


def _hex(n: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and re.fullmatch(rf"0x[0-9a-fA-F]{{{n}}}", v) is not None


HEX32 = Rule("0x + 64 hex", _hex(64))
ADDR = Rule("0x + 40 hex", _hex(40))
DEC = Rule("decimal integer string", _dec)  # u6, or up to 2^256 - 1
USD = Rule(  # dollars with cents, as a string: "10.50"
    "dollars string (10.50)",
    lambda v: isinstance(v, str) and re.fullmatch(r"[0-9]+\.[0-9]{2}", v) is not None,
)
OUTCOME = Rule("0 or 1", lambda v: v in (0, 1) and _int(v))
PRICE = Rule("integer 1..999999 (u6)", lambda v: _int(v) and 1 <= v <= 999_999)
TS = Rule("unix seconds (integer)", _ts)
# FailedTrade / PendingTrade / SettlementStatus timestamps
TS_STR = Rule("unix seconds as a string", lambda v: _dec(v) and _ts(int(v)))
POS_INT = Rule("integer > 0", lambda v: _int(v) and v > 0)
U6 = Rule("integer or decimal string (u6)", lambda v: _int(v) or _dec(v))


def opt(rule: Rule) -> Rule:
    return Rule(f"{rule.what} or null", lambda v: v is None or rule(v))


def maybe(rule: Rule) -> Rule:
    """A field that may be absent (or null); when present, `rule`."""
    return Rule(f"{rule.what}, null or absent", lambda v: v is None or rule(v), True)


def one_of(*vals: Any) -> Rule:
    return Rule("one of " + ", ".join(map(repr, vals)), lambda v: v in vals)


SCHEMAS: dict[str, dict[str, Rule]] = {
    "Market": {
        "id": HEX32, "chainId": INT, "contractAddress": ADDR, "settlementAddress": ADDR,
        "question": STR, "description": STR, "category": STR, "expiration": TS, "maker": ADDR,
        "resolved": BOOL, "winningOutcome": opt(OUTCOME), "volume": INT, "createdAt": TS,
        "updatedAt": TS,
    },
    "MarketStats": {
        "marketId": HEX32, "contractAddress": ADDR, "lastPrice": INT, "totalVolume": INT,
        "volume24h": INT,
    },
    "QuickMarket": {
        "id": INT, "marketId": HEX32, "asset": STR, "intervalMinutes": INT, "startPrice": INT,
        "endPrice": opt(INT), "startTime": TS, "endTime": TS, "resolved": BOOL,
        "outcome": opt(OUTCOME), "priceSource": one_of("pyth"), "createdAt": TS,
        "contractAddress": ADDR,
        # 0.1.0's QuickMarket reads winning_outcome (spec 7.2): the simulator sends both
        "winningOutcome": maybe(OUTCOME),
    },
    "QuickMarketReply": {"active": BOOL, "asset": STR, "quickMarket": OBJ,
                         "bestAskPrice": opt(PRICE)},
    "OrderBook": {"marketId": HEX32, "bids": LIST,
                  "asks": LIST, "lastUpdate": TS},
    "Level": {"price": PRICE, "size": POS_INT},
    "Trade": {
        "id": INT, "marketId": HEX32, "buyer": ADDR, "seller": ADDR, "price": PRICE,
        "size": INT, "outcome": OUTCOME, "timestamp": TS, "txHash": HEX32,
    },
    "Order": {
        "orderHash": HEX32, "marketId": HEX32, "trader": ADDR, "side": one_of(0, 1),
        "outcome": OUTCOME, "price": PRICE, "size": INT, "filledSize": INT,
        "remainingSize": INT, "nonce": INT, "expiration": TS,
        "status": one_of("open", "filled", "cancelled", "expired"), "createdAt": TS,
    },
    "OrderReply": {"orderHash": HEX32, "status": STR, "matches": INT, "timestamp": TS},
    "Position": {
        "id": INT, "marketId": HEX32, "userAddress": ADDR, "yesShares": INT, "noShares": INT,
        "yesCost": INT, "noCost": INT, "yesRevenue": INT, "noRevenue": INT,
        "totalInvested": INT, "totalCost": INT, "totalRevenue": INT,
        "lastUpdated": Rule("unix seconds, 0 before any trade", lambda v: v == 0 or TS(v)),
        # 0.1.0's Position reads invested and last_trade_price; [docs] user positions also
        # carry contractAddress (spec 3.2 #24, 7.2)
        "invested": maybe(INT), "lastTradePrice": maybe(INT), "contractAddress": maybe(ADDR),
    },
    "UserActivity": {
        "address": ADDR, "totalTrades": INT, "totalVolume": INT, "pnl": INT,
        "marketsTraded": INT,
    },
    "UserStats": {
        "user_address": ADDR, "total_cost": INT, "total_invested": INT,
        "position_value": INT, "pnl": INT, "pnl_percentage": NUM,
    },
    "PendingTrade": {
        "marketId": HEX32, "txHash": HEX32, "buyerAddress": ADDR, "sellerAddress": ADDR,
        "fillSize": INT, "fillPrice": PRICE, "timestamp": TS_STR, "isBatch": BOOL,
        "batchIndex": INT,
    },
    "FailedTrade": {
        "marketId": HEX32, "txHash": HEX32, "buyerAddress": ADDR, "sellerAddress": ADDR,
        "fillSize": INT, "fillPrice": PRICE, "reason": STR, "timestamp": TS_STR,
        "batchIndex": INT,
    },
    "SettlementStatus": {
        "found": BOOL, "txHash": HEX32, "status": one_of("pending", "settled", "failed"),
        "error": STR, "marketId": HEX32, "buyerAddress": ADDR, "sellerAddress": ADDR,
        "fillSize": INT, "fillPrice": PRICE, "timestamp": TS_STR, "isBatch": BOOL,
        "batchIndex": INT,
    },
    "Resolution": {
        "marketId": HEX32, "resolved": BOOL, "expired": BOOL, "assertionId": STR,
        "timestamp": TS,
    },
    "AssetPrice": {"price": Rule("number > 0", lambda v: NUM(v) and v > 0), "timestamp": TS},
    "Claimable": {
        "market_id": HEX32, "contract_address": ADDR, "outcome_label": one_of("YES", "NO"),
        "balance": U6, "payout": USD,
    },
    "ClaimableReply": {"claimable": LIST, "count": INT,
                       "totalPayout": USD},
    "ClaimData": {
        "market_address": ADDR, "resolved": BOOL, "winning_balance": U6,
        "ctf_address": ADDR, "collateral_token": ADDR, "condition_id": HEX32,
        "winning_outcome": opt(OUTCOME), "ctf_nonce": INT,
        # not in the spec; the simulator sends them (the redemption's other inputs)
        "market_id": maybe(HEX32), "parent_collection_id": maybe(HEX32),
    },
    "Balances": {"balance": DEC, "allowance": DEC},
    "Nonce": {"nonce": INT},
    "ApiKey": {"success": BOOL, "api_key_id": STR,
               "api_private_key": Rule(
                   "hex Ed25519 key",
                   lambda v: STR(v) and re.fullmatch(r"(0x)?([0-9a-f]{64}){1,2}", v) is not None,
               ),
               "message": STR},
    "RelayerReply": {"success": BOOL, "tx_hash": HEX32},
    "BatchRelayerReply": {"success": BOOL, "txHash": HEX32},
    "Holder": {"userAddress": ADDR, "yesShares": INT, "noShares": INT, "totalInvested": INT},
    "PlatformStats": {"chains": Rule("a list of one chain", lambda v: LIST(v) and len(v) == 1),
                      "total_volume": INT, "total_trades": INT},
    "ChainStats": {"chain_id": one_of(137), "total_volume": INT, "total_trades": INT,
                   "updated_at": TS},
}  # fmt: skip


def diff(kind: str, obj: Any, extra: bool = True) -> list[tuple[str, str, str]]:
    """(field, expected, seen) for every field of `obj` that breaks the rules of `kind`:
    missing, of another type or scale, and (with `extra`) a field the spec does not name."""
    if not isinstance(obj, dict):
        return [("(the reply)", f"a {kind} object", type(obj).__name__)]
    rules = SCHEMAS[kind]
    out = []
    for k, rule in rules.items():
        if k not in obj:
            if not rule.may_be_absent:
                out.append((k, rule.what, "missing"))
        elif not rule(obj[k]):
            out.append((k, rule.what, repr(obj[k])[:40]))
    if extra:
        out += [(k, "not in the spec", repr(obj[k])[:40]) for k in obj if k not in rules]
    return out
