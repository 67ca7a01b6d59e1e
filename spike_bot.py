#!/usr/bin/env python3
"""spike_bot: a market maker for Turbine's BTC 15-minute quick markets, in one threaded file.

    python spike_bot.py --sim --speed 60      # the whole bot on a local simulator, no keys
    python spike_bot.py --dry-run             # live reads, logs the quotes it would place
    python spike_bot.py                       # live: needs TURBINE_PRIVATE_KEY in .env

Sections, in dependency order (search for the banner):
    1. CONFIG      every parameter, its default, its .env name and flag, validation
    2. PROTOCOL    enums and scales, EIP-712 orders, EIP-2612 permits, redemptions, bearer tokens
    3. EXCHANGE    the Exchange interface, HTTP policy (pacer, retries, error classes, firewall),
                   TurbineExchange (requests) and TurbineStream (websocket-client)
    4. STRATEGY    pure functions: fair value, extremes widening, skew, limits, clamp, plan
    5. ENGINE      the Bot: shared book, schedule, order manager, fills, PnL, rollover, claims,
                   safety, state file, live tuning; observability (JSON log, status, metrics)
    6. TOOLS       `report` (side-by-side comparison of runs from their JSON logs) and
                   `replay` (the engine over a --record recording, with a fill model)
    7. CLI         flags, modes (--sim, --dry-run), subcommands, signals, main()

Protocol facts come from ../shared/turbine-api.md; where it is silent the official SDK
(turbine-py-client) is followed and the comment says so.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import random
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import requests
import websocket
from coincurve import PrivateKey

try:  # a C keccak (safe-pysha3): ~1 us against ~15 us through pycryptodome's wrapper
    from sha3 import keccak_256 as _keccak256

    def keccak(data: bytes) -> bytes:
        return _keccak256(data).digest()
except ImportError:  # pragma: no cover - eth-hash's backend is the fallback
    from eth_hash.auto import keccak

BOT_NAME = "spike_bot"

# =============================================================================================
# 1. CONFIG: every parameter with its default. Each field F is read from .env as SPIKE_<F>
#    (upper case; a few keep the SDK's TURBINE_* names) and from the flag --<f-with-dashes>.
#    Order of precedence: flag > environment/.env > default.
# =============================================================================================


def _f(
    default: Any,
    help_: str,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] | None = None,
    env: str | None = None,
) -> Any:
    """A config field with its help text, validation range and environment name."""
    return field(
        default=default,
        metadata={"help": help_, "lo": lo, "hi": hi, "choices": choices, "env": env},
    )


@dataclass
class Config:
    # -- connection ------------------------------------------------------------------------------
    host: str = _f(
        "https://api.turbinefi.com",
        "API host (REST /api/v1, WS /api/v1/stream)",
        env="TURBINE_HOST",
    )
    chain_id: int = _f(
        137, "chain: 137 Polygon, 43114 Avalanche, 84532 Base Sepolia", env="TURBINE_CHAIN_ID"
    )
    asset: str = _f("BTC", "quick-market asset")
    interval_min: int = _f(15, "quick-market interval (minutes)", 1, 1440)
    # -- quoting ---------------------------------------------------------------------------------
    order_size: float = _f(5.0, "shares per quote", 0.000001, 1e6)
    base_spread: float = _f(
        0.40, "full bid-ask spread around fair value (probability units)", 0.0002, 0.98
    )
    fair_source: str = _f(
        "blend",
        "fair value: mid, micro, model or blend",
        choices=("mid", "micro", "model", "blend"),
    )
    model_weight: float = _f(
        0.7, "blend: weight of the model probability (rest: micro-price)", 0, 1
    )
    model_vol: float = _f(0.55, "annualised volatility for the model probability", 0.01, 5)
    extreme_zone: float = _f(0.15, "widen when fair is within this of 0 or 1", 0, 0.5)
    extreme_widen: float = _f(0.10, "extra half-spread at fair = 0 or 1", 0, 0.5)
    skew_factor: float = _f(0.08, "quote shift at full inventory (probability units)", 0, 0.5)
    price_tick: float = _f(0.0001, "price tick (the SDK rounds to 0.0001)", 0.000001, 0.1)
    requote_tolerance: float = _f(
        0.03,
        "replace a quote when its price is off by this; near the money the model fair moves "
        "~0.015/s, so a tight tolerance on a 0.40 spread only burns requests",
        0,
        0.5,
    )
    order_refresh_s: float = _f(60.0, "re-place resting orders this often (s)", 1, 3600)
    expiry_grace_s: float = _f(
        30.0, "order expiration = refresh + this (dead man's switch)", 1, 3600
    )
    # -- limits ----------------------------------------------------------------------------------
    max_position: float = _f(50.0, "net YES-equivalent shares limit per side", 0.000001, 1e7)
    max_order_size: float = _f(50.0, "largest single order (shares)", 0.000001, 1e7)
    max_open_orders: int = _f(4, "most open orders at once", 1, 100)
    max_loss_per_market: float = _f(
        25.0, "kill switch: stop quoting a market past this loss (USDC)", 0, 1e9
    )
    max_loss_per_day: float = _f(
        100.0, "kill switch: stop for the UTC day past this loss (USDC)", 0, 1e9
    )
    fee_bps: float = _f(0.0, "assumed maker fee, bps of size (undocumented; sim: 0)", 0, 1000)
    # -- T-minus ---------------------------------------------------------------------------------
    tminus_widen_s: float = _f(120.0, "widen and cut size this long before expiry (s)", 0, 86400)
    tminus_widen_mult: float = _f(1.5, "spread multiplier in the widen window", 1, 10)
    tminus_size_mult: float = _f(0.5, "size multiplier in the widen window", 0.01, 1)
    tminus_reduce_only_s: float = _f(
        60.0, "only the inventory-reducing side this close (s)", 0, 86400
    )
    tminus_pull_s: float = _f(20.0, "pull every order this close to expiry (s)", 0, 86400)
    # -- schedule --------------------------------------------------------------------------------
    tick_s: float = _f(2.0, "quote loop heartbeat (s); book changes wake it sooner", 0.01, 60)
    positions_s: float = _f(5.0, "poll positions (s); orders are read back on a change", 0.1, 600)
    orders_sync_s: float = _f(30.0, "read back all our orders at least this often (s)", 1, 3600)
    rollover_s: float = _f(10.0, "poll the current quick market (s)", 0.1, 600)
    claim_s: float = _f(30.0, "check and redeem resolved markets (s)", 0.1, 3600)
    pnl_snapshot_s: float = _f(3600.0, "PnL snapshot line (s)", 1, 86400)
    stale_after_s: float = _f(30.0, "book older than this: cancel all, stop quoting (s)", 0.1, 600)
    price_s: float = _f(2.0, "poll the asset price for the model (s)", 0.1, 600)
    # -- permits ---------------------------------------------------------------------------------
    permit_mode: str = _f(
        "per_order",
        "per_order: permit on each order; max: one-time max allowance at start",
        choices=("per_order", "max"),
    )
    permit_margin: float = _f(0.10, "extra allowance on each per-order permit", 0, 10)
    permit_deadline_s: float = _f(3600.0, "permit validity (s)", 60, 86400 * 365)
    # -- I/O -------------------------------------------------------------------------------------
    http_timeout_s: float = _f(5.0, "HTTP timeout (s)", 0.1, 120)
    max_retries: int = _f(3, "retries for 429/5xx/network errors", 0, 10)
    rate_limit_per_s: float = _f(8.0, "request pacer: most requests per second", 0.1, 10000)
    ws_silence_s: float = _f(20.0, "reconnect the stream after this much silence (s)", 1, 600)
    # -- files and observability -----------------------------------------------------------------
    log_file: str = _f("spike_bot.log", "JSON log file ('-' for stdout)")
    state_file: str = _f("spike_state.json", "state file (claims, PnL, counters)")
    metrics_port: int = _f(0, "Prometheus metrics port on 127.0.0.1 (0: off)", 0, 65535)
    status_every_s: float = _f(2.0, "status line period, wall seconds (0: off)", 0, 3600)
    bot_name: str = _f(BOT_NAME, "`bot` field in logs and metrics")


# Settings a SIGHUP may change while running: the strategy and its limits. The rest
# (connection, files, schedule, I/O) needs a restart.
TUNABLE = frozenset(
    {
        "order_size",
        "base_spread",
        "fair_source",
        "model_weight",
        "model_vol",
        "extreme_zone",
        "extreme_widen",
        "skew_factor",
        "price_tick",
        "requote_tolerance",
        "order_refresh_s",
        "expiry_grace_s",
        "max_position",
        "max_order_size",
        "max_open_orders",
        "max_loss_per_market",
        "max_loss_per_day",
        "fee_bps",
        "tminus_widen_s",
        "tminus_widen_mult",
        "tminus_size_mult",
        "tminus_reduce_only_s",
        "tminus_pull_s",
    }
)

# Keys the SDK's examples already use; everything else is SPIKE_<NAME>.
ENV_PRIVATE_KEY = "TURBINE_PRIVATE_KEY"
ENV_API_KEY_ID = "TURBINE_API_KEY_ID"
ENV_API_PRIVATE_KEY = "TURBINE_API_PRIVATE_KEY"


class ConfigError(Exception):
    """A bad setting: printed as one line, exit code 2."""


@dataclass
class Secrets:
    """Kept apart from Config so a config dump can never carry them; repr shows nothing."""

    private_key: str = field(default="", repr=False)
    api_key_id: str = field(default="", repr=False)
    api_private_key: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return "Secrets(<redacted>)"


def env_name(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("env") or "SPIKE_" + f.name.upper()


def _coerce(f: dataclasses.Field[Any], raw: Any, source: str) -> Any:
    typ = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if typ == "int":
            return int(str(raw).strip())
        if typ == "float":
            v = float(str(raw).strip())
            if math.isnan(v) or math.isinf(v):
                raise ValueError
            return v
        return str(raw).strip()
    except ValueError:
        raise ConfigError(f"{f.name}: expected {typ}, got {raw!r} (from {source})") from None


def validate(cfg: Config, sources: dict[str, str] | None = None) -> Config:
    """Range and cross-field checks; raises ConfigError with one clear line."""
    sources = sources or {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        src = sources.get(f.name, "default")
        lo, hi, ch = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("choices")
        if lo is not None and v < lo:
            raise ConfigError(f"{f.name} must be >= {lo} (got {v}, from {src})")
        if hi is not None and v > hi:
            raise ConfigError(f"{f.name} must be <= {hi} (got {v}, from {src})")
        if ch and v not in ch:
            raise ConfigError(f"{f.name} must be one of {', '.join(ch)} (got {v!r}, from {src})")
    if not cfg.host.startswith(("http://", "https://")):
        raise ConfigError(f"host must start with http:// or https:// (got {cfg.host!r})")
    if cfg.chain_id not in CHAINS:
        raise ConfigError(f"chain_id must be one of {sorted(CHAINS)} (got {cfg.chain_id})")
    if not cfg.asset.isalnum():
        raise ConfigError(f"asset must be a symbol like BTC (got {cfg.asset!r})")
    if cfg.order_size > cfg.max_order_size:
        raise ConfigError(
            f"order_size {cfg.order_size} exceeds max_order_size {cfg.max_order_size}"
        )
    if cfg.tminus_pull_s > cfg.tminus_reduce_only_s:
        raise ConfigError("tminus_pull_s must be <= tminus_reduce_only_s")
    if cfg.tminus_pull_s >= cfg.interval_min * 60:
        raise ConfigError("tminus_pull_s must be shorter than the market interval")
    return cfg


def load_config(
    args: dict[str, Any], environ: dict[str, str], base: Config | None = None
) -> tuple[Config, Secrets]:
    """Defaults (or `base`), then the environment (.env merged in), then flags; validate."""
    cfg = dataclasses.replace(base) if base is not None else Config()
    sources: dict[str, str] = {}
    for f in dataclasses.fields(cfg):
        name = env_name(f)
        if environ.get(name, "").strip():
            setattr(cfg, f.name, _coerce(f, environ[name], name))
            sources[f.name] = name
        if args.get(f.name) is not None:
            flag = "--" + f.name.replace("_", "-")
            setattr(cfg, f.name, _coerce(f, args[f.name], flag))
            sources[f.name] = flag
    cfg.asset = cfg.asset.upper()
    cfg.host = cfg.host.rstrip("/")
    sec = Secrets(
        private_key=environ.get(ENV_PRIVATE_KEY, "").strip(),
        api_key_id=environ.get(ENV_API_KEY_ID, "").strip(),
        api_private_key=environ.get(ENV_API_PRIVATE_KEY, "").strip(),
    )
    return validate(cfg, sources), sec


# =============================================================================================
# 2. PROTOCOL AND SIGNING: scales, enums, EIP-712 orders (hash identical to the SDK's), EIP-2612
#    permits, CTF redemptions, EIP-191 registration, Ed25519 bearer tokens. Digests are built
#    from precomputed type hashes and domain separators and signed with coincurve.
# =============================================================================================
PRICE_SCALE = 1_000_000  # price = probability x 1e6, valid 1 .. 999_999
SIZE_SCALE = 1_000_000  # size = shares x 1e6
MIN_PRICE, MAX_PRICE = 1, 999_999
BUY, SELL = 0, 1
YES, NO = 0, 1
MAX_UINT = 2**256 - 1
ZERO_ADDRESS = "0x" + "00" * 20
ZERO32 = "0x" + "00" * 32

CHAINS: dict[int, dict[str, str]] = {
    137: {
        "settlement": "0xdB96C91d9e5930fE3Ed1604603CfA4ece454725c",
        "ctf": "0xA86e521D596D626E2347875F1a4a23719dDaC0B6",
        "usdc": "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359",
        "usdc_name": "USD Coin",
        "usdc_version": "2",
    },
    43114: {
        "settlement": "0x893ca652525B1F9DC25189ED9c3AD0543ACfb989",
        "ctf": "0xA86e521D596D626E2347875F1a4a23719dDaC0B6",
        "usdc": "0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E",
        "usdc_name": "USD Coin",
        "usdc_version": "2",
    },
    84532: {
        "settlement": "0xF37B881F236033E55bF1cdAB628c7Cd88aAd89D4",
        "ctf": "0xc5Eb8d9dE7c56CC600B9ed4E71318307C740f5ED",
        "usdc": "0xf9065CCFF7025649F16D547DC341DAffF0C7F7f6",
        "usdc_name": "Mock USDC",
        "usdc_version": "1",
    },
}

_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
ORDER_TYPEHASH = keccak(
    b"Order(bytes32 marketId,address trader,uint8 side,uint8 outcome,uint256 price,"
    b"uint256 size,uint256 nonce,uint256 expiration,address makerFeeRecipient)"
)
PERMIT_TYPEHASH = keccak(
    b"Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)
REDEEM_TYPEHASH = keccak(
    b"RedeemPositions(address owner,address collateralToken,bytes32 parentCollectionId,"
    b"bytes32 conditionId,uint256[] indexSets,uint256 nonce,uint256 deadline)"
)


def u256(v: int) -> bytes:
    return v.to_bytes(32, "big")


def addr32(a: str) -> bytes:
    return bytes.fromhex(a[2:].rjust(64, "0"))


def b32(h: str) -> bytes:
    h = h.removeprefix("0x")
    if len(h) > 64:
        raise ValueError("bytes32 value longer than 32 bytes")
    return bytes.fromhex(h.rjust(64, "0"))


def checksum(addr: str) -> str:
    """EIP-55 checksum address."""
    a = addr.lower().removeprefix("0x")
    h = keccak(a.encode()).hex()
    return "0x" + "".join(c.upper() if int(h[i], 16) >= 8 else c for i, c in enumerate(a))


def domain_separator(name: str, version: str, chain_id: int, contract: str) -> bytes:
    return keccak(
        _DOMAIN_TYPEHASH
        + keccak(name.encode())
        + keccak(version.encode())
        + u256(chain_id)
        + addr32(contract)
    )


@dataclass(frozen=True)
class OrderFields:
    """The signed fields of an order, as on the wire."""

    market_id: str
    trader: str
    side: int
    outcome: int
    price: int
    size: int
    nonce: int
    expiration: int
    maker_fee_recipient: str = ZERO_ADDRESS

    def struct_hash(self) -> bytes:
        return keccak(
            ORDER_TYPEHASH
            + b32(self.market_id)
            + addr32(self.trader)
            + u256(self.side)
            + u256(self.outcome)
            + u256(self.price)
            + u256(self.size)
            + u256(self.nonce)
            + u256(self.expiration)
            + addr32(self.maker_fee_recipient)
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "marketId": self.market_id,
            "trader": self.trader,
            "side": self.side,
            "outcome": self.outcome,
            "price": self.price,
            "size": self.size,
            "nonce": self.nonce,
            "expiration": self.expiration,
            "makerFeeRecipient": self.maker_fee_recipient,
        }


@dataclass(frozen=True)
class SignedOrder:
    fields: OrderFields
    signature: str  # 0x r||s||v
    order_hash: str  # the SDK's rule: keccak(struct hash)

    def body(self, permit: dict[str, Any] | None = None) -> dict[str, Any]:
        b: dict[str, Any] = {"order": self.fields.to_wire(), "signature": self.signature}
        if permit is not None:
            b["permitSignature"] = permit
        return b


class Signer:
    """secp256k1 signing with coincurve. Holds the key object only; never prints it."""

    __slots__ = ("_dsep_cache", "_key", "address", "chain", "chain_id")

    def __init__(self, private_key: str, chain_id: int) -> None:
        try:
            raw = bytes.fromhex(private_key.strip().removeprefix("0x"))
            if len(raw) != 32:
                raise ValueError
            self._key = PrivateKey(raw)
        except Exception:  # noqa: BLE001 -- never echo the key back in the error
            raise ConfigError(f"{ENV_PRIVATE_KEY} is not a 32-byte hex private key") from None
        pub = self._key.public_key.format(compressed=False)[1:]
        self.address = checksum("0x" + keccak(pub)[-20:].hex())
        self.chain_id = chain_id
        self.chain = CHAINS[chain_id]
        self._dsep_cache: dict[tuple[str, str, str], bytes] = {}

    def __repr__(self) -> str:
        return f"Signer(address={self.address})"

    def _dsep(self, name: str, version: str, contract: str) -> bytes:
        k = (name, version, contract.lower())
        d = self._dsep_cache.get(k)
        if d is None:
            d = self._dsep_cache[k] = domain_separator(name, version, self.chain_id, contract)
        return d

    def sign_digest(self, digest: bytes) -> bytes:
        """65 bytes r||s||v with v in {27, 28}, RFC 6979 nonces (as eth-account)."""
        sig = self._key.sign_recoverable(digest, hasher=None)
        return sig[:64] + bytes([sig[64] + 27])

    def sign_order(self, f: OrderFields, settlement: str | None = None) -> SignedOrder:
        sh = f.struct_hash()
        dsep = self._dsep("Turbine", "1", settlement or self.chain["settlement"])
        sig = self.sign_digest(keccak(b"\x19\x01" + dsep + sh))
        return SignedOrder(f, "0x" + sig.hex(), "0x" + keccak(sh).hex())

    def sign_permit(
        self, value: int, nonce: int, deadline: int, spender: str | None = None
    ) -> dict[str, Any]:
        """EIP-2612 permit for the chain's USDC; the fields the API's permitSignature takes."""
        spender = spender or self.chain["settlement"]
        sh = keccak(
            PERMIT_TYPEHASH
            + addr32(self.address)
            + addr32(spender)
            + u256(value)
            + u256(nonce)
            + u256(deadline)
        )
        dsep = self._dsep(self.chain["usdc_name"], self.chain["usdc_version"], self.chain["usdc"])
        sig = self.sign_digest(keccak(b"\x19\x01" + dsep + sh))
        return {
            "nonce": nonce,
            "value": str(value),
            "deadline": str(deadline),
            "v": sig[64],
            "r": "0x" + sig[:32].hex(),
            "s": "0x" + sig[32:64].hex(),
        }

    def sign_redemption(
        self,
        ctf: str,
        collateral: str,
        condition_id: str,
        index_sets: list[int],
        nonce: int,
        deadline: int,
    ) -> dict[str, Any]:
        arr = keccak(b"".join(u256(i) for i in index_sets))
        sh = keccak(
            REDEEM_TYPEHASH
            + addr32(self.address)
            + addr32(collateral)
            + b32(ZERO32)
            + b32(condition_id)
            + arr
            + u256(nonce)
            + u256(deadline)
        )
        sig = self.sign_digest(
            keccak(b"\x19\x01" + self._dsep("ConditionalTokensWithPermit", "1", ctf) + sh)
        )
        return {
            "chainId": self.chain_id,
            "owner": self.address,
            "collateralToken": collateral,
            "parentCollectionId": ZERO32,
            "conditionId": condition_id,
            "indexSets": [str(i) for i in index_sets],
            "deadline": str(deadline),
            "v": sig[64],
            "r": "0x" + sig[:32].hex(),
            "s": "0x" + sig[32:64].hex(),
        }

    def sign_personal(self, text: str) -> str:
        """EIP-191 personal_sign, as eth-account's encode_defunct(text=...)."""
        msg = text.encode()
        digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(msg)).encode() + msg)
        return "0x" + self.sign_digest(digest).hex()


def registration_text(address: str) -> str:
    return f"Register API key for Turbine: {checksum(address)}"


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class BearerAuth:
    """Ed25519 bearer tokens: base64url(compact sorted JSON payload) . base64url(signature)."""

    def __init__(self, key_id: str, private_key: str) -> None:
        from nacl.signing import SigningKey  # PyNaCl: what the SDK uses for Ed25519

        try:
            raw = bytes.fromhex(private_key.strip().removeprefix("0x"))
            if len(raw) not in (32, 64):
                raise ValueError
            self._key = SigningKey(raw[:32])  # 64 bytes: seed then public key
        except Exception:  # noqa: BLE001 -- never echo the secret back
            raise ConfigError(f"{ENV_API_PRIVATE_KEY} is not a 32- or 64-byte hex key") from None
        if not key_id:
            raise ConfigError(f"{ENV_API_KEY_ID} is empty")
        self.key_id = key_id

    def __repr__(self) -> str:
        return f"BearerAuth(key_id={self.key_id})"

    def token(self, ts: int | None = None, nonce: str | None = None) -> str:
        payload = json.dumps(
            {
                "kid": self.key_id,
                "ts": int(time.time()) if ts is None else ts,
                "n": nonce or secrets.token_hex(16),
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        return f"{_b64url(payload)}.{_b64url(self._key.sign(payload).signature)}"


def new_nonce(now: float) -> int:
    """The SDK's order nonce: (unix seconds << 32) | 32 random bits."""
    return (int(now) << 32) | secrets.randbits(32)


def permit_amount(side: int, price: int, size: int, margin: float) -> int:
    """USDC a per-order permit allows: BUY size*price/1e6 + 1% fee, SELL size; plus margin."""
    base = size * price // PRICE_SCALE + size // 100 if side == BUY else size
    return int(base * (1.0 + margin)) + 1


# =============================================================================================
# 3. EXCHANGE I/O: the interface the engine needs, the HTTP policy every call goes through
#    (pacer, retries with backoff and jitter, error classes, stale-feed firewall), the
#    requests-based TurbineExchange and the websocket-client TurbineStream.
# =============================================================================================
@dataclass(frozen=True)
class QuickMarket:
    market_id: str
    contract: str
    asset: str
    strike: float  # USD
    start: int
    end: int
    resolved: bool = False
    settlement: str = ""

    @staticmethod
    def parse(d: dict[str, Any]) -> QuickMarket:
        d = d.get("quickMarket", d) if isinstance(d, dict) else d
        if not isinstance(d, dict):
            raise ExchangeError("invalid", "quick market: not an object")
        try:
            mid = str(d.get("marketId") or d["id"])
            qm = QuickMarket(
                market_id=mid,
                contract=str(d.get("contractAddress") or ""),
                asset=str(d.get("asset", "")),
                strike=int(d["startPrice"]) / 1e6,
                start=int(d.get("startTime", 0)),
                end=int(d["endTime"]),
                resolved=bool(d.get("resolved", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ExchangeError("invalid", f"quick market: bad field {e}") from None
        if not (mid.startswith("0x") and len(mid) == 66) or qm.end <= 0 or qm.strike <= 0:
            raise ExchangeError("invalid", f"quick market: implausible values {mid[:12]}")
        return qm


@dataclass(frozen=True)
class Book:
    """One YES order book snapshot: (price, size) levels best first; `ts` in clock seconds."""

    bids: tuple[tuple[int, int], ...] = ()
    asks: tuple[tuple[int, int], ...] = ()
    ts: float = 0.0

    @property
    def best_bid(self) -> int | None:
        return self.bids[0][0] if self.bids else None

    @property
    def best_ask(self) -> int | None:
        return self.asks[0][0] if self.asks else None


def parse_levels(raw: Any) -> tuple[tuple[int, int], ...]:
    """Validate a list of {"price","size"} levels; raise ValueError on anything odd."""
    if not isinstance(raw, list):
        raise ValueError("levels must be a list")
    out = []
    for lv in raw:
        p, s = int(lv["price"]), int(lv["size"])
        if not MIN_PRICE <= p <= MAX_PRICE or s <= 0:
            raise ValueError(f"level out of range: {p}/{s}")
        out.append((p, s))
    return tuple(out)


def parse_book(d: dict[str, Any], ts: float) -> Book:
    bids, asks = parse_levels(d.get("bids", [])), parse_levels(d.get("asks", []))
    # best first, whatever order the wire used
    return Book(tuple(sorted(bids, key=lambda x: -x[0])), tuple(sorted(asks)), ts)


@dataclass(frozen=True)
class OrderInfo:
    order_hash: str
    market_id: str
    side: int
    outcome: int
    price: int
    size: int
    filled: int
    status: str

    @staticmethod
    def parse(d: dict[str, Any]) -> OrderInfo:
        return OrderInfo(
            str(d["orderHash"]).lower(),
            str(d.get("marketId", "")),
            int(d.get("side", 0)),
            int(d.get("outcome", 0)),
            int(d.get("price", 0)),
            int(d.get("size", 0)),
            int(d.get("filledSize", 0)),
            str(d.get("status", "")),
        )


@dataclass(frozen=True)
class ClaimResult:
    market_id: str
    contract: str
    status: str  # "claimed", "lost", "pending", "failed"
    amount: int = 0  # USDC units paid
    tx: str = ""
    yes_won: bool | None = None


class ExchangeError(Exception):
    """An exchange call failed. kind: retryable, rejected, auth, not_found, network, invalid,
    stale_feed (the firewall), rate_limited."""

    def __init__(self, kind: str, message: str, status: int = 0) -> None:
        super().__init__(f"{kind}: {message}" + (f" (HTTP {status})" if status else ""))
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after: float | None = None


def classify(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "retryable"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    return "rejected"


class Pacer:
    """Token bucket shared by every request of the process: a tick never bursts past the limit."""

    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        self.rate = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                wait = (1.0 - self._tokens) / self.rate
            self.waited_s += wait
            time.sleep(wait)


class Observer(Protocol):
    """What the exchange layer reports to (the engine's metrics)."""

    def request_done(self, endpoint: str, seconds: float, outcome: str) -> None: ...


class NullObserver:
    def request_done(self, endpoint: str, seconds: float, outcome: str) -> None:
        return None


class CallPolicy:
    """Pacing, retries with exponential backoff and jitter, error classes: used by both adapters.

    `call(endpoint, fn)` runs fn() (which raises ExchangeError) under the policy.
    """

    def __init__(
        self, cfg: Config, observer: Observer | None = None, pacer: Pacer | None = None
    ) -> None:
        self.cfg = cfg
        self.pacer = pacer or Pacer(cfg.rate_limit_per_s)
        self.observer: Observer = observer or NullObserver()
        self.rng = random.Random()

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        base = min(2.0, 0.2 * (2**attempt))
        if retry_after is not None:
            base = max(base, min(retry_after, 2.0))
        return base * (0.5 + self.rng.random())  # full jitter around the base

    def call(self, endpoint: str, fn: Callable[[], Any], retries: int | None = None) -> Any:
        retries = self.cfg.max_retries if retries is None else retries
        attempt = 0
        while True:
            self.pacer.acquire()
            t = time.perf_counter()
            try:
                out = fn()
            except ExchangeError as e:
                self.observer.request_done(endpoint, time.perf_counter() - t, e.kind)
                if e.kind in ("retryable", "rate_limited", "network") and attempt < retries:
                    time.sleep(self.backoff(attempt, e.retry_after))
                    attempt += 1
                    continue
                raise
            self.observer.request_done(endpoint, time.perf_counter() - t, "ok")
            return out


class Exchange(Protocol):
    """What the engine needs from an exchange. TurbineExchange (below) implements it with
    requests; official_spike_bot.OfficialExchange with turbine-py-client."""

    address: str
    policy: CallPolicy
    gate: OrderGate  # the firewall: the engine sets gate.feed_ok

    def quick_market(self) -> QuickMarket: ...
    def asset_price(self) -> float | None: ...
    def orderbook(self, market_id: str, now: float) -> Book: ...
    def prepare(self) -> None: ...
    def place(
        self,
        market: QuickMarket,
        side: int,
        outcome: int,
        price: int,
        size: int,
        expiration: int,
        now: float,
    ) -> str: ...
    def cancel(self, order_hash: str, market_id: str, side: int) -> None: ...
    def cancel_market(self, market_id: str) -> None: ...
    def orders(self, market_id: str | None, status: str | None) -> list[OrderInfo]: ...
    def position(self, market: QuickMarket) -> tuple[int, int]: ...
    def claim(self, markets: list[tuple[str, str]], now: float) -> list[ClaimResult]: ...
    def stream(self) -> Stream: ...


class StreamHandler(Protocol):
    def on_book(self, market_id: str, book: Book) -> None: ...
    def on_trade(self, market_id: str, trade: dict[str, Any]) -> None: ...
    def on_market(self, qm: dict[str, Any]) -> None: ...
    def on_order_cancelled(self, market_id: str, data: dict[str, Any]) -> None: ...
    def on_status(self, connected: bool, reason: str = "") -> None: ...
    def on_bad_frame(self, why: str) -> None: ...


class Stream(Protocol):
    def start(self, handler: StreamHandler) -> None: ...
    def subscribe(self, market_id: str) -> None: ...
    def unsubscribe(self, market_id: str) -> None: ...
    def stop(self) -> None: ...
    @property
    def connected(self) -> bool: ...


class OrderGate:
    """The adapter-level firewall and permit bookkeeping shared by both adapters.

    Every order-placing call passes `check()`: no fresh feed, no order. Permit nonces are read
    from the exchange once and counted up locally, resynced after a permit failure.
    """

    def __init__(self, cfg: Config, signer: Signer | None) -> None:
        self.cfg = cfg
        self.signer = signer
        self.feed_ok: Callable[[], bool] = lambda: False
        self.permit_nonce: int | None = None

    def check(self) -> None:
        if not self.feed_ok():
            raise ExchangeError("stale_feed", "order refused: the book feed is stale")

    def permit_for(
        self, side: int, price: int, size: int, now: float, read_nonce: Callable[[], int]
    ) -> dict[str, Any] | None:
        if self.cfg.permit_mode != "per_order" or self.signer is None:
            return None
        if self.permit_nonce is None:
            self.permit_nonce = read_nonce()
        value = permit_amount(side, price, size, self.cfg.permit_margin)
        p = self.signer.sign_permit(value, self.permit_nonce, int(now + self.cfg.permit_deadline_s))
        return p

    def submit(
        self, post: Callable[[], Any], permit: dict[str, Any] | None, local_hash: str
    ) -> str:
        """POST a signed order (through CallPolicy) and keep the permit nonce in step.

        A retry resends the identical signed body: if an earlier attempt did land, the retry
        is refused for its nonce, and the order is still known by its hash (the SDK's rule);
        the engine's read-back settles any doubt."""
        try:
            d = post()
        except ExchangeError as e:
            if "nonce already used" in e.message:
                self.permit_used()
                return local_hash
            if permit is not None and "permit" in e.message.lower():
                self.permit_failed()
            raise
        if permit is not None:
            self.permit_used()
        h = d.get("orderHash") if isinstance(d, dict) else None
        return str(h or local_hash).lower()

    def permit_used(self) -> None:
        if self.permit_nonce is not None:
            self.permit_nonce += 1

    def permit_failed(self) -> None:
        self.permit_nonce = None  # re-read from the exchange before the next permit


class TurbineExchange:
    """The Turbine REST API over one requests.Session, through CallPolicy and OrderGate."""

    def __init__(
        self,
        cfg: Config,
        signer: Signer | None,
        auth: BearerAuth | None,
        observer: Observer | None = None,
    ) -> None:
        self.cfg = cfg
        self.signer = signer
        self.auth = auth
        self.address = signer.address if signer else ""
        self.chain = CHAINS[cfg.chain_id]
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": f"{BOT_NAME}/1", "Accept": "application/json"})
        self.policy = CallPolicy(cfg, observer)
        self.gate = OrderGate(cfg, signer)
        self._stream: TurbineStream | None = None
        self._settlement: dict[str, str] = {}

    # -- transport ------------------------------------------------------------------------------
    def _raw(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        auth: bool = False,
    ) -> Any:
        headers = {}
        if auth:
            if self.auth is None:
                raise ExchangeError("auth", "API credentials required")
            headers["Authorization"] = f"Bearer {self.auth.token()}"
        try:
            r = self.session.request(
                method,
                self.cfg.host + path,
                params=params,
                json=body,
                headers=headers,
                timeout=self.cfg.http_timeout_s,
            )
        except requests.RequestException as e:
            raise ExchangeError("network", type(e).__name__) from None
        if r.status_code >= 400:
            try:
                msg = str(r.json().get("error", ""))[:200]
            except ValueError:
                msg = r.text[:200]
            err = ExchangeError(classify(r.status_code), msg or r.reason, r.status_code)
            ra = r.headers.get("Retry-After")
            if ra:
                with contextlib.suppress(ValueError):
                    err.retry_after = float(ra)
            raise err
        if r.status_code == 204 or not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            raise ExchangeError("invalid", f"{path}: response is not JSON") from None

    def _call(
        self, endpoint: str, method: str, path: str, retries: int | None = None, **kw: Any
    ) -> Any:
        return self.policy.call(endpoint, lambda: self._raw(method, path, **kw), retries)

    # -- reads ----------------------------------------------------------------------------------
    def quick_market(self) -> QuickMarket:
        d = self._call(
            "quick_market",
            "GET",
            f"/api/v1/quick-markets/{self.cfg.asset}",
            params={"interval": self.cfg.interval_min},
        )
        qm = QuickMarket.parse(d)
        return dataclasses.replace(qm, settlement=self.settlement_for(qm.market_id))

    def settlement_for(self, market_id: str) -> str:
        """The market's settlement contract (the EIP-712 verifying contract), read once per
        market. The spec says: the market's settlementAddress, else the chain's default; the
        SDK reads it from GET /api/v1/markets/{id} (not in the spec's table: a 404 or a
        missing field falls back to the chain default)."""
        hit = self._settlement.get(market_id)
        if hit is None:
            try:
                d = self._call("market", "GET", f"/api/v1/markets/{market_id}", retries=1)
                hit = str((d or {}).get("settlementAddress") or "") if isinstance(d, dict) else ""
            except ExchangeError:
                hit = ""
            if not (hit.startswith("0x") and len(hit) == 42):
                hit = self.chain["settlement"]
            self._settlement = {market_id: hit}  # only the current market matters
        return hit

    def asset_price(self) -> float | None:
        d = self._call("price", "GET", f"/api/v1/quick-markets/{self.cfg.asset}/price")
        try:
            p = float(d["price"])
        except (KeyError, TypeError, ValueError):
            return None
        return p if p > 0 and math.isfinite(p) else None

    def orderbook(self, market_id: str, now: float) -> Book:
        d = self._call("orderbook", "GET", f"/api/v1/orderbook/{market_id}")
        try:
            return parse_book(d, now)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ExchangeError("invalid", f"orderbook: {e}") from None

    def orders(self, market_id: str | None, status: str | None) -> list[OrderInfo]:
        params: dict[str, Any] = {"trader": self.address}
        if market_id:
            params["market_id"] = market_id
        if status:
            params["status"] = status
        d = self._call("orders", "GET", "/api/v1/orders", params=params, auth=True)
        rows = d.get("orders", []) if isinstance(d, dict) else d
        try:
            return [OrderInfo.parse(o) for o in rows or []]
        except (KeyError, TypeError, ValueError) as e:
            raise ExchangeError("invalid", f"orders: {e}") from None

    def position(self, market: QuickMarket) -> tuple[int, int]:
        d = self._call(
            "positions",
            "GET",
            f"/api/v1/positions/{market.contract or market.market_id}",
            params={"user": self.address},
            auth=True,
        )
        rows = d.get("positions", []) if isinstance(d, dict) else d
        for p in rows or []:
            if str(p.get("marketId", market.market_id)).lower() == market.market_id.lower():
                return int(p.get("yesShares", 0)), int(p.get("noShares", 0))
        return 0, 0

    def balances(self) -> tuple[int, int]:
        d = self._call(
            "balances",
            "GET",
            f"/api/v1/users/{self.address}/balances",
            params={"chain_id": self.cfg.chain_id},
        )
        return int(d.get("balance", 0)), int(d.get("allowance", 0))

    def _permit_nonce(self) -> int:
        d = self._call(
            "nonce",
            "GET",
            f"/api/v1/contracts/nonce/{self.chain['usdc']}/{self.address}",
            params={"chain_id": self.cfg.chain_id},
        )
        return int(d["nonce"])

    # -- writes ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        """One-time max allowance (permit_mode=max) unless one is already in place."""
        if self.cfg.permit_mode != "max" or self.signer is None:
            return
        _, allowance = self.balances()
        if allowance >= 2**255:
            return
        p = self.signer.sign_permit(MAX_UINT, self._permit_nonce(), MAX_UINT)
        self._call(
            "usdc_permit",
            "POST",
            "/api/v1/relayer/usdc-permit",
            auth=True,
            body={
                "chainId": self.cfg.chain_id,
                "owner": self.address,
                "spender": self.chain["settlement"],
                "value": p["value"],
                "deadline": p["deadline"],
                "v": p["v"],
                "r": p["r"],
                "s": p["s"],
            },
        )

    def place(
        self,
        market: QuickMarket,
        side: int,
        outcome: int,
        price: int,
        size: int,
        expiration: int,
        now: float,
    ) -> str:
        self.gate.check()
        if self.signer is None:
            raise ExchangeError("auth", "no signing key")
        so = self.signer.sign_order(
            OrderFields(
                market.market_id,
                self.address,
                side,
                outcome,
                price,
                size,
                new_nonce(now),
                expiration,
            ),
            market.settlement or None,
        )
        permit = self.gate.permit_for(side, price, size, now, self._permit_nonce)
        return self.gate.submit(
            lambda: self._call("place", "POST", "/api/v1/orders", body=so.body(permit), auth=True),
            permit,
            so.order_hash,
        )

    def cancel(self, order_hash: str, market_id: str, side: int) -> None:
        self._call(
            "cancel",
            "DELETE",
            f"/api/v1/orders/{order_hash}",
            auth=True,
            params={"marketId": market_id, "side": "buy" if side == BUY else "sell"},
        )

    def cancel_market(self, market_id: str) -> None:
        self._call(
            "cancel_market", "DELETE", "/api/v1/orders", auth=True, params={"marketId": market_id}
        )

    def claim(self, markets: list[tuple[str, str]], now: float) -> list[ClaimResult]:
        """Redeem resolved winnings for (market_id, contract) pairs; each result says what
        happened. Claiming twice is harmless: a paid market reports winning_balance 0."""
        if not markets or self.signer is None:
            return []
        d = self._call(
            "claim_data",
            "GET",
            f"/api/v1/users/{self.address}/claim-data",
            params={"chain_id": self.cfg.chain_id, "markets": ",".join(c for _, c in markets)},
        )
        rows = d.get("markets", []) if isinstance(d, dict) else []
        by_contract = {str(r.get("market_address", "")).lower(): r for r in rows}
        out = []
        nonce: int | None = None
        for i, (mid, contract) in enumerate(markets):
            r = by_contract.get(contract.lower()) or (rows[i] if i < len(rows) else None)
            if not r or not r.get("resolved"):
                out.append(ClaimResult(mid, contract, "pending"))
                continue
            bal = int(r.get("winning_balance") or 0)
            won = r.get("winning_outcome")
            yes_won = None if won is None else int(won) == YES
            if bal <= 0:
                out.append(ClaimResult(mid, contract, "lost", yes_won=yes_won))
                continue
            nonce = int(r["ctf_nonce"]) if nonce is None else nonce
            idx = [1] if int(r["winning_outcome"]) == YES else [2]
            body = self.signer.sign_redemption(
                r["ctf_address"],
                r["collateral_token"],
                r["condition_id"],
                idx,
                nonce,
                int(now + self.cfg.permit_deadline_s),
            )
            body["marketAddress"] = contract
            try:
                res = self._call(
                    "redeem", "POST", "/api/v1/relayer/ctf-redemption", body=body, auth=True
                )
            except ExchangeError as e:
                out.append(ClaimResult(mid, contract, "failed", 0, e.message))
                nonce = None
                break  # the CTF nonce is now uncertain: re-read next round
            nonce += 1
            paid = int((res or {}).get("payout", bal)) if isinstance(res, dict) else bal
            out.append(
                ClaimResult(
                    mid, contract, "claimed", paid, str((res or {}).get("tx_hash", "")), yes_won
                )
            )
        return out

    def register_api_key(self, name: str = BOT_NAME) -> tuple[str, str]:
        if self.signer is None:
            raise ConfigError("registration needs a private key")
        sig = self.signer.sign_personal(registration_text(self.address))
        try:
            d = self._call(
                "register",
                "POST",
                "/api/v1/api-keys",
                body={"address": self.address, "signature": sig, "name": name},
            )
        except ExchangeError as e:
            if e.status == 409:
                raise ConfigError(
                    "this wallet already has API credentials but they are not in the env file; "
                    f"the secret cannot be fetched again: set {ENV_API_KEY_ID} and "
                    f"{ENV_API_PRIVATE_KEY} (or register a new wallet)"
                ) from None
            raise
        return str(d["api_key_id"]), str(d["api_private_key"])

    def stream(self) -> TurbineStream:
        if self._stream is None:
            self._stream = TurbineStream(self.cfg)
        return self._stream


def ws_url(host: str) -> str:
    if host.startswith("https://"):
        return "wss://" + host[8:] + "/api/v1/stream"
    return "ws://" + host.removeprefix("http://") + "/api/v1/stream"


def dispatch_frame(frame: str, handler: StreamHandler, now: float) -> None:
    """Decode one frame (one or more newline-separated JSON messages) into handler calls.
    Bad messages are reported and skipped, never raised."""
    for line in frame.split("\n"):
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
            typ, mid, data = msg.get("type"), msg.get("marketId"), msg.get("data")
            if typ == "orderbook":
                if not isinstance(mid, str) or not isinstance(data, dict):
                    raise ValueError("orderbook without marketId or data")
                handler.on_book(mid, parse_book(data, now))
            elif typ == "trade":
                if not isinstance(data, dict):
                    raise ValueError("trade without data")
                handler.on_trade(str(mid or data.get("marketId", "")), data)
            elif typ == "quick_market":
                if not isinstance(data, dict):
                    raise ValueError("quick_market without data")
                handler.on_market(data)
            elif typ == "order_cancelled":
                handler.on_order_cancelled(str(mid or ""), data if isinstance(data, dict) else {})
            elif typ is None:
                raise ValueError("message without type")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            handler.on_bad_frame(f"{type(e).__name__}: {str(e)[:80]}")


class TurbineStream:
    """The book feed thread (websocket-client). Owns the socket, reconnects with backoff and
    jitter, resubscribes, and reconnects after `ws_silence_s` of silence. Delivers messages to
    the handler from its own thread: the handler writes shared state under the engine's lock."""

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.url = ws_url(cfg.host)
        self.clock = clock
        self._subs: set[str] = set()
        self._lock = threading.Lock()  # guards _ws and _subs
        self._ws: websocket.WebSocket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self, handler: StreamHandler) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(handler,), name="book-feed", daemon=True
        )
        self._thread.start()

    def _send(self, msg: dict[str, Any]) -> None:
        with self._lock:
            ws = self._ws
        if ws is not None:
            try:
                ws.send(json.dumps(msg))
            except (websocket.WebSocketException, OSError):
                pass  # the reader notices the broken socket and reconnects

    def subscribe(self, market_id: str) -> None:
        with self._lock:
            self._subs.add(market_id)
        self._send({"type": "subscribe", "marketId": market_id})

    def unsubscribe(self, market_id: str) -> None:
        with self._lock:
            self._subs.discard(market_id)
        self._send({"type": "unsubscribe", "marketId": market_id})

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, handler: StreamHandler) -> None:
        backoff = 0.25
        while not self._stop.is_set():
            ws = None
            reason = ""
            try:
                ws = websocket.create_connection(self.url, timeout=self.cfg.http_timeout_s)
                with self._lock:
                    self._ws = ws
                    subs = list(self._subs)
                for mid in subs:
                    ws.send(json.dumps({"type": "subscribe", "marketId": mid}))
                self._connected = True
                handler.on_status(True)
                backoff = 0.25
                ws.settimeout(0.25)
                last = time.monotonic()
                while not self._stop.is_set():
                    try:
                        frame = ws.recv()
                    except websocket.WebSocketTimeoutException:
                        if time.monotonic() - last > self.cfg.ws_silence_s:
                            raise ConnectionError("stream silent") from None
                        continue
                    if not frame:
                        raise ConnectionError("stream closed")
                    last = time.monotonic()
                    if isinstance(frame, bytes):
                        frame = frame.decode("utf-8", "replace")
                    dispatch_frame(frame, handler, self.clock())
            except Exception as e:  # noqa: BLE001 -- any failure: reconnect, never die
                reason = f"{type(e).__name__}: {str(e)[:80]}"
            finally:
                with self._lock:
                    self._ws = None
                if ws is not None:
                    with contextlib.suppress(Exception):
                        ws.close()
                if self._connected:
                    self._connected = False
                    handler.on_status(False, reason)
            if self._stop.is_set():
                break
            self._stop.wait(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 10.0)


# =============================================================================================
# 4. STRATEGY: pure functions over plain values. No clock, no I/O, no logging.
#    quotes(): T-minus -> extremes widening (around fair) -> inventory skew -> limits ->
#    maker-only clamp -> tick rounding. plan(): the difference between desired and live orders.
# =============================================================================================
@dataclass(frozen=True)
class Quote:
    side: int
    outcome: int
    price: int
    size: int


@dataclass(frozen=True)
class LiveOrder:
    order_hash: str
    side: int
    outcome: int
    price: int
    size: int  # original size
    remaining: int
    placed_at: float


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def model_probability(
    price: float | None, strike: float, seconds_left: float, annual_vol: float
) -> float | None:
    """P(price at expiry > strike) for a driftless log-normal: N(ln(S/K) / (sigma sqrt(t)))."""
    if price is None or price <= 0 or strike <= 0:
        return None
    if seconds_left <= 0:
        return 1.0 if price > strike else 0.0
    sd = annual_vol * math.sqrt(seconds_left / (365 * 24 * 3600))
    return norm_cdf(math.log(price / strike) / sd)


def book_mid(book: Book) -> float | None:
    if book.best_bid is None or book.best_ask is None:
        return None
    return (book.best_bid + book.best_ask) / 2 / PRICE_SCALE


def micro_price(book: Book) -> float | None:
    """Top-of-book size-weighted mid: leans toward the side with less size (where the next
    trade is likelier to push the price)."""
    if not book.bids or not book.asks:
        return None
    (bp, bs), (ap, as_) = book.bids[0], book.asks[0]
    return (bp * as_ + ap * bs) / (bs + as_) / PRICE_SCALE


def fair_value(
    book: Book, price: float | None, strike: float, seconds_left: float, cfg: Config
) -> float | None:
    """Fair probability of YES, or None when the chosen source has no input (then: no quotes).

    Default 'blend' (0.7 model + 0.3 micro-price): quick markets are driven by the asset price,
    which the model reads directly and a thin book follows late; the micro-price term keeps
    quotes from drifting far from where others trade when the model's vol is off.
    """
    src = cfg.fair_source
    if src == "mid":
        return book_mid(book)
    if src == "micro":
        return micro_price(book)
    model = model_probability(price, strike, seconds_left, cfg.model_vol)
    if src == "model":
        return model
    micro = micro_price(book)
    if model is None:
        return micro
    if micro is None:
        return model
    return cfg.model_weight * model + (1 - cfg.model_weight) * micro


def extremes_half_spread(fair: float, base_half: float, cfg: Config) -> float:
    """Half-spread after extremes widening: grows linearly as fair nears 0 or 1."""
    d = min(fair, 1.0 - fair)
    if cfg.extreme_zone > 0 and d < cfg.extreme_zone:
        return base_half + cfg.extreme_widen * (1.0 - d / cfg.extreme_zone)
    return base_half


def inventory_skew(inventory: float, cfg: Config) -> float:
    """Shift of both quotes: long YES lowers them (sell sooner, buy later), short raises them."""
    if cfg.max_position <= 0:
        return 0.0
    return -cfg.skew_factor * max(-1.0, min(1.0, inventory / cfg.max_position))


def quotes(
    fair: float, inventory: float, book: Book, seconds_left: float, cfg: Config
) -> list[Quote]:
    """Desired YES quotes. `inventory` is net YES-equivalent shares (YES minus NO): a SELL of
    YES not held is collateralised by a split and leaves NO shares, which count negative."""
    if seconds_left <= cfg.tminus_pull_s or not 0.0 < fair < 1.0:
        return []
    half = cfg.base_spread / 2
    size_sh = cfg.order_size
    if seconds_left <= cfg.tminus_widen_s:
        half *= cfg.tminus_widen_mult
        size_sh *= cfg.tminus_size_mult
    # 1. extremes widening is decided on fair value itself, BEFORE skew moves the centre:
    #    otherwise a large inventory could skew a near-certain market back into the zone
    #    where it is quoted tight.
    half = extremes_half_spread(fair, half, cfg)
    # 2. inventory skew moves the centre
    centre = fair + inventory_skew(inventory, cfg)
    bid_p, ask_p = centre - half, centre + half
    # 3. limits: never grow inventory past max_position; near the end only reduce
    size_sh = min(size_sh, cfg.max_order_size)
    bid_sz = max(0.0, min(size_sh, cfg.max_position - inventory))
    ask_sz = max(0.0, min(size_sh, cfg.max_position + inventory))
    if seconds_left <= cfg.tminus_reduce_only_s:
        bid_sz = min(bid_sz, max(0.0, -inventory))
        ask_sz = min(ask_sz, max(0.0, inventory))
    # 4. maker-only clamp (never cross or touch the opposite best) and tick rounding
    tick = max(1, round(cfg.price_tick * PRICE_SCALE))
    lo, hi = max(MIN_PRICE, tick), min(MAX_PRICE, PRICE_SCALE - tick)
    out: list[Quote] = []
    eps = 1e-6  # float noise (0.5 - 0.3 = 0.19999...) must not cost a tick
    bid = math.floor(bid_p * PRICE_SCALE / tick + eps) * tick
    if book.best_ask is not None:
        bid = min(bid, (book.best_ask - 1) // tick * tick)
    ask = math.ceil(ask_p * PRICE_SCALE / tick - eps) * tick
    if book.best_bid is not None:
        ask = max(ask, (book.best_bid // tick + 1) * tick)
    bid_units, ask_units = int(bid_sz * SIZE_SCALE), int(ask_sz * SIZE_SCALE)
    bid_ok = bid_units > 0 and lo <= bid <= hi
    ask_ok = ask_units > 0 and lo <= ask <= hi
    if bid_ok and ask_ok and bid >= ask:
        return []  # the clamps met: no safe two-sided quote
    if bid_ok:
        out.append(Quote(BUY, YES, bid, bid_units))
    if ask_ok:
        out.append(Quote(SELL, YES, ask, ask_units))
    return out


def plan(
    desired: Iterable[Quote],
    live: Iterable[LiveOrder],
    tolerance: int,
    now: float,
    refresh_s: float,
) -> tuple[list[LiveOrder], list[Quote]]:
    """(cancels, places): keep a live order that matches a desired quote's side and outcome,
    is within `tolerance` of its price, has its size, is not mostly filled and not due for
    refresh; cancel the rest; place what is missing."""
    keep: set[str] = set()
    places: list[Quote] = []
    live_l = list(live)
    for q in desired:
        match = None
        for o in live_l:
            if (
                o.order_hash not in keep
                and o.side == q.side
                and o.outcome == q.outcome
                and abs(o.price - q.price) < max(tolerance, 1)
                and o.size == q.size
                and o.remaining * 2 >= q.size
                and now - o.placed_at < refresh_s
            ):
                match = o
                break
        if match is None:
            places.append(q)
        else:
            keep.add(match.order_hash)
    cancels = [o for o in live_l if o.order_hash not in keep]
    return cancels, places


# =============================================================================================
# 5. ENGINE: the Bot and its observability.
#
#   Threads and ownership (one lock: Feed.lock)
#   | thread         | owns                                          | shares                    |
#   | main (engine)  | market, live orders, fills, positions, PnL,   | reads Feed under its lock |
#   |                | claims, schedule, state file, metric values   |                           |
#   | book-feed      | the socket, reconnects, subscriptions         | writes Feed (book, flags) |
#   |                |                                               | under the lock; sets wake |
#   | metrics server | nothing                                       | reads the engine's metrics|
#   | simulator      | everything in turbine_sim (--sim only)        | nothing: loopback HTTP/WS |
# =============================================================================================
class Clock(Protocol):
    def now(self) -> float: ...
    def wait(self, event: threading.Event | None, seconds: float) -> bool: ...


class SystemClock:
    """Wall time. (turbine_sim.Clock has the same two methods for --sim and the tests.)"""

    def now(self) -> float:
        return time.time()

    def wait(self, event: threading.Event | None, seconds: float) -> bool:
        if event is None:
            time.sleep(max(0.0, seconds))
            return False
        return event.wait(max(0.0, seconds))


class Feed:
    """State the stream thread shares with the engine. Every field is read and written under
    `lock`; `wake` tells the engine to quote now."""

    def __init__(self, clock: Clock) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.clock = clock
        self.market_id = ""
        self.book = Book()
        self.connected = False
        self.new_market: dict[str, Any] | None = None  # rollover hint from the stream
        self.own_trade = False  # our address traded: poll fills now
        self.cancelled: set[str] = set()  # order hashes the stream saw die
        self.bad_frames = 0
        self.closing = False  # set by the engine before stop()


class FeedHandler:
    """StreamHandler writing into Feed (runs on the stream thread)."""

    def __init__(
        self,
        feed: Feed,
        address: str,
        asset: str,
        interval: int,
        log: EventLog,
        recorder: Recorder | None = None,
    ) -> None:
        self.feed = feed
        self.address = address.lower()
        self.asset = asset
        self.interval = interval
        self.log = log
        self.recorder = recorder

    def on_book(self, market_id: str, book: Book) -> None:
        f = self.feed
        book = Book(book.bids, book.asks, f.clock.now())  # freshness = when we heard it
        if self.recorder is not None:
            self.recorder.book(market_id, book)
        with f.lock:
            if market_id.lower() != f.market_id.lower():
                return
            material = (book.best_bid, book.best_ask) != (f.book.best_bid, f.book.best_ask)
            f.book = book
        if material:
            f.wake.set()

    def on_trade(self, market_id: str, trade: dict[str, Any]) -> None:
        f = self.feed
        mine = self.address in {
            str(trade.get(k, "")).lower() for k in ("buyer", "seller", "maker", "taker")
        }
        if self.recorder is not None:
            self.recorder.write("trade", {**trade, "marketId": market_id})
        with f.lock:
            if mine:
                f.own_trade = True
        if mine:
            f.wake.set()

    def on_market(self, qm: dict[str, Any]) -> None:
        if str(qm.get("asset", self.asset)).upper() != self.asset:
            return
        if int(qm.get("intervalMinutes") or self.interval) != self.interval:
            return
        with self.feed.lock:
            self.feed.new_market = qm
        self.feed.wake.set()

    def on_order_cancelled(self, market_id: str, data: dict[str, Any]) -> None:
        h = str(data.get("orderHash", "")).lower()
        if h:
            with self.feed.lock:
                self.feed.cancelled.add(h)

    def on_status(self, connected: bool, reason: str = "") -> None:
        with self.feed.lock:
            self.feed.connected = connected
        closing = self.feed.closing  # our own shutdown closes it: not a warning
        self.log.event(
            "stream_connected" if connected else "stream_disconnected",
            level="INFO" if connected or closing else "WARNING",
            **({"reason": reason} if reason and not connected else {}),
        )
        self.feed.wake.set()

    def on_bad_frame(self, why: str) -> None:
        with self.feed.lock:
            self.feed.bad_frames += 1
            n = self.feed.bad_frames
        if n <= 20 or n % 100 == 0:  # bounded: a flood of garbage must not flood the log
            self.log.event("error", level="WARNING", kind="bad_frame", why=why, count=n)


class EventLog:
    """Structured JSON lines: ts, level, bot, event, fields. Thread-safe."""

    def __init__(self, path: str, bot: str, echo: Callable[[str], None] | None = None) -> None:
        self.bot = bot
        self.path = path
        self._lock = threading.Lock()
        self._fh = sys.stdout if path == "-" else open(path, "a", encoding="utf-8")
        self.echo = echo
        self.counts: dict[str, int] = {}
        self.clock: Callable[[], float] | None = None  # market time, set by the engine

    def event(self, event: str, level: str = "INFO", **fields: Any) -> None:
        rec = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "bot": self.bot,
            "event": event,
            **fields,
        }
        if self.clock is not None:
            rec["t"] = round(self.clock(), 3)  # market time (simulated time under --sim)
        line = json.dumps(rec, separators=(",", ":"), default=str)
        with self._lock:
            self.counts[event] = self.counts.get(event, 0) + 1
            self._fh.write(line + "\n")
            self._fh.flush()
        if self.echo is not None and event in ECHO_EVENTS:
            self.echo(
                f"{event:>14} "
                + " ".join(
                    f"{k}={v}" for k, v in fields.items() if k not in ("order_hash", "config")
                )
            )

    def close(self) -> None:
        if self._fh is not sys.stdout:
            self._fh.close()


ECHO_EVENTS = {
    "start",
    "fill",
    "rollover",
    "claim",
    "fail_closed",
    "resumed",
    "error",
    "shutdown",
    "pnl_snapshot",
    "order_rejected",
    "kill_switch",
}


def lock_path(path: str) -> str:
    return os.path.abspath(path) + ".lock"


def hold_file_lock(path: str) -> Any:
    """An exclusive lock beside `path` held for the life of the process: two bots can never
    share a state or log file. Raises ConfigError when another running process holds it."""
    fh = open(lock_path(path), "a+", encoding="utf-8")  # held until the process exits
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise ConfigError(
            f"{path} is in use by another running bot (lock {lock_path(path)})"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def file_lock_free(path: str) -> bool:
    """Whether no running process holds `path`'s lock (preflight)."""
    try:
        fh = hold_file_lock(path)
    except ConfigError:
        return False
    fh.close()
    return True


class Recorder:
    """`--record FILE`: what the bot receives (book snapshots, trades, asset prices, quick
    markets) with receive times in market time, one compact JSON line each, rotated by size.
    `spike_bot.py replay FILE` runs the engine over it. Thread-safe (logging's handler)."""

    def __init__(self, path: str, clock: Callable[[], float], max_mb: float = 50.0) -> None:
        from logging.handlers import RotatingFileHandler

        self.clock = clock
        self._log = logging.getLogger(f"spike_bot.record.{id(self)}")
        self._log.propagate = False
        self._log.setLevel(logging.INFO)
        self._handler = RotatingFileHandler(path, maxBytes=int(max_mb * 1e6), backupCount=20)
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._log.addHandler(self._handler)

    def write(self, kind: str, data: Any) -> None:
        self._log.info(
            json.dumps({"r": round(self.clock(), 3), "k": kind, "d": data}, separators=(",", ":"))
        )

    def book(self, market_id: str, book: Book) -> None:
        self.write("book", {"m": market_id, "b": book.bids, "a": book.asks})

    def market(self, qm: QuickMarket) -> None:
        self.write("market", dataclasses.asdict(qm))

    def close(self) -> None:
        self._handler.close()
        self._log.removeHandler(self._handler)


class Metrics:
    """Prometheus metrics (prometheus-client), one registry per bot; optional HTTP server.
    The same names for both bots, told apart by the `bot` label."""

    def __init__(self, bot: str, port: int = 0) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        lb = ["bot"]
        self.orders = Counter("spike_orders_placed", "orders placed", lb, registry=r).labels(bot)
        self.cancels = Counter("spike_orders_cancelled", "orders cancelled", lb, registry=r).labels(
            bot
        )
        self.fills = Counter("spike_fills", "fills", lb, registry=r).labels(bot)
        self.placed_size = Counter("spike_placed_shares", "shares placed", lb, registry=r).labels(
            bot
        )
        self.filled_size = Counter("spike_filled_shares", "shares filled", lb, registry=r).labels(
            bot
        )
        self.fill_ratio = Gauge("spike_fill_ratio", "filled / placed size", lb, registry=r).labels(
            bot
        )
        self.pnl_realized = Gauge("spike_pnl_realized_usdc", "realized PnL", lb, registry=r).labels(
            bot
        )
        self.pnl_unrealized = Gauge(
            "spike_pnl_unrealized_usdc", "unrealized PnL at fair", lb, registry=r
        ).labels(bot)
        self.inventory = Gauge(
            "spike_inventory_shares", "net YES-equivalent shares", lb, registry=r
        ).labels(bot)
        self.feed_age = Gauge("spike_feed_age_seconds", "age of the book", lb, registry=r).labels(
            bot
        )
        self.quoting = Gauge(
            "spike_quoting", "1 when quoting, 0 when failed closed", lb, registry=r
        ).labels(bot)
        self._latency = Histogram(
            "spike_request_seconds",
            "request latency",
            ["bot", "endpoint"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self._errors = Counter("spike_errors", "errors by kind", ["bot", "kind"], registry=r)
        self._requests = Counter(
            "spike_requests",
            "requests by endpoint and outcome",
            ["bot", "endpoint", "outcome"],
            registry=r,
        )
        self.bot = bot
        self.requests_total = 0
        self.errors_by_kind: dict[str, int] = {}
        self._lock = threading.Lock()
        if port:
            from prometheus_client import start_http_server

            start_http_server(port, addr="127.0.0.1", registry=r)

    def request_done(self, endpoint: str, seconds: float, outcome: str) -> None:
        self._latency.labels(self.bot, endpoint).observe(seconds)
        self._requests.labels(self.bot, endpoint, outcome).inc()
        with self._lock:
            self.requests_total += 1
        if outcome != "ok":
            self.error(outcome)

    def error(self, kind: str) -> None:
        self._errors.labels(self.bot, kind).inc()
        with self._lock:
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1


@dataclass
class PnL:
    """Average-cost accounting of a signed YES-equivalent position, in USDC.

    A SELL of YES not held leaves NO shares (a split): economically a short YES at that price,
    so one signed position covers both; at resolution it settles at 1 (YES) or 0 (NO).
    """

    position: float = 0.0  # shares, + long YES, - short (NO held)
    avg: float = 0.0  # average entry price of the open position
    realized: float = 0.0
    fees: float = 0.0

    def fill(self, side: int, price: float, shares: float, fee: float = 0.0) -> None:
        signed = shares if side == BUY else -shares
        self.fees += fee
        self.realized -= fee
        pos = self.position
        if pos == 0 or (pos > 0) == (signed > 0):
            total = abs(pos) + abs(signed)
            self.avg = (self.avg * abs(pos) + price * abs(signed)) / total
            self.position = pos + signed
            return
        closing = min(abs(pos), abs(signed))
        self.realized += closing * (price - self.avg) * (1 if pos > 0 else -1)
        self.position = pos + signed
        if abs(signed) > closing:  # flipped: the remainder opens at this price
            self.avg = price
        elif abs(self.position) < 1e-12:
            self.position, self.avg = 0.0, 0.0

    def unrealized(self, fair: float | None) -> float:
        if fair is None or self.position == 0:
            return 0.0
        return self.position * (fair - self.avg)

    def settle(self, yes_won: bool) -> float:
        """Close at resolution; returns the PnL realized by it."""
        v = self.unrealized(1.0 if yes_won else 0.0)
        self.realized += v
        self.position, self.avg = 0.0, 0.0
        return v


@dataclass
class MarketState:
    """Everything the engine knows about the market it quotes. Reset at rollover."""

    qm: QuickMarket
    live: dict[str, LiveOrder] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)  # order hash -> size counted
    meta: dict[str, tuple[int, int]] = field(default_factory=dict)  # hash -> (side, price)
    pnl: PnL = field(default_factory=PnL)
    exch_yes: int = 0
    exch_no: int = 0
    fair: float | None = None
    killed: bool = False
    next_orders_sync: float = 0.0  # clock time of the next unconditional orders read
    mismatch: float | None = None  # exchange inventory seen once that differs from ours
    dry_seq: int = 0


@dataclass
class Counters:
    orders: int = 0
    cancels: int = 0
    fills: int = 0
    rejects: int = 0
    placed_size: float = 0.0
    filled_size: float = 0.0
    fail_closed: int = 0
    rollovers: int = 0
    claims: int = 0
    claimed_usdc: float = 0.0
    errors: int = 0
    ticks: int = 0


class Bot:
    """The engine: one main loop on the calling thread; the stream thread only touches Feed."""

    def __init__(
        self,
        cfg: Config,
        ex: Exchange,
        clock: Clock,
        log: EventLog,
        metrics: Metrics,
        dry_run: bool = False,
    ) -> None:
        self.cfg = cfg
        self.ex = ex
        self.clock = clock
        self.log = log
        self.metrics = metrics
        self.dry_run = dry_run
        self.feed = Feed(clock)
        self.ex.gate.feed_ok = self.feed_fresh
        self.log.clock = clock.now
        self.stop_event = threading.Event()
        self.m: MarketState | None = None
        self.claims: dict[str, str] = {}  # market id -> contract, until claimed or lost
        self.strikes: dict[str, int] = {}  # market id -> consecutive "unknown market" answers
        self.settled: dict[str, dict[str, Any]] = {}  # market id -> pnl record, for resolution
        self.c = Counters()
        self.realized_total = 0.0
        self.day = ""
        self.day_pnl = 0.0
        self.day_killed = False
        self.quoting = False
        self.closed_reason: str | None = "starting"
        self.closed_since: float | None = None
        self.need_resync = False
        self.due: dict[str, float] = {}
        self.tick_times: list[float] = []
        self.asset_px: float | None = None
        self.started = clock.now()
        self.last_status = 0.0
        self.stream: Stream | None = None
        self.recorder: Recorder | None = None  # --record
        # live tuning: SIGHUP sets the flag; the loop re-reads settings through `reloader`
        self.fresh_state = False  # --sim: start without the previous run's state
        self.reloader: Callable[[], Config] | None = None
        self.reload_requested = threading.Event()

    # -- state file -----------------------------------------------------------------------------
    def load_state(self) -> None:
        path = self.cfg.state_file
        if not os.path.exists(path):
            return
        try:
            with open(path, encoding="utf-8") as fh:
                st = json.load(fh)
            self.claims = {str(k): str(v) for k, v in st.get("claims", {}).items()}
            self.settled = dict(st.get("settled", {}))
            self.realized_total = float(st.get("realized_total", 0.0))
            self.day = str(st.get("day", ""))
            self.day_pnl = float(st.get("day_pnl", 0.0))
            for k, v in st.get("counters", {}).items():
                if hasattr(self.c, k):
                    setattr(self.c, k, type(getattr(self.c, k))(v))
            if st.get("market") and st.get("market_pnl"):
                self._restored = (str(st["market"]), PnL(**st["market_pnl"]))
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise ConfigError(
                f"state file {path} is unreadable ({type(e).__name__}); "
                "move it aside to start fresh"
            ) from None

    def save_state(self) -> None:
        """Write-to-temp then rename: a crash mid-write leaves the previous state intact."""
        st = {
            "bot": self.cfg.bot_name,
            "saved": self.clock.now(),
            "claims": self.claims,
            "settled": self.settled,
            "realized_total": self.realized_total,
            "day": self.day,
            "day_pnl": self.day_pnl,
            "counters": dataclasses.asdict(self.c),
            "market": self.m.qm.market_id if self.m else None,
            "market_pnl": dataclasses.asdict(self.m.pnl) if self.m else None,
        }
        d = os.path.dirname(os.path.abspath(self.cfg.state_file))
        fd, tmp = tempfile.mkstemp(prefix=".spike_state.", dir=d)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(st, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.cfg.state_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- feed -----------------------------------------------------------------------------------
    def feed_age(self) -> float:
        with self.feed.lock:
            ts = self.feed.book.ts
        return self.clock.now() - ts if ts else float("inf")

    def feed_fresh(self) -> bool:
        return self.feed_age() <= self.cfg.stale_after_s

    def book_excluding_own(self) -> Book:
        """The market without our own orders, so we neither clamp to nor price off ourselves."""
        with self.feed.lock:
            book = self.feed.book
        if self.m is None or not self.m.live:
            return book
        own: dict[tuple[int, int], int] = {}
        for o in self.m.live.values():
            k = (o.side, o.price)
            own[k] = own.get(k, 0) + o.remaining

        def strip(levels: tuple[tuple[int, int], ...], side: int) -> tuple[tuple[int, int], ...]:
            out = []
            for p, sz in levels:
                rest = sz - own.get((side, p), 0)
                if rest > 0:
                    out.append((p, rest))
            return tuple(out)

        return Book(strip(book.bids, BUY), strip(book.asks, SELL), book.ts)

    # -- orders ---------------------------------------------------------------------------------
    def _place(self, q: Quote, now: float) -> None:
        """The one function that places orders: kill switch, limits and freshness first."""
        m = self.m
        assert m is not None
        if m.killed or self.day_killed or not self.feed_fresh():
            return
        if len(m.live) >= self.cfg.max_open_orders:
            return
        if q.size > self.cfg.max_order_size * SIZE_SCALE:
            return
        exp = int(min(now + self.cfg.order_refresh_s + self.cfg.expiry_grace_s, m.qm.end))
        shares, px = q.size / SIZE_SCALE, q.price / PRICE_SCALE
        if self.dry_run:
            m.dry_seq += 1
            h = f"dry-{m.dry_seq}"
            m.live[h] = LiveOrder(h, q.side, q.outcome, q.price, q.size, q.size, now)
            self.log.event(
                "dry_run_quote",
                market=m.qm.market_id,
                side="BUY" if q.side == BUY else "SELL",
                outcome="YES" if q.outcome == YES else "NO",
                price=px,
                size=shares,
            )
            return
        try:
            h = self.ex.place(m.qm, q.side, q.outcome, q.price, q.size, exp, now)
        except ExchangeError as e:
            self.c.rejects += 1
            self.log.event(
                "order_rejected",
                level="WARNING",
                market=m.qm.market_id,
                side="BUY" if q.side == BUY else "SELL",
                price=px,
                size=shares,
                kind=e.kind,
                reason=e.message[:160],
            )
            if "closed" in e.message or e.kind == "not_found":
                self.due["rollover"] = 0.0  # the market ended under us: roll now
            if e.kind not in ("rejected", "stale_feed"):
                self.need_resync = True  # unsure whether it landed: read back
            return
        m.live[h] = LiveOrder(h, q.side, q.outcome, q.price, q.size, q.size, now)
        m.meta[h] = (q.side, q.price)
        m.filled.setdefault(h, 0)
        self.c.orders += 1
        self.c.placed_size += shares
        self.metrics.orders.inc()
        self.metrics.placed_size.inc(shares)
        self.log.event(
            "order_placed",
            market=m.qm.market_id,
            side="BUY" if q.side == BUY else "SELL",
            outcome="YES" if q.outcome == YES else "NO",
            price=px,
            size=shares,
            order_hash=h,
            expiration=exp,
        )

    def _cancel(self, o: LiveOrder, reason: str) -> None:
        m = self.m
        assert m is not None
        if self.dry_run:
            m.live.pop(o.order_hash, None)
            return
        try:
            self.ex.cancel(o.order_hash, m.qm.market_id, o.side)
        except ExchangeError as e:
            if e.kind == "not_found":
                # filled, expired or already cancelled: the exchange is the truth; read back
                m.live.pop(o.order_hash, None)
                self.need_resync = True
                return
            self.need_resync = True
            self.log.event(
                "error",
                level="WARNING",
                kind="cancel_failed",
                reason=e.message[:160],
                order_hash=o.order_hash,
            )
            return
        m.live.pop(o.order_hash, None)
        self.c.cancels += 1
        self.metrics.cancels.inc()
        self.log.event(
            "order_cancelled", market=m.qm.market_id, order_hash=o.order_hash, reason=reason
        )

    def cancel_all(self, reason: str, market_id: str | None = None) -> bool:
        """Cancel every open order of ours in a market (default: the current one) and verify
        by reading back. Returns True when none is left."""
        mid = market_id or (self.m.qm.market_id if self.m else None)
        if mid is None or self.dry_run:
            if self.m:
                self.m.live.clear()
            return True
        try:
            self.ex.cancel_market(mid)
        except ExchangeError as e:
            self.log.event(
                "error",
                level="WARNING",
                kind="cancel_market_failed",
                reason=e.message[:160],
                market=mid,
            )
        left = self._read_open(mid)
        for o in left or []:
            with contextlib.suppress(ExchangeError):
                self.ex.cancel(o.order_hash, mid, o.side)
        if left:
            left = self._read_open(mid)
        if self.m and self.m.qm.market_id == mid:
            for h in list(self.m.live):
                self.c.cancels += 1
                self.metrics.cancels.inc()
                self.log.event("order_cancelled", market=mid, order_hash=h, reason=reason)
            self.m.live.clear()
            self.need_resync = True  # count fills that raced the cancels
        return left == []

    def _read_open(self, mid: str) -> list[OrderInfo] | None:
        try:
            return self.ex.orders(mid, "open")
        except ExchangeError as e:
            self.log.event(
                "error", level="WARNING", kind="read_orders_failed", reason=e.message[:160]
            )
            return None

    # -- fills, positions, PnL ------------------------------------------------------------------
    def sync_orders(self) -> None:
        """Read our orders on the current market back from the exchange (the truth): count
        new fills once per order hash, drop orders that are gone, adopt unknown open ones."""
        m = self.m
        if m is None or self.dry_run:
            return
        rows = self.ex.orders(m.qm.market_id, None)
        now = self.clock.now()
        seen_open: set[str] = set()
        for o in rows:
            h = o.order_hash
            counted = m.filled.get(h)
            if counted is None:
                # not ours in this run (e.g. left over from a crash): fills on it belong to the
                # position, which the positions poll reconciles; count from here on
                m.filled[h] = o.filled
                counted = o.filled
                m.meta[h] = (o.side, o.price)
            if o.filled > counted:
                self._on_fill(h, o.side, o.price, o.filled - counted)
                m.filled[h] = o.filled
            if o.status == "open":
                seen_open.add(h)
                lo = m.live.get(h)
                m.live[h] = LiveOrder(
                    h,
                    o.side,
                    o.outcome,
                    o.price,
                    o.size,
                    o.size - o.filled,
                    lo.placed_at if lo else now,
                )
        for h in list(m.live):
            if h not in seen_open:
                m.live.pop(h, None)
        with self.feed.lock:
            self.feed.cancelled.clear()
            self.feed.own_trade = False
        self.need_resync = False

    def _on_fill(self, h: str, side: int, price: int, size: int) -> None:
        m = self.m
        assert m is not None
        shares, px = size / SIZE_SCALE, price / PRICE_SCALE
        fee = shares * self.cfg.fee_bps / 10_000
        m.pnl.fill(side, px, shares, fee)
        self.c.fills += 1
        self.c.filled_size += shares
        self.metrics.fills.inc()
        self.metrics.filled_size.inc(shares)
        if self.c.placed_size:
            self.metrics.fill_ratio.set(self.c.filled_size / self.c.placed_size)
        self.log.event(
            "fill",
            market=m.qm.market_id,
            order_hash=h,
            side="BUY" if side == BUY else "SELL",
            price=px,
            size=shares,
            position=round(m.pnl.position, 6),
            avg_price=round(m.pnl.avg, 6),
            realized=round(m.pnl.realized, 6),
            fee=round(fee, 6),
        )

    def poll_positions(self) -> None:
        m = self.m
        if m is None or self.dry_run:
            return
        yes, no = self.ex.position(m.qm)
        changed = (yes, no) != (m.exch_yes, m.exch_no)
        m.exch_yes, m.exch_no = yes, no
        now = self.clock.now()
        with self.feed.lock:
            own_trade = self.feed.own_trade
        # Orders are read back when something happened (a position change, a trade of ours on
        # the stream, a doubt) and at least every orders_sync_s: a calm market costs one
        # positions read per period, not two reads.
        if changed or own_trade or self.need_resync or now >= m.next_orders_sync:
            self.sync_orders()
            m.next_orders_sync = now + self.cfg.orders_sync_s
        exch_inv = (yes - no) / SIZE_SCALE
        if abs(exch_inv - m.pnl.position) <= 1e-6:
            m.mismatch = None
            return
        # A fill between the positions read and the orders read shows in one and not the
        # other until the next round: only a mismatch seen twice in a row is real (fills
        # from before a restart, say). The exchange's position is the truth for inventory;
        # the difference is booked at fair value.
        if m.mismatch != exch_inv:
            m.mismatch = exch_inv
            return
        diff = exch_inv - m.pnl.position
        px = m.fair if m.fair is not None else 0.5
        self.log.event(
            "position_reconciled",
            level="WARNING",
            market=m.qm.market_id,
            exchange=exch_inv,
            tracked=m.pnl.position,
            booked_at=px,
        )
        m.pnl.fill(BUY if diff > 0 else SELL, px, abs(diff))
        m.mismatch = None

    def inventory(self) -> float:
        return self.m.pnl.position if self.m else 0.0

    def pnl_now(self) -> tuple[float, float]:
        """(realized over the run incl. settled markets, unrealized on the current market)."""
        if self.m is None:
            return self.realized_total, 0.0
        return self.realized_total + self.m.pnl.realized, self.m.pnl.unrealized(self.m.fair)

    # -- market lifecycle -----------------------------------------------------------------------
    def check_market(self) -> None:
        """Roll to the current quick market when it changed (poll, or the stream's hint)."""
        # a stream hint only says "poll now": the adapter's record carries what the hint
        # lacks (contract, settlement address), and a forged or stale hint changes nothing
        qm = self.ex.quick_market()
        if self.m is not None and qm.market_id.lower() == self.m.qm.market_id.lower():
            return
        if self.m is not None and qm.start < self.m.qm.start:
            return  # a stale hint
        self.rollover(qm)

    def rollover(self, qm: QuickMarket) -> None:
        old = self.m
        t0 = time.perf_counter()
        if old is not None:
            self.cancel_all("rollover", old.qm.market_id)
            with contextlib.suppress(ExchangeError):
                self.sync_orders()  # fills that landed before the end
            self.claims[old.qm.market_id] = old.qm.contract or old.qm.market_id
            self.settled[old.qm.market_id] = {"position": old.pnl.position, "avg": old.pnl.avg}
            self.realized_total += old.pnl.realized
            self.day_pnl += old.pnl.realized
            if self.stream is not None:
                self.stream.unsubscribe(old.qm.market_id)
            self.c.rollovers += 1
        self.m = MarketState(qm)
        if self.recorder is not None:
            self.recorder.market(qm)
        restored = getattr(self, "_restored", None)
        if restored is not None and restored[0] == qm.market_id:
            self.m.pnl = restored[1]  # restarted mid-market: carry the position on
            self.claims.pop(qm.market_id, None)
            self.settled.pop(qm.market_id, None)
        self._restored = None
        with self.feed.lock:
            self.feed.market_id = qm.market_id
            self.feed.book = Book()
        if self.stream is not None:
            self.stream.subscribe(qm.market_id)
        self._poll_book_if_needed(force=True)
        if old is not None:
            self.log.event(
                "rollover",
                old_market=old.qm.market_id,
                old_end=old.qm.end,
                new_market=qm.market_id,
                strike=qm.strike,
                end=qm.end,
                seconds=round(time.perf_counter() - t0, 3),
            )
        self.save_state()

    def _poll_book_if_needed(self, force: bool = False) -> None:
        """REST book when the stream is down (or at once after a rollover)."""
        with self.feed.lock:
            connected = self.feed.connected
        if self.m is None or (connected and not force):
            return
        try:
            book = self.ex.orderbook(self.m.qm.market_id, self.clock.now())
        except ExchangeError as e:
            self.log.event("error", level="WARNING", kind="book_poll_failed", reason=e.message)
            return
        if self.recorder is not None:
            self.recorder.book(self.m.qm.market_id, book)
        with self.feed.lock:
            if self.feed.market_id == self.m.qm.market_id and (force or not self.feed.connected):
                if book.ts >= self.feed.book.ts:
                    self.feed.book = book

    def do_claims(self) -> None:
        if not self.claims or self.dry_run:
            return
        pairs = list(self.claims.items())
        try:
            results = self.ex.claim(pairs, self.clock.now())
        except ExchangeError as e:
            if e.kind != "not_found":
                raise
            # one market the host does not know must not block the others: one at a time
            if len(pairs) == 1:
                results = [ClaimResult(pairs[0][0], pairs[0][1], "unknown")]
            else:
                results = self._claim_one_by_one(pairs)
        changed = False
        for r in results:
            if r.status == "unknown" or r.market_id in self.strikes:
                n = self.strikes.pop(r.market_id, 0) + 1 if r.status == "unknown" else 0
                if n >= 3:  # three rounds in a row: not a blip; stop asking
                    self.claims.pop(r.market_id, None)
                    self.settled.pop(r.market_id, None)
                    changed = True
                    self.log.event(
                        "claim_dropped",
                        level="WARNING",
                        market=r.market_id,
                        reason="unknown to the exchange (3 checks)",
                    )
                elif n:
                    self.strikes[r.market_id] = n
            if r.status in ("claimed", "lost"):
                self.claims.pop(r.market_id, None)
                settled = self._settle_pnl(self.settled.pop(r.market_id, None), r.yes_won)
                changed = True
                if r.status == "claimed":
                    self.c.claims += 1
                    self.c.claimed_usdc += r.amount / SIZE_SCALE
                    self.log.event(
                        "claim",
                        market=r.market_id,
                        amount=r.amount / SIZE_SCALE,
                        tx=r.tx,
                        settled_pnl=round(settled, 6),
                    )
                else:
                    self.log.event("claim_none", market=r.market_id, settled_pnl=round(settled, 6))
            elif r.status == "failed":
                self.log.event(
                    "error",
                    level="WARNING",
                    kind="claim_failed",
                    market=r.market_id,
                    reason=r.tx[:160],
                )
        if changed:
            self.save_state()

    def _claim_one_by_one(self, pairs: list[tuple[str, str]]) -> list[ClaimResult]:
        out: list[ClaimResult] = []
        for mid, contract in pairs:
            try:
                out += self.ex.claim([(mid, contract)], self.clock.now())
            except ExchangeError as e:
                if e.kind != "not_found":
                    raise
                out.append(ClaimResult(mid, contract, "unknown"))
        return out

    def _settle_pnl(self, rec: dict[str, Any] | None, yes_won: bool | None) -> float:
        """At resolution the signed position settles at 1 (YES won) or 0. Pairs of YES and NO
        held together were already netted in the position, so the payout itself is not PnL."""
        if not rec or yes_won is None:
            return 0.0
        pnl = PnL(position=float(rec.get("position", 0.0)), avg=float(rec.get("avg", 0.0)))
        v = pnl.settle(yes_won)
        self.realized_total += v
        self.day_pnl += v
        return v

    # -- safety ---------------------------------------------------------------------------------
    def fail_closed(self, reason: str) -> None:
        """Stop quoting and cancel everything; logged once per reason change."""
        changed = reason != self.closed_reason
        if changed:
            self.c.fail_closed += 1
            self.closed_since = self.clock.now()
            self.log.event(
                "fail_closed",
                level="WARNING",
                reason=reason,
                market=self.m.qm.market_id if self.m else None,
                feed_age=round(min(self.feed_age(), 1e9), 2),
            )
        self.quoting = False
        self.closed_reason = reason
        self.metrics.quoting.set(0)
        if self.m is not None and (changed or self.m.live):
            self.cancel_all(reason)

    def resume(self) -> None:
        if not self.quoting:
            if self.closed_reason not in (None, "starting"):
                self.log.event(
                    "resumed",
                    after=self.closed_reason,
                    closed_s=round(self.clock.now() - (self.closed_since or 0), 2),
                )
            self.quoting = True
            self.closed_reason = None
            self.metrics.quoting.set(1)

    def check_kill_switches(self, now: float) -> str | None:
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        if day != self.day:
            self.day, self.day_pnl, self.day_killed = day, 0.0, False
        m = self.m
        if m is None:
            return None
        mkt = m.pnl.realized + m.pnl.unrealized(m.fair)
        if not m.killed and mkt < -self.cfg.max_loss_per_market:
            m.killed = True
            self.log.event(
                "kill_switch",
                level="ERROR",
                scope="market",
                pnl=round(mkt, 4),
                market=m.qm.market_id,
            )
        if not self.day_killed and self.day_pnl + mkt < -self.cfg.max_loss_per_day:
            self.day_killed = True
            self.log.event(
                "kill_switch", level="ERROR", scope="day", pnl=round(self.day_pnl + mkt, 4)
            )
        if self.day_killed:
            return "day_loss_limit"
        if m.killed:
            return "market_loss_limit"
        return None

    # -- the quote step -------------------------------------------------------------------------
    def quote(self) -> None:
        m = self.m
        if m is None:
            return
        now = self.clock.now()
        self._poll_book_if_needed()
        if not self.feed_fresh():
            self.fail_closed("stale_feed")
            return
        killed = self.check_kill_switches(now)
        if killed:
            self.fail_closed(killed)
            return
        if now >= m.qm.end:
            self.due["rollover"] = 0.0  # T-minus already pulled the orders: roll
            return
        with self.feed.lock:
            dead = self.feed.cancelled & set(m.live)
        if dead or self.need_resync:
            self.sync_orders()
        book = self.book_excluding_own()
        left = m.qm.end - now
        m.fair = fair_value(book, self.asset_px, m.qm.strike, left, self.cfg)
        if m.fair is None:
            self.fail_closed("no_fair_value")
            return
        self.resume()
        desired = quotes(m.fair, m.pnl.position, book, left, self.cfg)
        tol = round(self.cfg.requote_tolerance * PRICE_SCALE)
        cancels, places = plan(desired, m.live.values(), tol, now, self.cfg.order_refresh_s)
        # cancel first: never more exposure on the book than the plan allows
        for o in cancels:
            self._cancel(o, "requote")
        for q in places:
            self._place(q, now)

    # -- the loop -------------------------------------------------------------------------------
    def _due(self, name: str, period: float, now: float) -> bool:
        if now >= self.due.get(name, 0.0):
            self.due[name] = now + period
            return True
        return False

    def _job(self, name: str, fn: Callable[[], None]) -> None:
        """Run a periodic job; an exception is logged with context and never kills the loop."""
        try:
            fn()
        except ExchangeError as e:
            self.c.errors += 1
            self.log.event(
                "error",
                level="WARNING",
                kind=e.kind,
                job=name,
                reason=e.message[:200],
                status=e.status,
            )
        except Exception as e:  # noqa: BLE001 -- fail closed, keep the loop alive
            self.c.errors += 1
            self.metrics.error("exception")
            self.log.event(
                "error",
                level="ERROR",
                kind="exception",
                job=name,
                error=f"{type(e).__name__}: {str(e)[:200]}",
            )
            if name == "quote":
                with contextlib.suppress(Exception):
                    self.fail_closed("exception")

    def startup(self) -> None:
        self.load_state()
        self.log.event(
            "start",
            address=getattr(self.ex, "address", ""),
            dry_run=self.dry_run,
            config={k: v for k, v in dataclasses.asdict(self.cfg).items()},
            pending_claims=len(self.claims),
        )
        self.ex.prepare()
        if not self.dry_run:
            self.cancel_leftovers()
        self.stream = self.ex.stream()
        handler = FeedHandler(
            self.feed,
            getattr(self.ex, "address", ""),
            self.cfg.asset,
            self.cfg.interval_min,
            self.log,
            self.recorder,
        )
        self.stream.start(handler)
        self.check_market()

    def cancel_leftovers(self) -> None:
        """Orders a previous run left behind (crash, kill -9) are cancelled before quoting."""
        try:
            left = self.ex.orders(None, "open")
        except ExchangeError as e:
            raise ExchangeError(
                e.kind, f"cannot read open orders at start: {e.message}", e.status
            ) from None
        markets = {o.market_id for o in left}
        for mid in markets:
            with contextlib.suppress(ExchangeError):
                self.ex.cancel_market(mid)
        rest = self.ex.orders(None, "open") if left else []
        for o in rest:
            with contextlib.suppress(ExchangeError):
                self.ex.cancel(o.order_hash, o.market_id, o.side)
        if left:
            self.log.event("leftovers_cancelled", count=len(left), markets=sorted(markets))

    def run(self, duration_s: float | None = None) -> None:
        """Main loop until stop(); cancels everything and saves state on the way out."""
        wall_end = time.monotonic() + duration_s if duration_s else None
        # Before anything that could cancel orders: a second instance on the same files stops
        # here, without touching the first one's orders.
        self._locks = [
            hold_file_lock(p) for p in (self.cfg.state_file, self.cfg.log_file) if p != "-"
        ]
        if self.fresh_state:  # --sim: a new simulated world; the last one's claims mean nothing
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.cfg.state_file)
        try:
            self.startup()
            while not self.stop_event.is_set():
                if wall_end is not None and time.monotonic() >= wall_end:
                    break
                self.step()
                self.clock.wait(self.feed.wake, self.cfg.tick_s)
                self.feed.wake.clear()
        finally:
            try:
                self.shutdown()
            finally:
                for fh in self._locks:  # the files are free for the next run
                    fh.close()

    def step(self) -> None:
        """One pass: settings reload, due jobs, then quoting, then the status line."""
        t0 = time.perf_counter()
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self.reload_params()
        now = self.clock.now()
        cfg = self.cfg
        with self.feed.lock:
            hint, self.feed.new_market = self.feed.new_market, None
            own_trade = self.feed.own_trade
        if hint is not None:
            self._job("rollover", self.check_market)
        if self._due("rollover", cfg.rollover_s, now) or (self.m and now >= self.m.qm.end):
            self._job("rollover", self.check_market)
        if cfg.fair_source in ("model", "blend") and self._due("price", cfg.price_s, now):
            self._job("price", self._read_price)
        if self._due("positions", cfg.positions_s, now) or own_trade:
            self._job("positions", self.poll_positions)
        if self._due("claims", cfg.claim_s, now):
            self._job("claims", self.do_claims)
        if self._due("pnl", cfg.pnl_snapshot_s, now) and self.c.ticks:
            self._job("pnl", self.pnl_snapshot)
        self._job("quote", self.quote)
        self.c.ticks += 1
        self.tick_times.append(time.perf_counter() - t0)
        del self.tick_times[:-1000]
        self.update_gauges()
        wall = time.monotonic()
        if cfg.status_every_s and wall - self.last_status >= cfg.status_every_s:
            self.last_status = wall
            print(self.status_line(), flush=True)

    def request_reload(self) -> None:
        """Called from the SIGHUP handler: only sets flags (signal-safe)."""
        self.reload_requested.set()
        self.feed.wake.set()

    def reload_params(self) -> None:
        """Re-read the settings; apply the tunable ones if all of them validate, log the diff,
        keep the old values on any error. Connection, files and schedule need a restart."""
        if self.reloader is None:
            return
        try:
            new = self.reloader()
        except ConfigError as e:
            self.log.event(
                "error",
                level="WARNING",
                kind="reload_invalid",
                reason=str(e),
                kept="previous settings",
            )
            return
        diff = {
            k: [getattr(self.cfg, k), getattr(new, k)]
            for k in TUNABLE
            if getattr(self.cfg, k) != getattr(new, k)
        }
        ignored = sorted(
            f.name
            for f in dataclasses.fields(Config)
            if f.name not in TUNABLE
            and getattr(self.cfg, f.name) != getattr(new, f.name)
            and f.name not in ("host", "rate_limit_per_s")
        )  # --sim rewrites these
        self.cfg = dataclasses.replace(self.cfg, **{k: v[1] for k, v in diff.items()})
        self.log.event("params_reloaded", changed=diff, needs_restart=ignored)

    def _read_price(self) -> None:
        self.asset_px = self.ex.asset_price()
        if self.recorder is not None and self.asset_px is not None:
            self.recorder.write("price", self.asset_px)

    def update_gauges(self) -> None:
        r, u = self.pnl_now()
        self.metrics.pnl_realized.set(r)
        self.metrics.pnl_unrealized.set(u)
        self.metrics.inventory.set(self.inventory())
        age = self.feed_age()
        self.metrics.feed_age.set(age if math.isfinite(age) else -1)

    def pnl_snapshot(self) -> None:
        r, u = self.pnl_now()
        placed = self.c.placed_size
        self.log.event(
            "pnl_snapshot",
            realized=round(r, 6),
            unrealized=round(u, 6),
            total=round(r + u, 6),
            inventory=self.inventory(),
            fees=round(self.m.pnl.fees if self.m else 0.0, 6),
            fills=self.c.fills,
            orders=self.c.orders,
            cancels=self.c.cancels,
            fill_rate=round(self.c.filled_size / placed, 6) if placed else 0.0,
            requests=self.metrics.requests_total,
            errors=dict(self.metrics.errors_by_kind),
            claimed_usdc=round(self.c.claimed_usdc, 6),
            fail_closed=self.c.fail_closed,
        )
        self.save_state()

    def status_line(self) -> str:
        m = self.m
        r, u = self.pnl_now()
        age = self.feed_age()
        if m is None:
            return f"[{self.cfg.bot_name}] no market yet"
        bid = next((o for o in m.live.values() if o.side == BUY), None)
        ask = next((o for o in m.live.values() if o.side == SELL), None)

        def fmt(o: LiveOrder | None) -> str:
            return f"{o.price / PRICE_SCALE:.3f}x{o.remaining / SIZE_SCALE:g}" if o else "-"

        state = "QUOTING" if self.quoting else f"CLOSED({self.closed_reason})"
        return (
            f"[{self.cfg.bot_name}] {m.qm.asset} {m.qm.market_id[:10]} "
            f"T-{max(0, m.qm.end - self.clock.now()):.0f}s "
            f"fair={m.fair if m.fair is not None else float('nan'):.3f} bid={fmt(bid)} "
            f"ask={fmt(ask)} inv={m.pnl.position:+g} pnl={r + u:+.2f} (r{r:+.2f} u{u:+.2f}) "
            f"feed={age if math.isfinite(age) else -1:.1f}s fills={self.c.fills} {state}"
        )

    def stop(self) -> None:
        self.stop_event.set()
        self.feed.wake.set()

    def shutdown(self) -> None:
        """Cancel every order, stop the stream, write state. Safe to call more than once."""
        if getattr(self, "_shut", False):
            return
        self._shut = True
        left_ok = True
        if not self.dry_run:
            try:
                if self.m is not None:
                    left_ok = self.cancel_all("shutdown")
                rest = self.ex.orders(None, "open")
                for o in rest:
                    with contextlib.suppress(ExchangeError):
                        self.ex.cancel(o.order_hash, o.market_id, o.side)
                left_ok = left_ok and not rest
            except Exception as e:  # noqa: BLE001 -- report, then still save state and exit
                left_ok = False
                self.log.event(
                    "error",
                    level="ERROR",
                    kind="shutdown_cancel",
                    error=f"{type(e).__name__}: {str(e)[:200]}",
                )
        if self.stream is not None:
            self.feed.closing = True
            self.stream.stop()
        if self.m is not None:
            self.claims.setdefault(self.m.qm.market_id, self.m.qm.contract or self.m.qm.market_id)
            self.settled.setdefault(
                self.m.qm.market_id, {"position": self.m.pnl.position, "avg": self.m.pnl.avg}
            )
        with contextlib.suppress(OSError):
            self.save_state()
        if self.recorder is not None:
            self.recorder.close()
        r, u = self.pnl_now()
        ticks = sorted(self.tick_times)
        self.orders_left_ok = left_ok
        self.log.event(
            "shutdown",
            orders_left_ok=left_ok,
            realized=round(r, 6),
            unrealized=round(u, 6),
            fills=self.c.fills,
            orders=self.c.orders,
            requests=self.metrics.requests_total,
            tick_p50_ms=round(ticks[len(ticks) // 2] * 1000, 3) if ticks else None,
        )


# =============================================================================================
# 6. TOOLS: the comparison report over JSON logs (`spike_bot.py report LOG [LOG ...]`) and
#    replay of a recording through the unchanged engine (`spike_bot.py replay FILE`).
#    Bad or truncated lines are counted and skipped.
# =============================================================================================
def read_events(path: str) -> tuple[list[dict[str, Any]], int]:
    """Events of one log file and the number of unreadable lines."""
    events, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                e = json.loads(line)
                if not isinstance(e, dict) or "event" not in e:
                    raise ValueError
                if "t" not in e:
                    e["t"] = datetime.fromisoformat(str(e["ts"]).replace("Z", "+00:00")).timestamp()
                float(e["t"])
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            events.append(e)
    return events, bad


def summarize(events: list[dict[str, Any]], bad_lines: int = 0) -> dict[str, Any]:
    """The comparison figures of one run (one log). Times are market time (`t`)."""
    if not events:
        return {"events": 0, "bad_lines": bad_lines}
    by: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by.setdefault(e["event"], []).append(e)
    t0, t1 = float(events[0]["t"]), float(events[-1]["t"])
    minutes = max((t1 - t0) / 60, 1e-9)
    closed = sum(float(e.get("closed_s", 0)) for e in by.get("resumed", []))
    # a fail-closed period still open at the end of the log counts up to the last event
    last_close = None
    for e in events:
        if e["event"] == "fail_closed":
            last_close = float(e["t"])
        elif e["event"] in ("resumed", "start"):
            last_close = None
    if last_close is not None:
        closed += t1 - last_close
    ends = {e["old_market"]: float(e["old_end"]) for e in by.get("rollover", []) if "old_end" in e}
    fills = by.get("fill", [])
    placed = sum(float(e.get("size", 0)) for e in by.get("order_placed", []))
    filled = sum(float(e.get("size", 0)) for e in fills)
    finals = [e for e in events if e["event"] in ("shutdown", "pnl_snapshot")]
    requests_ = sum(int(e.get("requests", 0)) for e in by.get("shutdown", [])) or (
        int(finals[-1].get("requests", 0)) if finals else 0
    )
    markets = len(by.get("rollover", [])) + 1
    errors: dict[str, int] = {}
    for e in by.get("error", []):
        errors[str(e.get("kind", "?"))] = errors.get(str(e.get("kind", "?")), 0) + 1
    roll = [float(e["t"]) - float(e["old_end"]) for e in by.get("rollover", []) if "old_end" in e]
    claim_lat = [
        float(e["t"]) - ends[e["market"]] for e in by.get("claim", []) if e.get("market") in ends
    ]
    return {
        "bot": events[0].get("bot", "?"),
        "events": len(events),
        "bad_lines": bad_lines,
        "starts": len(by.get("start", [])),
        "run_minutes": round(minutes, 1),
        "uptime_quoting": round(max(0.0, 1 - closed / (minutes * 60)), 4),
        "orders_placed": len(by.get("order_placed", [])),
        "orders_cancelled": len(by.get("order_cancelled", [])),
        "orders_rejected": len(by.get("order_rejected", [])),
        "requests_per_min": round(requests_ / minutes, 1),
        "fills": len(fills),
        "fill_rate_size": round(filled / placed, 5) if placed else 0.0,
        "fill_rate_count": round(len(fills) / len(by["order_placed"]), 5)
        if by.get("order_placed")
        else 0.0,
        "markets": markets,
        "fills_per_market": round(len(fills) / markets, 3),
        "realized_pnl": round(float(finals[-1].get("realized", 0.0)), 4) if finals else 0.0,
        "unrealized_pnl": round(float(finals[-1].get("unrealized", 0.0)), 4) if finals else 0.0,
        "fees": round(sum(float(e.get("fee", 0.0)) for e in fills), 6),
        "max_inventory": max([abs(float(e.get("position", 0))) for e in fills] or [0.0]),
        "claims": len(by.get("claim", [])),
        "claimed_usdc": round(sum(float(e.get("amount", 0)) for e in by.get("claim", [])), 4),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "fail_closed": len(by.get("fail_closed", [])),
        "fail_closed_s": round(closed, 1),
        "reconnects": sum(
            1 for e in by.get("stream_disconnected", []) if e.get("level") == "WARNING"
        ),
        "rollover_latency_s": round(sum(roll) / len(roll), 2) if roll else None,
        "claim_latency_s": round(sum(claim_lat) / len(claim_lat), 1) if claim_lat else None,
    }


def report(paths: list[str], plot_dir: str | None = None, out: Any = None) -> list[dict[str, Any]]:
    """Print a side-by-side table of the runs in `paths`; optionally write PNG charts."""
    out = out or sys.stdout
    runs = []
    for p in paths:
        events, bad = read_events(p)
        runs.append({"log": os.path.basename(p), **summarize(events, bad), "_events": events})
    keys = [k for k in runs[0] if not k.startswith("_") and k != "log"] if runs else []
    width = max([24] + [len(r["log"]) + 2 for r in runs])
    print(f"{'':26}" + "".join(f"{r['log']:>{width}}" for r in runs), file=out)
    for k in keys:
        cells = []
        for r in runs:
            v = r.get(k)
            if isinstance(v, dict):
                v = ",".join(f"{a}:{b}" for a, b in sorted(v.items())) or "-"
            cells.append(f"{'-' if v is None else v!s:>{width}}")
        print(f"{k:26}" + "".join(cells), file=out)
    if plot_dir:
        write_plots(runs, plot_dir, out)
    return runs


def write_plots(runs: list[dict[str, Any]], plot_dir: str, out: Any) -> list[str]:
    """Cumulative PnL, inventory, fill rate per hour and errors per hour (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install matplotlib)", file=out)
        return []
    os.makedirs(plot_dir, exist_ok=True)
    written = []

    def series(r: dict[str, Any], event: str, key: str) -> tuple[list[float], list[float]]:
        ev = [e for e in r["_events"] if e["event"] == event and key in e]
        t0 = float(r["_events"][0]["t"]) if r["_events"] else 0.0
        return [(float(e["t"]) - t0) / 3600 for e in ev], [float(e[key]) for e in ev]

    def hourly(r: dict[str, Any], pred: Callable[[dict[str, Any]], float]) -> dict[int, float]:
        t0 = float(r["_events"][0]["t"]) if r["_events"] else 0.0
        h: dict[int, float] = {}
        for e in r["_events"]:
            k = int((float(e["t"]) - t0) // 3600)
            h[k] = h.get(k, 0.0) + pred(e)
        return h

    charts = {
        "pnl.png": (
            "cumulative realized PnL (USDC)",
            lambda r: (
                series(r, "pnl_snapshot", "realized")
                if any(e["event"] == "pnl_snapshot" for e in r["_events"])
                else series(r, "fill", "realized")
            ),
        ),
        "inventory.png": (
            "inventory after each fill (shares)",
            lambda r: series(r, "fill", "position"),
        ),
    }
    for name, (title, fn) in charts.items():
        fig, ax = plt.subplots(figsize=(8, 3.5))
        for r in runs:
            xs, ys = fn(r)
            ax.step(xs, ys, where="post", label=f"{r.get('bot')} ({r['log']})")
        ax.set_title(title)
        ax.set_xlabel("hours")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(plot_dir, name)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    for name, title, pred in (
        ("fill_rate_per_hour.png", "fills per hour", lambda e: e["event"] == "fill"),
        ("errors_per_hour.png", "error events per hour", lambda e: e["event"] == "error"),
    ):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        for i, r in enumerate(runs):
            h = hourly(r, lambda e, p=pred: 1.0 if p(e) else 0.0)
            ks = sorted(h)
            ax.bar(
                [k + 0.8 * i / max(1, len(runs)) for k in ks],
                [h[k] for k in ks],
                width=0.8 / max(1, len(runs)),
                label=f"{r.get('bot')} ({r['log']})",
            )
        ax.set_title(title)
        ax.set_xlabel("hour")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(plot_dir, name)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    print("charts: " + ", ".join(written), file=out)
    return written


# -- preflight: is this machine, wallet and config ready for a live run? -----------------------
@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warn: bool = False

    def line(self) -> str:
        verdict = "PASS" if self.ok and not self.warn else ("WARN" if self.ok else "FAIL")
        return f"{verdict:4} {self.name:12} {self.detail}" + (f" -> {self.fix}" if self.fix else "")


def preflight(
    cfg: Config, sec: Secrets, env_file: str, record: str | None = None, register: bool = True
) -> list[Check]:
    """Every check a 24-hour live run depends on, each with a verdict and what to do."""
    import email.utils

    out: list[Check] = []
    signer = None
    if not sec.private_key:
        out.append(Check("key", False, f"no {ENV_PRIVATE_KEY} in {env_file}", HOW_TO_KEY))
    else:
        try:
            signer = Signer(sec.private_key, cfg.chain_id)
            out.append(Check("key", True, f"address {signer.address}"))
        except ConfigError as e:
            out.append(Check("key", False, str(e), f"fix {ENV_PRIVATE_KEY} in {env_file}"))
    ex = TurbineExchange(cfg, signer, None)
    try:
        t0 = time.perf_counter()
        r = ex.session.get(cfg.host + "/health", timeout=cfg.http_timeout_s)
        ms = (time.perf_counter() - t0) * 1000
        if r.status_code >= 400:
            raise requests.RequestException(f"HTTP {r.status_code}")
        out.append(Check("host", True, f"{cfg.host} answers in {ms:.0f} ms"))
    except requests.RequestException as e:
        out.append(
            Check(
                "host",
                False,
                f"{cfg.host} unreachable ({type(e).__name__})",
                "check --host / TURBINE_HOST and the network",
            )
        )
        return out  # nothing else can be checked
    server = (
        email.utils.parsedate_to_datetime(r.headers["Date"]).timestamp()
        if "Date" in r.headers
        else None
    )
    if server is None:
        out.append(Check("clock", True, "the server sends no Date header", warn=True))
    else:
        skew = time.time() - server
        ok = abs(skew) < 120  # bearer tokens are valid +-300 s: keep a wide margin
        out.append(
            Check(
                "clock",
                ok,
                f"local clock {skew:+.0f} s from the server's",
                "" if ok else "sync the clock (chrony / systemd-timesyncd)",
                warn=ok and abs(skew) > 30,
            )
        )
    if signer is not None:
        kid, secret = sec.api_key_id, sec.api_private_key
        if not (kid and secret) and register:
            try:
                kid, secret = ex.register_api_key()
                save_api_credentials(env_file, kid, secret)
                out.append(Check("credentials", True, f"registered and saved to {env_file}"))
            except (ConfigError, ExchangeError) as e:
                out.append(Check("credentials", False, str(e)[:160], "see README 'Running live'"))
                kid = secret = ""
        if kid and secret:
            try:
                ex.auth = BearerAuth(kid, secret)
                open_orders = ex.orders(None, "open")
                if not any(c.name == "credentials" for c in out):
                    out.append(Check("credentials", True, f"authenticated read ok ({kid})"))
                out.append(
                    Check(
                        "wallet",
                        True,
                        "no open orders"
                        if not open_orders
                        else f"{len(open_orders)} open orders: another bot may be using "
                        "this wallet (one wallet per bot)",
                        warn=bool(open_orders),
                    )
                )
            except (ConfigError, ExchangeError) as e:
                out.append(
                    Check(
                        "credentials",
                        False,
                        f"rejected: {str(e)[:120]}",
                        f"restore {ENV_API_KEY_ID}/{ENV_API_PRIVATE_KEY} in {env_file}",
                    )
                )
    try:
        qm = ex.quick_market()
        book = ex.orderbook(qm.market_id, time.time())
        default = CHAINS[cfg.chain_id]["settlement"]
        same = qm.settlement.lower() == default.lower()
        out.append(
            Check(
                "contracts",
                same,
                f"chain {cfg.chain_id} settlement {qm.settlement}",
                ""
                if same
                else f"the market's settlement differs from {default}: wrong --chain-id?",
            )
        )
        left = qm.end - time.time()
        out.append(
            Check(
                "market",
                True,
                f"{cfg.asset} {cfg.interval_min}m {qm.market_id[:12]}"
                f" ends in {left:.0f} s; book {len(book.bids)} bids / "
                f"{len(book.asks)} asks",
            )
        )
    except ExchangeError as e:
        out.append(
            Check(
                "market",
                False,
                f"quick market or book unreadable: {e}",
                "check --asset / --interval-min",
            )
        )
    if signer is not None:
        try:
            balance, allowance = ex.balances()
            # the most one market can tie up (a full position plus both quotes), plus the
            # day's loss limit: what a day of quoting needs at once
            need = (cfg.max_position + 2 * cfg.order_size) * 1.01 + cfg.max_loss_per_day
            ok = balance / 1e6 >= need
            out.append(
                Check(
                    "balance",
                    ok,
                    f"{balance / 1e6:.2f} USDC (a day needs ~{need:.0f})",
                    "" if ok else "fund the wallet or lower max_position/order_size",
                )
            )
            if cfg.permit_mode == "max":
                ok = allowance >= 2**255 or allowance / 1e6 >= need
                out.append(
                    Check(
                        "allowance",
                        ok,
                        f"standing allowance {allowance / 1e6:.2f}",
                        ""
                        if ok
                        else "start the bot once with --permit-mode max (it "
                        "signs the one-time permit) or use per_order",
                    )
                )
            else:
                out.append(
                    Check("allowance", True, "per-order permits (no standing allowance needed)")
                )
        except ExchangeError as e:
            out.append(Check("balance", False, f"balances unreadable: {e}", ""))
    for label, path in (
        ("log file", cfg.log_file),
        ("state file", cfg.state_file),
        ("record file", record),
    ):
        if not path or path == "-":
            continue
        d = os.path.dirname(os.path.abspath(path))
        if not os.access(d, os.W_OK):
            out.append(Check(label, False, f"{path}: directory not writable", "choose another"))
        elif not file_lock_free(path):
            out.append(
                Check(
                    label,
                    False,
                    f"{path} is in use by another running bot",
                    "give each bot its own --log-file and --state-file",
                )
            )
        else:
            out.append(Check(label, True, f"{path} writable, not in use"))
    return out


def preflight_cli(argv: list[str], base: Config | None = None) -> int:
    ap = build_parser(base)
    ap.prog += " preflight"
    a = ap.parse_args(argv)
    try:
        environ = {**read_env_file(a.env_file), **os.environ}
        cfg, sec = load_config(vars(a), environ, base)
    except ConfigError as e:
        print(f"FAIL config       {e}")
        return 2
    checks = preflight(cfg, sec, a.env_file, a.record)
    for c in checks:
        print(c.line())
    bad = [c for c in checks if not c.ok]
    print(f"preflight: {'all checks pass' if not bad else f'{len(bad)} check(s) failed'}")
    return 0 if not bad else 1


# -- replay: the engine, unchanged, over a recording -------------------------------------------
class ReplayClock:
    """Market time set by the replay driver."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def wait(self, event: threading.Event | None, seconds: float) -> bool:
        return False  # the driver calls step() itself


class ReplayStream:
    """The driver pushes recorded messages into the handler the engine registered."""

    connected = True

    def __init__(self) -> None:
        self.handler: StreamHandler | None = None

    def start(self, handler: StreamHandler) -> None:
        self.handler = handler
        handler.on_status(True)

    def subscribe(self, market_id: str) -> None:
        return None

    def unsubscribe(self, market_id: str) -> None:
        return None

    def stop(self) -> None:
        return None


@dataclass
class _ReplayOrder:
    h: str
    market_id: str
    side: int
    outcome: int
    price: int
    size: int
    filled: int = 0
    status: str = "open"


class ReplayExchange:
    """The Exchange interface over a recording, with a fill model: a resting quote fills (at
    its own price, as a maker) when a recorded trade prints at or through it, or when the
    recorded opposite best reaches it; each trade's size is used once."""

    address = "0x" + "00" * 19 + "01"

    def __init__(self, cfg: Config, clock: ReplayClock) -> None:
        self.cfg = cfg
        self.clock = clock
        self.policy = CallPolicy(cfg)
        self.gate = OrderGate(cfg, None)
        self.markets: list[QuickMarket] = []
        self.prices: list[tuple[float, float]] = []
        self.books: dict[str, Book] = {}
        self.orders_: dict[str, _ReplayOrder] = {}
        self.pos: dict[str, list[int]] = {}
        self._stream = ReplayStream()
        self._seq = 0

    # recorded inputs
    def quick_market(self) -> QuickMarket:
        now = self.clock.now()
        live = [m for m in self.markets if m.start <= now] or self.markets[:1]
        if not live:
            raise ExchangeError("not_found", "the recording holds no market yet")
        return live[-1]

    def asset_price(self) -> float | None:
        now = self.clock.now()
        past = [p for t, p in self.prices if t <= now]
        return past[-1] if past else None

    def orderbook(self, market_id: str, now: float) -> Book:
        b = self.books.get(market_id, Book())
        return Book(b.bids, b.asks, now)

    def stream(self) -> ReplayStream:
        return self._stream

    def prepare(self) -> None:
        return None

    # orders
    def place(
        self,
        market: QuickMarket,
        side: int,
        outcome: int,
        price: int,
        size: int,
        expiration: int,
        now: float,
    ) -> str:
        self.gate.check()
        if now >= market.end:
            raise ExchangeError("rejected", "market is closed")
        self._seq += 1
        h = f"0xreplay{self._seq:08d}"
        self.orders_[h] = _ReplayOrder(h, market.market_id, side, outcome, price, size)
        return h

    def cancel(self, order_hash: str, market_id: str, side: int) -> None:
        o = self.orders_.get(order_hash)
        if o is None or o.status != "open":
            raise ExchangeError("not_found", "order not found", 404)
        o.status = "cancelled"

    def cancel_market(self, market_id: str) -> None:
        for o in self.orders_.values():
            if o.market_id == market_id and o.status == "open":
                o.status = "cancelled"

    def orders(self, market_id: str | None, status: str | None) -> list[OrderInfo]:
        return [
            OrderInfo(o.h, o.market_id, o.side, o.outcome, o.price, o.size, o.filled, o.status)
            for o in self.orders_.values()
            if (market_id is None or o.market_id == market_id)
            and (status is None or o.status == status)
        ]

    def position(self, market: QuickMarket) -> tuple[int, int]:
        yes, no = self.pos.get(market.market_id, [0, 0])
        return yes, no

    def claim(self, markets: list[tuple[str, str]], now: float) -> list[ClaimResult]:
        out = []
        for mid, contract in markets:
            m = next((x for x in self.markets if x.market_id == mid), None)
            px = [p for t, p in self.prices if m is not None and t <= m.end]
            if m is None or now < m.end + 30 or not px:
                out.append(ClaimResult(mid, contract, "pending"))
                continue
            yes_won = px[-1] > m.strike
            yes, no = self.pos.pop(mid, [0, 0])
            paid = yes if yes_won else no
            out.append(
                ClaimResult(mid, contract, "claimed" if paid else "lost", paid, "replay", yes_won)
            )
        return out

    # the fill model
    def _fill(self, o: _ReplayOrder, qty: int) -> None:
        o.filled += qty
        if o.filled >= o.size:
            o.status = "filled"
        p = self.pos.setdefault(o.market_id, [0, 0])
        if o.side == BUY:
            p[0] += qty
        else:  # a SELL of YES not held is a split: NO shares remain
            short = max(0, qty - p[0])
            p[0] += short - qty
            p[1] += short

    def on_trade(self, market_id: str, price: int, size: int) -> None:
        left = size
        for o in self.orders_.values():
            if left <= 0:
                break
            if o.market_id != market_id or o.status != "open":
                continue
            if (o.side == BUY and price <= o.price) or (o.side == SELL and price >= o.price):
                q = min(left, o.size - o.filled)
                self._fill(o, q)
                left -= q

    def on_book(self, market_id: str, book: Book) -> None:
        self.books[market_id] = book
        for o in self.orders_.values():
            if o.market_id != market_id or o.status != "open":
                continue
            if o.side == BUY and book.asks and book.asks[0][0] <= o.price:
                self._fill(o, min(book.asks[0][1], o.size - o.filled))
            elif o.side == SELL and book.bids and book.bids[0][0] >= o.price:
                self._fill(o, min(book.bids[0][1], o.size - o.filled))


def read_recording(path: str) -> list[dict[str, Any]]:
    """A recording and its rotated parts (FILE.N ... FILE.1, FILE), in time order."""
    parts = sorted(
        (
            p
            for p in os.listdir(os.path.dirname(os.path.abspath(path)))
            if p.startswith(os.path.basename(path) + ".") and p.rsplit(".", 1)[-1].isdigit()
        ),
        key=lambda p: -int(p.rsplit(".", 1)[-1]),
    )
    recs = []
    for p in [*(os.path.join(os.path.dirname(os.path.abspath(path)), x) for x in parts), path]:
        with open(p, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    r = json.loads(line)
                    float(r["r"])
                    if r["k"] in ("book", "trade", "price", "market"):
                        recs.append(r)
                except (ValueError, KeyError, TypeError):
                    continue
    recs.sort(key=lambda r: float(r["r"]))
    return recs


def replay_run(recs: list[dict[str, Any]], cfg: Config, log_path: str) -> dict[str, Any]:
    """Run the engine over a recording: the driver sets the clock to each recorded receive
    time, feeds the message through the same handler the stream thread uses, and steps the
    engine on the tick and whenever the handler asks to be woken, exactly as live."""
    if not recs:
        raise ConfigError("the recording is empty")
    clock = ReplayClock(float(recs[0]["r"]))
    ex = ReplayExchange(cfg, clock)
    for r in recs:
        if r["k"] == "market":
            ex.markets.append(QuickMarket(**r["d"]))
        elif r["k"] == "price":
            ex.prices.append((float(r["r"]), float(r["d"])))
    if not ex.markets:
        raise ConfigError("the recording holds no quick market")
    ex.markets.sort(key=lambda m: m.start)
    metrics = Metrics(cfg.bot_name)
    log = EventLog(log_path, cfg.bot_name)
    bot = Bot(cfg, ex, clock, log, metrics)
    with contextlib.suppress(OSError):
        os.unlink(cfg.state_file)
    bot.startup()
    handler = ex.stream().handler
    assert handler is not None
    next_tick = clock.t
    for r in recs:
        t = float(r["r"])
        while next_tick <= t:
            clock.t = next_tick
            bot.step()
            next_tick += cfg.tick_s
        clock.t = t
        d = r["d"]
        if r["k"] == "book":
            book = Book(tuple(map(tuple, d["b"])), tuple(map(tuple, d["a"])), t)
            ex.on_book(d["m"], book)
            handler.on_book(d["m"], book)
        elif r["k"] == "trade":
            ex.on_trade(str(d.get("marketId", "")), int(d.get("price", 0)), int(d.get("size", 0)))
            handler.on_trade(str(d.get("marketId", "")), d)
        if bot.feed.wake.is_set():
            bot.feed.wake.clear()
            bot.step()
    # let the last market resolve and be claimed
    for _ in range(int((cfg.claim_s + 60) / cfg.tick_s) + 1):
        clock.t += cfg.tick_s
        bot.step()
    bot.shutdown()
    log.close()
    return summarize(*read_events(log_path))


def parse_assignments(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"expected key=value, got {it!r}")
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def replay_cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="spike_bot.py replay", description="Run the strategy over a recording (--record)."
    )
    ap.add_argument("file", help="a recording made with --record")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for every run (repeat)",
    )
    ap.add_argument("--grid", metavar="KEY=V1,V2,...", help="one run per value of a setting")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        fixed = parse_assignments(a.set)
        names = {f.name for f in dataclasses.fields(Config)}
        grid: list[dict[str, str]] = [{}]
        if a.grid:
            k, _, vals = a.grid.partition("=")
            grid = [{k.strip().replace("-", "_"): v} for v in vals.split(",") if v.strip()]
        for key in {*fixed, *(k for g in grid for k in g)}:
            if key not in names:
                raise ConfigError(f"unknown setting {key!r}")
        if not os.path.isfile(a.file):
            raise ConfigError(f"no such recording: {a.file}")
        recs = read_recording(a.file)
        tmp = tempfile.mkdtemp(prefix="replay-")
        runs = []
        for i, g in enumerate(grid):
            label = ",".join(f"{k}={v}" for k, v in {**fixed, **g}.items()) or "defaults"
            cfg, _ = load_config({**fixed, **g}, {})
            cfg = dataclasses.replace(
                cfg,
                bot_name=f"replay[{label}]",
                status_every_s=0,
                state_file=os.path.join(tmp, f"state{i}.json"),
            )
            log_path = os.path.join(tmp, f"replay{i}.log")
            replay_run(recs, cfg, log_path)
            runs.append(log_path)
    except ConfigError as e:
        print(f"replay: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps([summarize(*read_events(p)) for p in runs]))
    else:
        report(runs)
    return 0


# =============================================================================================
# 7. CLI: flags (one per setting), modes, signals, main().
# =============================================================================================
def build_parser(base: Config | None = None) -> argparse.ArgumentParser:
    defaults = base or Config()
    ap = argparse.ArgumentParser(
        prog=f"{defaults.bot_name}.py",
        description="Turbine BTC quick-market maker.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--env-file",
        default=".env",
        help="where the key is read and registered API credentials are saved",
    )
    ap.add_argument(
        "--sim",
        action="store_true",
        help="run against an in-process turbine_sim with a generated key",
    )
    ap.add_argument("--speed", type=float, default=60.0, help="--sim: simulated s per real s")
    ap.add_argument("--seed", type=int, default=7, help="--sim: simulator seed")
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="read the live API and log the quotes it would place; sign nothing",
    )
    ap.add_argument(
        "--record",
        metavar="FILE",
        default=None,
        help="append every book, trade, price and market received to FILE (JSON lines, "
        "rotated at 50 MB) for `spike_bot.py replay FILE`",
    )
    ap.add_argument(
        "--duration",
        type=parse_duration,
        default=None,
        help="stop cleanly after this much wall time: seconds, or 90m, 24h (orders cancelled)",
    )
    g = ap.add_argument_group("settings (also .env: SPIKE_<NAME>)")
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        g.add_argument(
            flag,
            dest=f.name,
            default=None,
            metavar=f.type.upper() if isinstance(f.type, str) else "X",
            help=f"{f.metadata['help']} (default: {getattr(defaults, f.name)}; env {env_name(f)})",
        )
    return ap


def parse_duration(text: str) -> float:
    """Seconds from '3600', '90m', '24h' or '45s' (argparse type)."""
    t = text.strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(t[-1:], None)
    try:
        v = float(t[:-1]) * mult if mult else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (e.g. 3600, 90m, 24h)") from None
    if v <= 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError("--duration must be > 0")
    return v


def read_env_file(path: str) -> dict[str, str]:
    from dotenv import dotenv_values

    if not os.path.exists(path):
        return {}
    try:
        return {k: v for k, v in dotenv_values(path).items() if v is not None}
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read env file {path}: {type(e).__name__}") from None


def save_api_credentials(path: str, key_id: str, secret: str) -> None:
    """Add the credentials to the env file, keeping every other line (python-dotenv)."""
    from dotenv import set_key

    if not os.path.exists(path):
        with open(path, "a", encoding="utf-8"):
            pass
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
    set_key(path, ENV_API_KEY_ID, key_id, quote_mode="never")
    set_key(path, ENV_API_PRIVATE_KEY, secret, quote_mode="never")


HOW_TO_KEY = (
    f"live mode needs {ENV_PRIVATE_KEY} (a dedicated wallet's hex private key) in the "
    "env file; API credentials are then registered on first run and saved there. "
    "Try --sim or --dry-run first."
)


# An exchange factory builds the adapter from a key and API credentials (all None in --dry-run);
# official_spike_bot passes its own. Registration, saving to .env and --sim live here, once.
ExchangeFactory = Callable[[Config, "str | None", "str | None", "str | None", Metrics], Any]


def spike_exchange(
    cfg: Config, key: str | None, kid: str | None, secret: str | None, metrics: Metrics
) -> TurbineExchange:
    signer = Signer(key, cfg.chain_id) if key else None
    auth = BearerAuth(kid, secret) if kid and secret else None
    return TurbineExchange(cfg, signer, auth, metrics)


def live_credentials(cfg: Config, sec: Secrets, env_file: str) -> tuple[str, str]:
    """The saved API credentials, or new ones registered now and saved to the env file."""
    if sec.api_key_id and sec.api_private_key:
        BearerAuth(sec.api_key_id, sec.api_private_key)  # validate the format early
        return sec.api_key_id, sec.api_private_key
    signer = Signer(sec.private_key, cfg.chain_id)
    kid, secret = TurbineExchange(cfg, signer, None).register_api_key()
    save_api_credentials(env_file, kid, secret)
    print(f"registered API credentials for {signer.address}; saved to {env_file}", flush=True)
    return kid, secret


def start_sim(cfg: Config, speed: float, seed: int) -> tuple[Any, str, str, str]:
    """--sim: turbine_sim in-process, a fresh key, credentials registered through the API."""
    import turbine_sim

    sim = turbine_sim.start_sim(
        turbine_sim.SimConfig(
            speed=speed, seed=seed, intervals=(cfg.interval_min,), assets=(cfg.asset,)
        )
    )
    cfg.host = sim.base_url
    cfg.rate_limit_per_s *= max(1.0, speed)  # the pacer guards real seconds
    key = "0x" + secrets.token_bytes(32).hex()
    kid, secret = TurbineExchange(cfg, Signer(key, cfg.chain_id), None).register_api_key()
    return sim, key, kid, secret


def run_cli(
    argv: list[str] | None, factory: ExchangeFactory = spike_exchange, base: Config | None = None
) -> int:
    """Parse, validate, build the exchange (live, --dry-run or --sim), run, exit code."""
    a = build_parser(base).parse_args(argv)
    name = (base or Config()).bot_name
    sim = None
    try:
        environ = {**read_env_file(a.env_file), **os.environ}
        if a.sim:  # a simulated run never shares the live run's default log and state files
            b = base or Config()
            base = dataclasses.replace(
                b,
                log_file=b.log_file.replace(".log", ".sim.log"),
                state_file=b.state_file.replace(".json", ".sim.json"),
            )
        cfg, sec = load_config(vars(a), environ, base)
        if a.speed <= 0:
            raise ConfigError("--speed must be > 0")
        if a.duration is not None and a.duration <= 0:
            raise ConfigError("--duration must be > 0")
        metrics = Metrics(cfg.bot_name, cfg.metrics_port)
        clock: Clock = SystemClock()
        if a.sim:
            sim, key, kid, secret = start_sim(cfg, a.speed, a.seed)
            clock = sim.clock
            print(f"simulator on {cfg.host} (speed {a.speed:g}x, seed {a.seed})", flush=True)
            ex = factory(cfg, key, kid, secret, metrics)
        elif a.dry_run:
            ex = factory(cfg, None, None, None, metrics)
        else:
            if not sec.private_key:
                raise ConfigError(HOW_TO_KEY)
            Signer(sec.private_key, cfg.chain_id)  # validate before any I/O
            kid, secret = live_credentials(cfg, sec, a.env_file)
            ex = factory(cfg, sec.private_key, kid, secret, metrics)
        log = EventLog(cfg.log_file, cfg.bot_name, echo=lambda s: print(s, flush=True))
        bot = Bot(cfg, ex, clock, log, metrics, dry_run=a.dry_run)
        bot.fresh_state = a.sim
        if a.record:
            bot.recorder = Recorder(a.record, clock.now)
    except (ConfigError, ExchangeError) as e:
        kind = "config error" if isinstance(e, ConfigError) else "cannot start"
        print(f"{name}: {kind}: {e}", file=sys.stderr)
        if sim is not None:
            sim.stop()
        return 2 if isinstance(e, ConfigError) else 1

    def on_signal(signum: int, _frame: Any) -> None:
        bot.stop()  # the loop notices, cancels everything, saves state

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    # SIGHUP: re-read the env file (flags still win) and apply the strategy settings
    bot.reloader = lambda: load_config(vars(a), {**read_env_file(a.env_file), **os.environ}, base)[
        0
    ]
    signal.signal(signal.SIGHUP, lambda _s, _f: bot.request_reload())
    code = 0
    try:
        bot.run(a.duration)
        if not getattr(bot, "orders_left_ok", True):
            print(
                f"{name}: could not confirm every order cancelled; they expire within "
                f"{cfg.order_refresh_s + cfg.expiry_grace_s:.0f} s",
                file=sys.stderr,
            )
            code = 1
    except (ConfigError, ExchangeError) as e:
        print(f"{name}: stopped: {e}", file=sys.stderr)
        code = 2 if isinstance(e, ConfigError) else 1
    finally:
        log.close()
        if sim is not None:
            sim.stop()
    return code


def report_cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="spike_bot.py report", description="Side-by-side comparison of runs from JSON logs."
    )
    ap.add_argument("logs", nargs="+", help="JSON log files (either bot)")
    ap.add_argument("--plot", metavar="DIR", help="also write PNG charts here (matplotlib)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead")
    a = ap.parse_args(argv)
    missing = [p for p in a.logs if not os.path.isfile(p)]
    if missing:
        print(f"report: no such log file: {missing[0]}", file=sys.stderr)
        return 2
    if a.json:
        runs = [summarize(*read_events(p)) for p in a.logs]
        print(json.dumps(runs))
        return 0
    report(a.logs, a.plot)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "report":
        return report_cli(args[1:])
    if args and args[0] == "replay":
        return replay_cli(args[1:])
    if args and args[0] == "preflight":
        return preflight_cli(args[1:])
    if args and args[0] == "run":
        args = args[1:]
    return run_cli(args)


if __name__ == "__main__":
    raise SystemExit(main())
