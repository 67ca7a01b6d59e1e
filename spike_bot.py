#!/usr/bin/env python3
"""spike_bot: a market maker for Turbine's BTC 15-minute quick markets, in one threaded file.

    python spike_bot.py --sim --speed 60      # the whole bot on a local simulator, no keys
    python spike_bot.py --sim --markets BTC:15,BTC:60,ETH:15   # several markets, one process
    python spike_bot.py --dry-run             # live reads, logs the quotes it would place
    python spike_bot.py                       # live: needs TURBINE_PRIVATE_KEY in .env

Sections, in dependency order (search for the banner):
    1. CONFIG      every parameter, its default, its .env name and flag, validation
    2. PROTOCOL    enums and scales, EIP-712 orders, EIP-2612 permits, redemptions, bearer tokens
    3. EXCHANGE    the Exchange interface, HTTP policy (pacer, retries, error classes, firewall),
                   TurbineExchange (requests) and TurbineStream (websocket-client)
    4. STRATEGY    pure functions: fair value, extremes widening, skew, limits, clamp, plan,
                   portfolio limits and budgets (limit_quotes)
    5. ENGINE      the Bot: one slot per market (book, schedule, order manager, fills, PnL,
                   rollover), portfolio risk and capital, claims, safety, state file, live
                   tuning; observability (JSON log, status, metrics)
    6. TOOLS       `preflight [--canary]` (is this machine, wallet and config ready; one real
                   order placed and cancelled). `report` and `replay` live in spike_tools.py
    7. CLI         flags, modes (--sim, --dry-run), subcommands, signals, main()

Protocol facts come from ../shared/turbine-api.md; where it is silent the official SDK
(turbine-py-client) is followed and the comment says so.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import collections
import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import queue
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
from statistics import NormalDist
from typing import Any, NamedTuple, Protocol

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
    reload: bool = False,
) -> Any:
    """A setting's whole declaration: its default, help text, validation range (or choices),
    environment name (default SPIKE_<NAME>) and whether a reload (SIGHUP) may change it
    while running. Its flag (--name-with-dashes), its .env.example line, its row in
    docs/configuration.md and the reload all follow from it."""
    return field(
        default=default,
        metadata={
            "help": help_, "lo": lo, "hi": hi, "choices": choices, "env": env, "reload": reload,
        },
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
    markets: str = _f(
        "BTC:15",
        "quick markets to quote, ASSET:MINUTES comma-separated (e.g. BTC:15,BTC:60,ETH:15)",
    )
    # -- quoting ---------------------------------------------------------------------------------
    # quoting defaults chosen on held-out seeds of the realistic market (docs/figures.md "Trading
    # quality"); the seed's were 5 shares, a 0.40 spread, no risk_spread and skew 0.08
    order_size: float = _f(10.0, "shares per quote", 0.000001, 1e6, reload=True)
    base_spread: float = _f(
        0.04, "full bid-ask spread around fair value (probability units)", 0.0002, 0.98,
        reload=True,
    )
    fair_source: str = _f(
        "blend",
        "fair value: mid, micro, model or blend",
        choices=("mid", "micro", "model", "blend"),
        reload=True,
    )
    model_weight: float = _f(
        0.7, "blend: weight of the model probability (rest: micro-price)", 0, 1,
        reload=True,
    )
    model_vol: float = _f(
        0.55, "annualised volatility for the model probability", 0.01, 5,
        reload=True,
    )
    pause_move_bp: float = _f(
        0.0,
        "stop quoting (cancel, fail closed: fast_move) while the oracle price has moved more "
        "than this (bp) within pause_window_s (0: off)",
        0,
        10000,
        reload=True,
    )
    open_quiet_s: float = _f(
        0.0,
        "no quoting in a market's first this many seconds (fail closed: market_opening; 0: off)",
        0,
        3600,
        reload=True,
    )
    pause_window_s: float = _f(
        3.0, "the fast_move stop's window (s)", 0.5, 600, reload=True
    )
    vol_window_s: float = _f(
        900.0,
        "model: the asset's realized volatility over this window replaces model_vol once "
        "measured (0: always model_vol); BTC's ran 20-37 percent in 2026, not a fixed 55",
        0,
        86400,
        reload=True,
    )
    risk_spread: float = _f(
        1.0,
        "extra half-spread per unit of the binary's likely move over risk_horizon_s (0: off)",
        0,
        10,
        reload=True,
    )
    risk_horizon_s: float = _f(
        10.0, "risk_spread: the horizon of that move (s), about the time to requote", 0.1, 600,
        reload=True,
    )
    extreme_zone: float = _f(0.15, "widen when fair is within this of 0 or 1", 0, 0.5, reload=True)
    extreme_widen: float = _f(0.10, "extra half-spread at fair = 0 or 1", 0, 0.5, reload=True)
    skew_factor: float = _f(
        0.15, "quote shift at full inventory (probability units)", 0, 0.5,
        reload=True,
    )
    price_tick: float = _f(
        0.0001, "price tick (the SDK rounds to 0.0001)", 0.000001, 0.1,
        reload=True,
    )
    requote_tolerance: float = _f(
        0.03,
        "replace a quote when its price is off by this; near the money the model fair moves "
        "~0.015/s, so a tight tolerance on a 0.40 spread only burns requests",
        0,
        0.5,
        reload=True,
    )
    # deep books (issue 23): where others rest thousands of shares a tick from fair, a quote a
    # risk spread wide rests behind them all and trades nothing; there the bot competes at the
    # touch, as far from fair as deep_edge allows, and follows it tightly. Detected from the
    # book itself, each step: no operator's guess of the venue's depth.
    deep_depth: float = _f(
        1000.0,
        "a book whose others' top five levels hold this many shares on each side is deep: "
        "quote at the touch (0: never)",
        0,
        1e9,
        reload=True,
    )
    deep_edge: float = _f(
        0.004, "deep book: the least distance of a quote from fair (after skew)", 0, 0.5,
        reload=True,
    )
    deep_improve: float = _f(
        0.0001,
        "deep book: price this far inside the others' best for queue priority (0: join them)",
        0,
        0.05,
        reload=True,
    )
    deep_order_size: float = _f(20.0, "deep book: shares per quote", 0.000001, 1e6, reload=True)
    deep_model_weight: float = _f(
        0.7, "deep book, blend: weight of the model probability (rest: micro-price)", 0, 1,
        reload=True,
    )
    deep_risk_spread: float = _f(
        0.0,
        "deep book: extra half-spread per unit of the binary's likely move over "
        "risk_horizon_s (0: off)",
        0,
        10,
        reload=True,
    )
    toxicity_k: float = _f(
        0.0,
        "extra half-spread per unit of toxicity: what our fills lost, per share, to the fair "
        "value's move markout_s later (averaged over toxicity_half_life_s; 0: off)",
        0,
        20,
        reload=True,
    )
    markout_s: float = _f(
        5.0, "toxicity: a fill is marked against fair this long after (s)", 1, 300,
        reload=True,
    )
    toxicity_half_life_s: float = _f(
        300.0, "toxicity: the weight of a fill's markout halves this often (s)", 10, 86400,
        reload=True,
    )
    deep_requote_tolerance: float = _f(
        0.002, "deep book: replace a quote off its price by this (the touch moves each second)",
        0,
        0.5,
        reload=True,
    )
    requote_passive_mult: float = _f(
        2.0,
        "a quote resting further from fair than wanted is replaced only past this multiple "
        "of requote_tolerance (it costs fills, not money; thin books only)",
        1,
        20,
        reload=True,
    )
    order_refresh_s: float = _f(
        60.0, "re-place resting orders this often (s)", 1, 3600,
        reload=True,
    )
    expiry_grace_s: float = _f(
        30.0, "order expiration = refresh + this (dead man's switch)", 1, 3600,
        reload=True,
    )
    # -- limits ----------------------------------------------------------------------------------
    max_position: float = _f(
        50.0, "net YES-equivalent shares limit per side", 0.000001, 1e7,
        reload=True,
    )
    max_order_size: float = _f(50.0, "largest single order (shares)", 0.000001, 1e7, reload=True)
    max_open_orders: int = _f(4, "most open orders at once", 1, 100, reload=True)
    max_loss_per_market: float = _f(
        25.0, "kill switch: stop quoting a market past this loss (USDC)", 0, 1e9,
        reload=True,
    )
    max_loss_per_day: float = _f(
        100.0, "kill switch: stop every market for the UTC day past this loss (USDC)", 0, 1e9,
        reload=True,
    )
    # -- portfolio (all markets together) -------------------------------------------------------
    max_open_notional: float = _f(
        200.0, "most USDC our open orders could cost if all filled, all markets", 0, 1e9,
        reload=True,
    )
    max_net_exposure: float = _f(
        150.0, "most net position value at fair, USDC, all markets (long YES +, short -)", 0, 1e9,
        reload=True,
    )
    capital_usdc: float = _f(
        0.0, "USDC split between the markets' budgets (0: the wallet's balance)", 0, 1e12,
        reload=True,
    )
    capital_split: str = _f(
        "", "budget weights, e.g. BTC:15=2,BTC:60=1 (empty: equal; unlisted: 0)",
        reload=True,
    )
    balance_s: float = _f(300.0, "re-read the USDC balance for the budgets (s)", 5, 86400)
    rebate_share: float = _f(
        0.20,
        "maker rebates (spec 1.4): the share of the virtual taker fee 0.25 (p(1-p))^2 of "
        "notional paid to makers, pro rata (an estimate per fill, never in realized PnL)",
        0,
        1,
        reload=True,
    )
    fee_bps: float = _f(
        0.0, "assumed maker fee, bps of size (undocumented; sim: 0)", 0, 1000,
        reload=True,
    )
    paper_usdc: float = _f(1000.0, "--paper: the paper wallet's starting USDC", 0, 1e9)
    # -- T-minus ---------------------------------------------------------------------------------
    tminus_widen_s: float = _f(
        120.0, "widen and cut size this long before expiry (s)", 0, 86400,
        reload=True,
    )
    tminus_widen_mult: float = _f(1.5, "spread multiplier in the widen window", 1, 10, reload=True)
    tminus_size_mult: float = _f(0.5, "size multiplier in the widen window", 0.01, 1, reload=True)
    tminus_reduce_only_s: float = _f(
        60.0, "only the inventory-reducing side this close (s)", 0, 86400,
        reload=True,
    )
    tminus_pull_s: float = _f(
        20.0, "pull every order this close to expiry (s)", 0, 86400,
        reload=True,
    )
    tminus_skew_s: float = _f(
        0.0, "ramp the inventory skew up over this many last seconds (0: off)", 0, 86400,
        reload=True,
    )
    tminus_skew_mult: float = _f(
        2.0, "skew multiplier reached at expiry in the tminus_skew_s ramp", 1, 20,
        reload=True,
    )
    # -- schedule --------------------------------------------------------------------------------
    tick_s: float = _f(2.0, "quote loop heartbeat (s); book changes wake it sooner", 0.01, 60)
    positions_s: float = _f(5.0, "poll positions (s); orders are read back on a change", 0.1, 600)
    orders_sync_s: float = _f(30.0, "read back all our orders at least this often (s)", 1, 3600)
    settle_grace_s: float = _f(
        10.0, "a position differing from our fills this long is reconciled (s; settlement lag)",
        0, 600,
    )
    rollover_s: float = _f(10.0, "poll the current quick market (s)", 0.1, 600)
    claim_s: float = _f(30.0, "check and redeem resolved markets (s)", 0.1, 3600)
    claim_alert_s: float = _f(
        3600.0,
        "alert (ERROR) when a claim has waited this long for resolution or payout (s); "
        "resolution can take 15 minutes or more (spec 6.3)",
        60,
        1e8,
        reload=True,
    )
    claim_give_up_s: float = _f(
        604800.0,
        "give a claim up after this long (s): an ERROR and an alert, kept in the state file",
        600,
        1e9,
        reload=True,
    )
    pnl_snapshot_s: float = _f(3600.0, "PnL snapshot line (s)", 1, 86400)
    stale_after_s: float = _f(30.0, "book older than this: cancel all, stop quoting (s)", 0.1, 600)
    book_confirm_s: float = _f(
        10.0, "a book quiet this long is re-read over REST; fresh only if REST agrees (s)", 0.1, 600
    )
    price_s: float = _f(2.0, "poll the asset price for the model (s)", 0.1, 600)
    price_source: str = _f(
        "auto",
        "pyth: stream the settlement oracle's price (Hermes SSE), poll Turbine only while it "
        "is stale; turbine: poll only; auto: pyth when PYTH_API_KEY is set or under --sim",
        choices=("auto", "pyth", "turbine"),
    )
    hermes_url: str = _f("https://hermes.pyth.network", "Pyth Hermes base URL")
    price_max_age_s: float = _f(
        5.0, "a streamed price older than this (publish time) counts as missing (s)", 0.5, 600
    )
    price_band: float = _f(
        0.05, "use the asset price only within this fraction of the strike (unit check)", 0.001, 1,
        reload=True,
    )
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
    cancel_confirm_s: float = _f(
        0.25,
        "wait this long (real s) for the stream to confirm a cancel before a replaced side "
        "gets its new order; unconfirmed: our orders are read back over REST (0: always)",
        0,
        5,
    )
    ws_silence_s: float = _f(
        20.0, "reconnect when no frame and no pong came this long; pings every 1/4 (s)", 1, 600
    )
    # -- files and observability -----------------------------------------------------------------
    log_file: str = _f("spike_bot.log", "JSON log file ('-' for stdout)")
    state_file: str = _f("spike_state.json", "state file (claims, PnL, counters)")
    metrics_port: int = _f(0, "Prometheus metrics port on 127.0.0.1 (0: off)", 0, 65535)
    status_every_s: float = _f(2.0, "status line period, wall seconds (0: off)", 0, 3600)
    bot_name: str = _f(BOT_NAME, "`bot` field in logs and metrics")
    alert_fail_closed_s: float = _f(
        60.0, "webhook alert when a market stays failed closed this long (s)", 0, 86400
    )
    alert_repeat_s: float = _f(300.0, "the same webhook alert at most this often (s)", 0, 86400)
    alert_errors: int = _f(20, "webhook alert at this many errors within 5 minutes", 1, 10000)

    def market_keys(self) -> list[MarketKey]:
        return parse_markets(self.markets)


# Settings a SIGHUP may change while running: those whose declaration says reload=True (the
# strategy and its limits). The rest (connection, files, schedule, I/O) need a restart.
TUNABLE = frozenset(f.name for f in dataclasses.fields(Config) if f.metadata["reload"])

# Keys the SDK's examples already use; everything else is SPIKE_<NAME>.
ENV_PRIVATE_KEY = "TURBINE_PRIVATE_KEY"
ENV_API_KEY_ID = "TURBINE_API_KEY_ID"
ENV_API_PRIVATE_KEY = "TURBINE_API_PRIVATE_KEY"
ENV_ALERT_WEBHOOK = "SPIKE_ALERT_WEBHOOK"  # a secret like the keys: env or env file only
ENV_PYTH_API_KEY = "PYTH_API_KEY"  # Hermes requires a key since Pyth's 2026 Core upgrade
# The key at rest, encrypted, instead of TURBINE_PRIVATE_KEY: an eth-account keystore JSON file
# (scrypt, as the official wallets write it), its passphrase typed at start or read from a file
ENV_KEYSTORE = "TURBINE_KEYSTORE"
ENV_KEYSTORE_PASSPHRASE_FILE = "TURBINE_KEYSTORE_PASSPHRASE_FILE"


class ConfigError(Exception):
    """A bad setting: printed as one line, exit code 2."""


@dataclass(frozen=True, order=True)
class MarketKey:
    """One quick-market series: an asset and an interval. Its markets follow each other."""

    asset: str
    interval: int  # minutes

    def __str__(self) -> str:
        return f"{self.asset}:{self.interval}"


def parse_markets(text: str) -> list[MarketKey]:
    """"BTC:15,btc:60, ETH:15" -> [BTC:15, BTC:60, ETH:15]; ConfigError on anything else."""
    keys: list[MarketKey] = []
    for part in text.split(","):
        asset, sep, iv = part.strip().partition(":")
        asset = asset.strip().upper()
        try:
            interval = int(iv.strip()) if sep else 0
        except ValueError:
            interval = 0
        if not asset.isalnum() or not 1 <= interval <= 1440:
            raise ConfigError(
                f"markets: expected ASSET:MINUTES like BTC:15 (got {part.strip()!r})"
            )
        k = MarketKey(asset, interval)
        if k in keys:
            raise ConfigError(f"markets: {k} is listed twice")
        keys.append(k)
    return keys


def parse_split(text: str, keys: list[MarketKey]) -> dict[MarketKey, float]:
    """Budget weights per market, normalised to sum 1. Empty text: equal weights."""
    if not text.strip():
        return {k: 1.0 / len(keys) for k in keys}
    raw: dict[MarketKey, float] = {}
    for part in text.split(","):
        name, sep, w = part.strip().partition("=")
        try:
            (k,) = parse_markets(name)
            weight = float(w) if sep else -1.0
        except (ConfigError, ValueError):
            k, weight = None, -1.0
        if k is None or not math.isfinite(weight) or weight < 0:
            raise ConfigError(
                f"capital_split: expected MARKET=WEIGHT like BTC:15=2 (got {part.strip()!r})"
            )
        if k not in keys:
            raise ConfigError(f"capital_split: {k} is not in markets ({', '.join(map(str, keys))})")
        raw[k] = weight
    total = sum(raw.values())
    if total <= 0:
        raise ConfigError("capital_split: the weights add up to 0")
    return {k: raw.get(k, 0.0) / total for k in keys}


@dataclass
class Secrets:
    """Kept apart from Config so a config dump can never carry them; repr shows nothing."""

    private_key: str = field(default="", repr=False)
    api_key_id: str = field(default="", repr=False)
    api_private_key: str = field(default="", repr=False)
    alert_webhook: str = field(default="", repr=False)  # its URL carries the channel's token
    hermes_api_key: str = field(default="", repr=False)  # Pyth Hermes (Bearer)

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
    keys = parse_markets(cfg.markets)
    parse_split(cfg.capital_split, keys)
    if cfg.order_size > cfg.max_order_size:
        raise ConfigError(
            f"order_size {cfg.order_size} exceeds max_order_size {cfg.max_order_size}"
        )
    if cfg.tminus_pull_s > cfg.tminus_reduce_only_s:
        raise ConfigError("tminus_pull_s must be <= tminus_reduce_only_s")
    if cfg.tminus_pull_s >= min(k.interval for k in keys) * 60:
        raise ConfigError("tminus_pull_s must be shorter than the shortest market interval")
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
    for old in ("SPIKE_ASSET", "SPIKE_INTERVAL_MIN"):
        if environ.get(old, "").strip():
            raise ConfigError(f"{old} was replaced by SPIKE_MARKETS (e.g. SPIKE_MARKETS=BTC:15)")
    cfg.markets = ",".join(str(k) for k in parse_markets(cfg.markets))  # canonical: BTC:15
    cfg.host = cfg.host.rstrip("/")
    sec = Secrets(
        private_key=environ.get(ENV_PRIVATE_KEY, "").strip(),
        api_key_id=environ.get(ENV_API_KEY_ID, "").strip(),
        api_private_key=environ.get(ENV_API_PRIVATE_KEY, "").strip(),
        alert_webhook=environ.get(ENV_ALERT_WEBHOOK, "").strip(),
        hermes_api_key=environ.get(ENV_PYTH_API_KEY, "").strip(),
    )
    if sec.alert_webhook and not sec.alert_webhook.startswith(("https://", "http://")):
        raise ConfigError(f"{ENV_ALERT_WEBHOOK} must be an http(s) URL")  # value not echoed
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
# [docs] the API refuses an expiration less than 60 s ahead; 5 s more for clock differences
MIN_EXPIRY_AHEAD_S = 65
# Pyth price feed ids (public, docs.pyth.network): quick markets resolve on Pyth (spec 6.3)
PYTH_FEEDS = {
    "BTC": "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43",
    "ETH": "ff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace",
    "SOL": "ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d",
    "XRP": "ec5d399846a9209f3fe5881d70aae9268c94339ff9817e8d18ff19fa05eea1c8",
}
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
CTF_APPROVAL_TYPEHASH = keccak(
    b"SetApprovalForAll(address owner,address operator,bool approved,uint256 nonce,"
    b"uint256 deadline)"
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

    def sign_ctf_approval(self, nonce: int, deadline: int) -> dict[str, Any]:
        """SetApprovalForAll(settlement) by permit on the chain's CTF (spec 4.6): the body of
        POST /relayer/ctf-approval. Selling held shares needs it."""
        operator = self.chain["settlement"]
        sh = keccak(
            CTF_APPROVAL_TYPEHASH
            + addr32(self.address)
            + addr32(operator)
            + u256(1)
            + u256(nonce)
            + u256(deadline)
        )
        dsep = self._dsep("ConditionalTokensWithPermit", "1", self.chain["ctf"])
        sig = self.sign_digest(keccak(b"\x19\x01" + dsep + sh))
        return {
            "chainId": self.chain_id,
            "owner": self.address,
            "operator": operator,
            "approved": True,
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
                start=int(d.get("startTime") or 0),  # absent or null: judged by its end
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
    stream: bool = False  # heard on the stream (only such a book can be confirmed over REST)
    # when its content was last known true: a change heard on the stream, or REST agreeing
    # (0: as ts). A stream that repeats a book does not make it true again (Feed.stream_book)
    checked: float = 0.0

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


def parse_book(d: dict[str, Any], ts: float, endpoint: str = "orderbook") -> Book:
    """A book from the wire (REST or stream, both bots), best first whatever order the wire
    used; a book that cannot be true is a ReplyRejected (book_problem)."""
    bids, asks = parse_levels(d.get("bids", [])), parse_levels(d.get("asks", []))
    book = Book(tuple(sorted(bids, key=lambda x: -x[0])), tuple(sorted(asks)), ts)
    why = book_problem(book)
    if why is not None:
        raise ReplyRejected(endpoint, "bids/asks", f"{book.best_bid}/{book.best_ask}", why)
    return book


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
    trader: str = ""  # lower case; "" when the reply did not say

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
            str(d.get("trader", "")).lower(),
        )


def list_reply(d: Any, key: str) -> list[Any]:
    """A list reply as the SDK accepts it: `{key: [...]}` or a bare list (spec 3.1); `null` is
    empty. Anything else is an ExchangeError."""
    rows = d.get(key, []) if isinstance(d, dict) else d
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise ExchangeError("invalid", f"{key}: not a list")
    return rows


def parse_position(d: Any, market_id: str, me: str = "") -> tuple[int, int]:
    """(YES, NO) shares (u6) from GET /positions/{market}: the SDK's `{"positions": [...]}` or
    a bare list, or the single object the API docs show (`{"yesShares", "noShares", ...}`,
    zeros when none; spec 3.2 #23). Rows go through `check_position_rows`."""
    if isinstance(d, dict) and "positions" not in d and "yesShares" in d:
        d = [d]
    rows = list_reply(d, "positions")
    try:
        got = [
            (
                str(p.get("marketId") or ""),
                str(p.get("userAddress") or ""),
                int(p.get("yesShares", 0)),
                int(p.get("noShares", 0)),
            )
            for p in rows
        ]
    except (AttributeError, TypeError, ValueError) as e:
        raise ExchangeError("invalid", f"positions: bad field {e}") from None
    return check_position_rows(got, market_id, me)


@dataclass(frozen=True)
class FailedFill:
    """A matched trade the chain refused (GET /failed-trades, spec 3.3 FailedTrade)."""

    tx: str
    market_id: str
    buyer: str
    seller: str
    size: int  # u6 shares
    price: int  # u6
    reason: str

    @staticmethod
    def parse_all(d: Any) -> list[FailedFill]:
        rows = list_reply(d, "failedTrades")
        out = []
        try:
            for r in rows:
                out.append(
                    FailedFill(
                        str(r.get("txHash", "")).lower(),
                        str(r.get("marketId", "")).lower(),
                        str(r.get("buyerAddress", "")).lower(),
                        str(r.get("sellerAddress", "")).lower(),
                        int(r.get("fillSize", 0)),
                        int(r.get("fillPrice", 0)),
                        str(r.get("reason", ""))[:160],
                    )
                )
        except (AttributeError, TypeError, ValueError) as e:
            raise ExchangeError("invalid", f"failed-trades: bad field {e}") from None
        return out


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
    stale_feed and blocked (the firewall), rate_limited."""

    def __init__(self, kind: str, message: str, status: int = 0) -> None:
        super().__init__(f"{kind}: {message}" + (f" (HTTP {status})" if status else ""))
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after: float | None = None


class ReplyRejected(ExchangeError):
    """A reply that was read but cannot be true: another market, wallet or asset, numbers out
    of range, a crossed book. Never acted on; kind `invalid`, so it counts as the host failing
    (no new order until a good answer) and the engine logs it as `reply_rejected`."""

    def __init__(self, endpoint: str, field: str, value: Any, why: str) -> None:
        shown = str(value)[:80]
        super().__init__("invalid", f"{endpoint}: {field}={shown}: {why}")
        self.endpoint = endpoint
        self.field = field
        self.value = shown
        self.why = why


# -- the boundary: what a reply must say before the engine believes it -------------------------
# One check per reply type, used by both adapters (and the paper venue's reads) where the data
# shape is the same, and by preflight. Each raises ReplyRejected naming the endpoint, the field
# and the value; docs/how-it-works.md's table "What the bot refuses to believe" lists them.
ORDER_STATUSES = frozenset({"open", "filled", "cancelled", "expired", "partially_filled"})


def check_order_rows(
    rows: list[OrderInfo], me: str, market_id: str | None, endpoint: str = "orders"
) -> list[OrderInfo]:
    """Order rows are ours (trader, when the row names one), for the market asked for, and
    self-consistent (side, outcome, price, sizes, status). One bad row rejects the reply: an
    API that ignores a filter, or a truncated list, must not be half-believed."""
    me = me.lower()
    for o in rows:
        if not (o.order_hash.startswith("0x") and len(o.order_hash) == 66):
            raise ReplyRejected(endpoint, "orderHash", o.order_hash, "not a 32-byte hash")
        if o.trader and me and o.trader != me:
            raise ReplyRejected(endpoint, "trader", o.trader, "another wallet's order")
        if market_id is not None and o.market_id.lower() != market_id.lower():
            raise ReplyRejected(endpoint, "marketId", o.market_id, "not the market asked for")
        if o.side not in (BUY, SELL) or o.outcome not in (YES, NO):
            raise ReplyRejected(endpoint, "side/outcome", (o.side, o.outcome), "out of range")
        if not MIN_PRICE <= o.price <= MAX_PRICE:
            raise ReplyRejected(endpoint, "price", o.price, "out of range")
        if not 0 <= o.filled <= o.size:
            raise ReplyRejected(endpoint, "filledSize", f"{o.filled}/{o.size}", "out of range")
        if o.status not in ORDER_STATUSES:
            raise ReplyRejected(endpoint, "status", o.status, "unknown status")
    return rows


def check_position_rows(
    rows: list[tuple[str, str, int, int]], market_id: str, me: str
) -> tuple[int, int]:
    """(marketId, userAddress, yes, no) rows of GET /positions: the row for our market (a row
    that names no market is the market asked for, as the docs' single object does), ours
    when it names a user, shares never negative. No row: no position."""
    for mid, user, yes, no in rows:
        if mid and mid.lower() != market_id.lower():
            continue  # another market of the contract's list: not this one
        if user and me and user.lower() != me.lower():
            raise ReplyRejected("positions", "userAddress", user, "another wallet's position")
        if yes < 0 or no < 0:
            raise ReplyRejected("positions", "yesShares/noShares", (yes, no), "negative")
        return yes, no
    return 0, 0


def parse_claim_data(d: Any) -> dict[str, dict[str, Any]]:
    """GET claim-data rows by the contract each names: a row answers for that contract only,
    never for its place in the list (a row of another contract must not decide, or drop, our
    claim). A resolved row's balance and outcome must be numbers that can be true."""
    rows = d.get("markets", []) if isinstance(d, dict) else []
    if not isinstance(rows, list):
        raise ReplyRejected("claim_data", "markets", type(rows).__name__, "not a list")
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if not isinstance(r, dict):
            raise ReplyRejected("claim_data", "row", type(r).__name__, "not an object")
        contract = str(r.get("market_address", "")).lower()
        if r.get("resolved"):
            try:
                bal = int(r.get("winning_balance") or 0)
            except (TypeError, ValueError):
                bal = -1
            if bal < 0:
                raise ReplyRejected(
                    "claim_data", "winning_balance", r.get("winning_balance"), "not a balance"
                )
            if bal > 0 and r.get("winning_outcome") not in (0, 1, "0", "1"):
                raise ReplyRejected(
                    "claim_data", "winning_outcome", r.get("winning_outcome"), "not 0 or 1"
                )
        out[contract] = r
    return out


def book_problem(book: Book) -> str | None:
    """Why a book cannot be true (None: it can): a crossed book would have matched."""
    bid, ask = book.best_bid, book.best_ask
    if bid is not None and ask is not None and bid >= ask:
        return f"crossed: best bid {bid} >= best ask {ask}"
    return None


def check_quick_market(
    qm: QuickMarket,
    key: MarketKey,
    current: QuickMarket | None,
    now: float,
    price: float | None,
    band: float,
) -> None:
    """A new quick market is for the asset and interval asked for, starts no earlier than
    the current one, ends in the future within two intervals, and has a strike near the
    asset's price (when one is known). Else the engine stays on the market it has."""
    iv = key.interval * 60
    if qm.asset.upper() != key.asset.upper():
        raise ReplyRejected("quick_market", "asset", qm.asset, f"asked for {key.asset}")
    if qm.start and qm.end - qm.start != iv:
        raise ReplyRejected(
            "quick_market", "endTime-startTime", qm.end - qm.start, f"asked for {iv} s"
        )
    if current is not None and (qm.end <= current.end or (qm.start and qm.start < current.start)):
        # (a reply without startTime is judged by its end alone)
        raise ReplyRejected("quick_market", "startTime/endTime", qm.end, "not newer than ours")
    if not now < qm.end <= now + 2 * iv:
        raise ReplyRejected("quick_market", "endTime", qm.end, "not within two intervals ahead")
    if price is not None and not price_consistent(price, qm.strike, band):
        raise ReplyRejected("quick_market", "startPrice", qm.strike, f"far from {price:g}")


def classify(status: int) -> str:
    if 300 <= status < 400:
        # a trading client never follows a redirect (another host's reply would be read as
        # the exchange's, and a redirected POST carries a signed order): an unreadable reply
        return "invalid"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "retryable"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    return "rejected"


def redirect_message(status: int, headers: Any) -> str:
    """What the log says of a redirect: its status and the host it points at (never its path
    or query, which could carry anything)."""
    loc = str(headers.get("Location") or headers.get("location") or "")
    host = loc.split("//", 1)[-1].split("/", 1)[0][:80] if loc else "?"
    return f"redirect {status} to {host}, not followed"


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


# The engine's jobs made of such polls: the stale-feed check runs before each of them.
DEFERRED_JOBS = frozenset(
    {"rollover", "price", "positions", "failed_trades", "claims", "balance"}
)
# Polls that can wait for their next turn: tried once (with a short timeout while the host is
# failing), so a tick reaches its cancels and the stale-feed check instead of backing off in
# retries. Cancels, a cancel's read-back and placements keep their retries.
DEFERRABLE = frozenset(
    {
        "quick_market",
        "market",
        "price",
        "positions",
        "balances",
        "claim_data",
        "orderbook",
        "orders_sync",
        "failed_trades",
        "resolution",
    }
)
DEFERRED_TIMEOUT_S = 1.0  # their HTTP timeout while the host is failing
PRICE_WAKE_S = 0.2  # a streamed price wakes the engine at most this often (real seconds)
CTF_RETRY_S = 30.0  # a failed CTF approval request is repeated at most this often
# a stream that missed this many cancel confirmations in a row is not waited for again until
# CONFIRM_RETRY read-backs later (Orders.confirm_cancels)
CONFIRM_MISSES = 3
CONFIRM_RETRY = 50
# a claim the exchange does not know yet (404) is asked again after claim_s, doubling up to this
CLAIM_BACKOFF_MAX_S = 600.0
# /failed-trades is read before any position reconcile (a failed fill is what a mismatch that
# lasts usually is) and every FAILED_IDLE_S besides
FAILED_IDLE_S = 60.0


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
        # the last call ended in a transient failure (after its retries) or a reply that could
        # not be read or believed: until one succeeds, no new order, and deferrable polls get
        # one attempt each
        self.degraded = False
        # the engine's Boundary (set when the bot is built): told of every good answer and
        # every rejected reply, per endpoint
        self.listener: Any = None

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        base = min(2.0, 0.2 * (2**attempt))
        if retry_after is not None:
            base = max(base, min(retry_after, 2.0))
        return base * (0.5 + self.rng.random())  # full jitter around the base

    def call(self, endpoint: str, fn: Callable[[], Any], retries: int | None = None) -> Any:
        retries = self.cfg.max_retries if retries is None else retries
        if endpoint in DEFERRABLE:
            retries = 0  # a poll that fails waits for its next turn, never backs off in the tick
        attempt = 0
        # no call holds the tick past one timeout, retries included: a slow answer (a reply
        # taking 60 s, cut at http_timeout_s) is not asked again inside the tick; quick
        # refusals (429, 5xx) are retried while the time adds up to less
        start = time.perf_counter()
        while True:
            self.pacer.acquire()
            t = time.perf_counter()
            try:
                out = fn()
            except ExchangeError as e:
                self.observer.request_done(endpoint, time.perf_counter() - t, e.kind)
                transient = e.kind in ("retryable", "rate_limited", "network")
                wait = self.backoff(attempt, e.retry_after)
                spent = time.perf_counter() - start
                if transient and attempt < retries and spent + wait < self.cfg.http_timeout_s:
                    time.sleep(wait)
                    attempt += 1
                    continue
                # an unreadable or unbelievable answer is a failing host, like a 5xx
                self.degraded = transient or e.kind == "invalid"
                if self.listener is not None and e.kind == "invalid":
                    self.listener.rejected(endpoint, e)
                raise
            self.degraded = False
            self.observer.request_done(endpoint, time.perf_counter() - t, "ok")
            if self.listener is not None:
                self.listener.ok(endpoint)
            return out


class Exchange(Protocol):
    """What the engine needs from an exchange. TurbineExchange (below) implements it with
    requests; official_spike_bot.OfficialExchange with turbine-py-client."""

    address: str
    policy: CallPolicy
    gate: OrderGate  # the firewall: the engine sets gate.feed_ok

    def quick_market(self, key: MarketKey) -> QuickMarket: ...
    def asset_price(self, asset: str) -> float | None: ...
    def orderbook(self, market_id: str, now: float) -> Book: ...
    def prepare(self, now: float) -> dict[str, str]: ...
    def approve_ctf(self, now: float) -> str: ...
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
    def orders(
        self, market_id: str | None, status: str | None, urgent: bool = True
    ) -> list[OrderInfo]: ...
    def position(self, market: QuickMarket) -> tuple[int, int]: ...
    def balances(self) -> tuple[int, int]: ...
    def failed_trades(self) -> list[FailedFill]: ...
    def claim_data(self, contracts: list[str]) -> dict[str, dict[str, Any]]:
        """What claim-data says of each contract (read-only; preflight reads it too)."""
        return self._call(
            "claim_data",
            "GET",
            f"/api/v1/users/{self.address}/claim-data",
            params={"chain_id": self.cfg.chain_id, "markets": ",".join(contracts)},
            parse=parse_claim_data,
        )

    def claim(self, markets: list[tuple[str, str]], now: float) -> list[ClaimResult]: ...
    def stream(self) -> Stream: ...


class StreamHandler(Protocol):
    def on_book(self, market_id: str, book: Book) -> None: ...
    def on_trade(self, market_id: str, trade: dict[str, Any]) -> None: ...
    def on_market(self, qm: dict[str, Any]) -> None: ...
    def on_order_cancelled(self, market_id: str, data: dict[str, Any]) -> None: ...
    def on_status(self, connected: bool, reason: str = "") -> None: ...
    def on_bad_frame(self, why: str) -> None: ...
    def on_rejected(self, e: ExchangeError) -> None: ...


class Stream(Protocol):
    def start(self, handler: StreamHandler) -> None: ...
    def subscribe(self, market_id: str) -> None: ...
    def unsubscribe(self, market_id: str) -> None: ...
    def reconnect(self, reason: str) -> None: ...
    def stop(self) -> None: ...
    # Engine thread, first in every step: deliver messages held for it (paper trading holds
    # books and trades so that its fills replay exactly); a live stream delivers at once.
    def pump(self) -> None: ...
    @property
    def connected(self) -> bool: ...


class OrderGate:
    """The adapter-level firewall and permit bookkeeping shared by both adapters.

    Every order-placing call passes `check(market_id)`, which asks the engine's Risk.blocked
    (the bot sets `blocked` when it is built): no fresh book for that market, or a kill switch
    on, and no order. Permit nonces are read from the exchange once and counted up locally,
    resynced after a permit failure.
    """

    def __init__(self, cfg: Config, signer: Signer | None) -> None:
        self.cfg = cfg
        self.signer = signer
        # market id -> why it may not trade, or None; no engine yet: nothing may
        self.blocked: Callable[[str], str | None] = lambda market_id: "stale_feed"
        self.permit_nonce: int | None = None

    def check(self, market_id: str) -> None:
        why = self.blocked(market_id)
        if why == "stale_feed":
            raise ExchangeError("stale_feed", "order refused: the book feed is stale")
        if why is not None:
            raise ExchangeError("blocked", f"order refused: {why}")

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


def remember(cache: dict[str, Any], key: str, value: Any, most: int = 64) -> None:
    """Add to a small per-market cache, dropping the oldest entry: only current markets matter."""
    if key not in cache and len(cache) >= most:
        cache.pop(next(iter(cache)))
    cache[key] = value


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
        timeout: float | None = None,
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
                timeout=timeout or self.cfg.http_timeout_s,
                allow_redirects=False,
            )
        except requests.RequestException as e:
            raise ExchangeError("network", type(e).__name__) from None
        if 300 <= r.status_code < 400:
            msg = redirect_message(r.status_code, r.headers)
            raise ExchangeError("invalid", msg, r.status_code)
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
        self,
        endpoint: str,
        method: str,
        path: str,
        retries: int | None = None,
        parse: Callable[[Any], Any] | None = None,
        **kw: Any,
    ) -> Any:
        """One request under the policy; `parse` checks the reply inside the call, so a reply
        that cannot be read or believed counts as that endpoint failing."""
        if self.policy.degraded and endpoint in DEFERRABLE:
            # the host is failing: a poll that can wait gets one short attempt
            kw["timeout"] = min(self.cfg.http_timeout_s, DEFERRED_TIMEOUT_S)

        def go() -> Any:
            d = self._raw(method, path, **kw)
            return parse(d) if parse is not None else d

        return self.policy.call(endpoint, go, retries)

    # -- reads ----------------------------------------------------------------------------------
    def quick_market(self, key: MarketKey) -> QuickMarket:
        qm = self._call(
            "quick_market",
            "GET",
            f"/api/v1/quick-markets/{key.asset}",
            params={"interval": key.interval},
            parse=QuickMarket.parse,
        )
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
            remember(self._settlement, market_id, hit)
        return hit

    def asset_price(self, asset: str) -> float | None:
        d = self._call("price", "GET", f"/api/v1/quick-markets/{asset}/price")
        try:
            p = float(d["price"])
        except (KeyError, TypeError, ValueError):
            return None
        return p if p > 0 and math.isfinite(p) else None

    def orderbook(self, market_id: str, now: float) -> Book:
        def parse(d: Any) -> Book:
            try:
                return parse_book(d, now)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise ExchangeError("invalid", f"orderbook: {e}") from None

        return self._call("orderbook", "GET", f"/api/v1/orderbook/{market_id}", parse=parse)

    def orders(
        self, market_id: str | None, status: str | None, urgent: bool = True
    ) -> list[OrderInfo]:
        """`urgent=False`: a routine read-back, deferrable while the host is failing (a
        cancel's read-back is urgent)."""
        params: dict[str, Any] = {"trader": self.address}
        if market_id:
            params["market_id"] = market_id
        if status:
            params["status"] = status
        endpoint = "orders" if urgent else "orders_sync"

        def parse(d: Any) -> list[OrderInfo]:
            try:
                rows = [OrderInfo.parse(o) for o in list_reply(d, "orders")]
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise ExchangeError("invalid", f"orders: {e}") from None
            return check_order_rows(rows, self.address, market_id, endpoint)

        return self._call(endpoint, "GET", "/api/v1/orders", params=params, auth=True, parse=parse)

    def position(self, market: QuickMarket) -> tuple[int, int]:
        return self._call(
            "positions",
            "GET",
            f"/api/v1/positions/{market.contract or market.market_id}",
            params={"user": self.address},
            auth=True,
            parse=lambda d: parse_position(d, market.market_id, self.address),
        )

    def resolution(self, market_id: str) -> bool | None:
        """Whether YES won, None until resolved (spec 6.3: check `resolved` first; the SDK's
        outcome defaults to YES while unresolved). Paper trading pays out on it."""
        d = self._call("resolution", "GET", f"/api/v1/resolution/{market_id}")
        if not isinstance(d, dict) or not d.get("resolved"):
            return None
        won = d.get("winningOutcome", d.get("outcome"))
        if won not in (0, 1, "0", "1"):
            raise ExchangeError("invalid", f"resolution: winningOutcome {won!r}")
        return int(won) == YES

    def failed_trades(self) -> list[FailedFill]:
        """The exchange's recent failed settlements (a global list: the engine keeps its own)."""
        return self._call(
            "failed_trades", "GET", "/api/v1/failed-trades", parse=FailedFill.parse_all
        )

    def balances(self) -> tuple[int, int]:
        d = self._call(
            "balances",
            "GET",
            f"/api/v1/users/{self.address}/balances",
            params={"chain_id": self.cfg.chain_id},
        )
        try:
            balance, allowance = int(d.get("balance", 0)), int(d.get("allowance", 0))
        except (AttributeError, TypeError, ValueError) as e:
            raise ExchangeError("invalid", f"balances: {type(e).__name__}") from None
        if balance < 0 or allowance < 0:
            raise ExchangeError("invalid", "balances: negative")
        return balance, allowance

    def _permit_nonce(self) -> int:
        d = self._call(
            "nonce",
            "GET",
            f"/api/v1/contracts/nonce/{self.chain['usdc']}/{self.address}",
            params={"chain_id": self.cfg.chain_id},
        )
        return int(d["nonce"])

    # -- writes ---------------------------------------------------------------------------------
    def approve_ctf(self, now: float) -> str:
        """Make the settlement contract our CTF operator (setApprovalForAll by permit through
        the relayer, spec 4.6); returns the relayer's transaction hash. Without it every SELL
        of shares the wallet holds fails at settlement."""
        if self.signer is None:
            raise ExchangeError("auth", "no signing key")
        d = self._call(
            "nonce",
            "GET",
            f"/api/v1/contracts/nonce/{self.chain['ctf']}/{self.address}",
            params={"chain_id": self.cfg.chain_id},
        )
        body = self.signer.sign_ctf_approval(
            int(d["nonce"]), int(now + self.cfg.permit_deadline_s)
        )
        r = self._call("ctf_approval", "POST", "/api/v1/relayer/ctf-approval", body=body, auth=True)
        return str((r or {}).get("tx_hash", "")) if isinstance(r, dict) else ""

    def prepare(self, now: float) -> dict[str, str]:
        """The one-time max USDC allowance (permit_mode=max) unless one is already in place;
        returns what was requested ({what: tx hash})."""
        done: dict[str, str] = {}
        if self.signer is None or self.cfg.permit_mode != "max":
            return done
        _, allowance = self.balances()
        if allowance >= 2**255:
            return done
        p = self.signer.sign_permit(MAX_UINT, self._permit_nonce(), MAX_UINT)
        r = self._call(
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
        done["usdc_permit"] = str((r or {}).get("tx_hash", "")) if isinstance(r, dict) else ""
        return done

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
        self.gate.check(market.market_id)
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

    def claim_data(self, contracts: list[str]) -> dict[str, dict[str, Any]]:
        """What claim-data says of each contract (read-only; preflight reads it too)."""
        return self._call(
            "claim_data",
            "GET",
            f"/api/v1/users/{self.address}/claim-data",
            params={"chain_id": self.cfg.chain_id, "markets": ",".join(contracts)},
            parse=parse_claim_data,
        )

    def claim(self, markets: list[tuple[str, str]], now: float) -> list[ClaimResult]:
        """Redeem resolved winnings for (market_id, contract) pairs; each result says what
        happened. Claiming twice is harmless: a paid market reports winning_balance 0."""
        if not markets or self.signer is None:
            return []
        by_contract = self.claim_data([c for _, c in markets])
        out = []
        nonce: int | None = None
        for mid, contract in markets:
            r = by_contract.get(contract.lower())
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
                handler.on_book(mid, parse_book(data, now, "stream"))
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
        except ReplyRejected as e:
            handler.on_rejected(e)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            handler.on_bad_frame(f"{type(e).__name__}: {str(e)[:80]}")


class TurbineStream:
    """The book feed thread (websocket-client). Owns the socket, reconnects with backoff and
    jitter, resubscribes. A quiet book is not a dead socket (the server sends nothing while
    nothing changes, spec 5.1): the thread pings every ws_silence_s / 4 and reconnects only
    when neither a frame nor a pong came for ws_silence_s. Delivers messages to the handler
    from its own thread: the handler writes shared state under the engine's lock."""

    live = True  # delivers from its own thread as frames arrive (paper and replay: in pump)

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
        self._reconnect = ""  # set by the engine: drop the socket and resubscribe

    @property
    def connected(self) -> bool:
        return self._connected

    def reconnect(self, reason: str) -> None:
        self._reconnect = reason

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

    def pump(self) -> None:
        return None  # delivered on the stream thread as each frame arrives

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
                last = pinged = time.monotonic()
                self._reconnect = ""
                while not self._stop.is_set():
                    if self._reconnect:
                        raise ConnectionError(f"reconnect: {self._reconnect}")
                    now = time.monotonic()
                    if now - max(last, pinged) > self.cfg.ws_silence_s / 4:
                        ws.ping()
                        pinged = now
                    try:
                        opcode, data = ws.recv_data(control_frame=True)
                    except websocket.WebSocketTimeoutException:
                        if time.monotonic() - last > self.cfg.ws_silence_s:
                            raise ConnectionError("stream silent: no frame, no pong") from None
                        continue
                    last = time.monotonic()  # any frame, a pong included, proves the socket
                    if opcode == websocket.ABNF.OPCODE_CLOSE:
                        raise ConnectionError("stream closed")
                    if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
                        continue
                    frame = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
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


class HermesStream:
    """The settlement oracle's price: Pyth Hermes server-sent events
    (/v2/updates/price/stream) on its own thread, handed to `on_price(asset, price,
    publish_time)`; reconnects with backoff, and after `read_s` without a line.

    A small reader over requests' streaming rather than an SSE library: Hermes sends only
    `data:` lines of JSON (no event names, ids or retry fields to honour), and requests is
    already pinned; sseclient-py or requests-sse would add a dependency for one loop."""

    def __init__(
        self,
        url: str,
        assets: list[str],
        key: str,
        on_price: Callable[[str, float, float], None],
        read_s: float,
    ) -> None:
        self.url = url.rstrip("/") + "/v2/updates/price/stream"
        self.ids = {PYTH_FEEDS[a]: a for a in assets if a in PYTH_FEEDS}
        self._key = key
        self.on_price = on_price
        self.read_s = read_s
        self.connected = False
        self.reason = ""
        self._stop = threading.Event()
        self._resp: requests.Response | None = None
        self._thread = threading.Thread(target=self._run, name="price-stream", daemon=True)

    def __repr__(self) -> str:
        return "HermesStream(<key redacted>)"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            if self._resp is not None:
                self._resp.close()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.25
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        while not self._stop.is_set():
            try:
                with requests.get(
                    self.url,
                    params=[("ids[]", "0x" + i) for i in self.ids],
                    headers=headers,
                    stream=True,
                    timeout=(5.0, self.read_s),
                    allow_redirects=False,  # the key goes to Hermes only
                ) as r:
                    self._resp = r
                    if r.status_code != 200:
                        raise ConnectionError(f"HTTP {r.status_code}")
                    self.connected, backoff = True, 0.25
                    for line in r.iter_lines():
                        if self._stop.is_set():
                            return
                        if line.startswith(b"data:"):
                            self._dispatch(line[5:])
                    raise ConnectionError("stream ended")
            except Exception as e:  # noqa: BLE001 -- any failure: reconnect, never die
                self.reason = f"{type(e).__name__}: {str(e)[:80]}"
            self.connected = False
            self._stop.wait(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 10.0)

    def _dispatch(self, raw: bytes) -> None:
        try:
            for u in json.loads(raw).get("parsed", []):
                asset = self.ids.get(str(u["id"]).lower().removeprefix("0x"))
                p = u["price"]
                px = int(p["price"]) * 10.0 ** int(p["expo"])
                if asset and px > 0 and math.isfinite(px):
                    self.on_price(asset, px, float(p["publish_time"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # a bad update is no price; freshness runs out on its own


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
    expires: float = math.inf  # its expiration (unix s): gone by then whatever we heard


NORMAL = NormalDist()


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


def price_consistent(price: float | None, strike: float, band: float) -> bool:
    """Whether an asset price can be this market's: within `band` of the strike. The price
    endpoint's scale is unconfirmed (spec 1.3); a price in the wrong unit (x1e6, x1e8) would
    read as probability 0 or 1, so it counts as missing instead."""
    return price is not None and strike > 0 and abs(price / strike - 1.0) <= band


def fair_value(
    book: Book,
    price: float | None,
    strike: float,
    seconds_left: float,
    cfg: Config,
    vol: float | None = None,
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
    if not price_consistent(price, strike, cfg.price_band):
        price = None
    # `vol`: the price's realized volatility when measured (realized_vol), else model_vol
    model = model_probability(price, strike, seconds_left, vol or cfg.model_vol)
    if src == "model":
        return model
    micro = micro_price(book)
    if model is None:
        return micro
    if micro is None:
        return model
    # a deep book aggregates many makers' views (some on faster prices than ours): it may
    # deserve more weight there (deep_model_weight)
    w = cfg.deep_model_weight if book_is_deep(book, cfg) else cfg.model_weight
    return w * model + (1 - w) * micro


def maker_rebate(price: float, shares: float, share: float) -> float:
    """A maker fill's rebate (spec 1.4, quick markets): `share` (20%) of a virtual taker fee
    of 0.25 (p(1-p))^2 of the fill's notional: 0.0016 USDC a share at 0.50, 0.0002 at 0.10.
    Paid daily, pro rata to makers' volume; payouts under $0.10 are skipped."""
    p = min(1.0, max(0.0, price))
    return share * 0.25 * (p * (1 - p)) ** 2 * price * shares


def binary_move(fair: float, seconds_left: float, horizon_s: float) -> float:
    """The binary's likely move (one standard deviation, probability units) over the next
    `horizon_s`: phi(d) x sqrt(h / tau) with d = N^-1(fair). It is largest near the strike
    and grows as expiry nears: where an informed taker's news is worth most."""
    if not 0.0 < fair < 1.0 or seconds_left <= 0:
        return 0.0
    d = NORMAL.inv_cdf(fair)
    return math.exp(-0.5 * d * d) / math.sqrt(2 * math.pi) * math.sqrt(
        min(1.0, horizon_s / seconds_left)
    )


def extremes_half_spread(fair: float, base_half: float, cfg: Config) -> float:
    """Half-spread after extremes widening: grows linearly as fair nears 0 or 1."""
    d = min(fair, 1.0 - fair)
    if cfg.extreme_zone > 0 and d < cfg.extreme_zone:
        return base_half + cfg.extreme_widen * (1.0 - d / cfg.extreme_zone)
    return base_half


def inventory_skew(inventory: float, cfg: Config, seconds_left: float = math.inf) -> float:
    """Shift of both quotes: long YES lowers them (sell sooner, buy later), short raises them.
    Within tminus_skew_s of expiry the shift grows linearly to tminus_skew_mult times: what is
    held at the end is a whole binary payout, not a mark, so it should be shed sooner there."""
    if cfg.max_position <= 0:
        return 0.0
    k = cfg.skew_factor
    if cfg.tminus_skew_s > 0 and seconds_left < cfg.tminus_skew_s:
        k *= 1.0 + (cfg.tminus_skew_mult - 1.0) * (1.0 - max(0.0, seconds_left) / cfg.tminus_skew_s)
    return -k * max(-1.0, min(1.0, inventory / cfg.max_position))


def book_is_deep(book: Book, cfg: Config) -> bool:
    """Whether `book` (others' orders only) holds deep_depth shares in its top five levels on
    each side within a few ticks of each other: a market where quotes compete at the touch."""
    if cfg.deep_depth <= 0 or not book.bids or not book.asks:
        return False
    if book.asks[0][0] - book.bids[0][0] > 0.03 * PRICE_SCALE:
        return False
    depth = min(sum(sz for _, sz in book.bids[:5]), sum(sz for _, sz in book.asks[:5]))
    return depth >= cfg.deep_depth * SIZE_SCALE


@dataclass(frozen=True)
class Signals:
    """What the engine measured of the flow, for quotes(): `toxicity` is how much our fills
    lost to the fair value's move over the next few seconds (per share, probability units;
    0: none measured, or they made money): the informed flow's price."""

    toxicity: float = 0.0


def quotes(
    fair: float,
    inventory: float,
    book: Book,
    seconds_left: float,
    cfg: Config,
    signals: Signals | None = None,
) -> list[Quote]:
    """Desired YES quotes. `inventory` is net YES-equivalent shares (YES minus NO): a SELL of
    YES not held is collateralised by a split and leaves NO shares, which count negative.
    `book` is the others' orders (ours taken out): a deep one is met at its touch."""
    if seconds_left <= cfg.tminus_pull_s or not 0.0 < fair < 1.0:
        return []
    deep = book_is_deep(book, cfg)
    half = cfg.deep_edge if deep else cfg.base_spread / 2
    if cfg.risk_spread > 0 and not deep:  # the binary's risk: fastest near strike and expiry
        half += cfg.risk_spread * binary_move(fair, seconds_left, cfg.risk_horizon_s)
    if cfg.deep_risk_spread > 0 and deep:  # the same, a touch maker's share of it
        half += cfg.deep_risk_spread * binary_move(fair, seconds_left, cfg.risk_horizon_s)
    if signals is not None and cfg.toxicity_k > 0:  # what the informed flow took lately
        half += cfg.toxicity_k * signals.toxicity
    size_sh = cfg.deep_order_size if deep else cfg.order_size
    if seconds_left <= cfg.tminus_widen_s:
        half *= cfg.tminus_widen_mult
        size_sh *= cfg.tminus_size_mult
    # 1. extremes widening is decided on fair value itself, BEFORE skew moves the centre:
    #    otherwise a large inventory could skew a near-certain market back into the zone
    #    where it is quoted tight.
    half = extremes_half_spread(fair, half, cfg)
    # 2. inventory skew moves the centre
    centre = fair + inventory_skew(inventory, cfg, seconds_left)
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
    ask = math.ceil(ask_p * PRICE_SCALE / tick - eps) * tick
    if deep:  # never further inside than the others' best plus deep_improve: no edge given away
        step = round(cfg.deep_improve * PRICE_SCALE)
        bid = min(bid, (book.bids[0][0] + step) // tick * tick)
        ask = max(ask, -((step - book.asks[0][0]) // tick) * tick)
    if book.best_ask is not None:
        bid = min(bid, (book.best_ask - 1) // tick * tick)
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
    passive_tolerance: int | None = None,
) -> tuple[list[LiveOrder], list[Quote]]:
    """(cancels, places): keep a live order that matches a desired quote's side and outcome,
    is within `tolerance` of its price (`passive_tolerance` when it rests further from fair
    than wanted: that costs fills, not money), has its size, is not mostly filled and not due
    for refresh; cancel the rest; place what is missing."""
    passive = tolerance if passive_tolerance is None else max(tolerance, passive_tolerance)
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
                and (q.price - o.price if q.side == BUY else o.price - q.price)
                < max(passive, 1)  # behind the wanted price: a wider tolerance
                and (o.price - q.price if q.side == BUY else q.price - o.price)
                < max(tolerance, 1)  # ahead of it (more aggressive): the tolerance
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


def take_out(
    journal: list[tuple[int, float, float, float]], side: int, price: float, shares: float
) -> None:
    """Remove `shares` of a (side, price) fill from a fill journal: a failed trade's part of a
    fill counted from filledSize (several trades can make one fill). Without such a fill (a
    journal that never saw it), book the reverse at that price instead."""
    for i, (sd, p, sh, fee) in enumerate(journal):
        if sd == side and abs(p - price) < 1e-9 and sh >= shares - 1e-9:
            left = sh - shares
            journal[i] = (sd, p, left, fee * left / sh if sh else 0.0)
            if left <= 1e-9:
                del journal[i]
            return
    journal.append((SELL if side == BUY else BUY, price, shares, 0.0))


# -- portfolio limits and capital budgets --------------------------------------------------------
# New risk-adding quotes must fit with this much of their own cost to spare; a side already
# resting only has to fit. Without it a quote at the edge of a limit would be placed and
# cancelled on alternate ticks as the fair value wiggles.
LIMIT_HYSTERESIS = 0.25


def exposure(position: float, fair: float) -> float:
    """Signed value at fair of a net YES-equivalent position (USDC): long YES shares are worth
    `fair` each (lost if NO wins), short ones (NO held) `1 - fair` each (lost if YES wins)."""
    return position * fair if position >= 0 else position * (1.0 - fair)


def position_cost(position: float, avg: float) -> float:
    """USDC tied up in a position until it is sold or resolves: YES bought at `avg`, or the
    collateral left after selling YES not held at `avg` (1 - avg per NO share)."""
    return position * avg if position >= 0 else -position * (1.0 - avg)


def order_cost(side: int, price: int, size: int) -> float:
    """USDC an order costs if it fills: a BUY pays its price, a SELL of YES not held is
    collateralised by a split (1 per share) and receives the price."""
    p, sh = price / PRICE_SCALE, size / SIZE_SCALE
    return sh * (p if side == BUY else 1.0 - p)


@dataclass(frozen=True)
class Headroom:
    """What one market may still add (USDC), given the rest of the portfolio. inf: no limit."""

    budget: float = math.inf  # its capital budget left after its position
    notional: float = math.inf  # open-order cost the portfolio may add (all markets)
    long: float = math.inf  # net exposure the portfolio may add upward (BUY fills)
    short: float = math.inf  # ... downward (SELL fills)


def limit_quotes(
    desired: Iterable[Quote],
    inventory: float,
    fair: float,
    room: Headroom,
    resting_sides: set[int],
) -> tuple[list[Quote], dict[int, str]]:
    """Cut desired quotes to the limits: (quotes, {side: limit that blocked it}).

    The inventory-reducing part of a quote (a SELL up to the YES held, a BUY up to the NO held)
    always passes: limits stop the sides that add risk, never the way out. The risk-adding part
    passes whole or not at all (a size that followed the headroom would be re-placed on every
    tick): within the market's budget, the portfolio's open-notional room, and the net exposure
    room in its direction (a BUY fill raises net exposure, a SELL fill lowers it)."""
    out: list[Quote] = []
    blocked: dict[int, str] = {}
    budget, notional = room.budget, room.notional
    for q in sorted(desired, key=lambda x: x.side):
        held = max(0.0, -inventory) if q.side == BUY else max(0.0, inventory)
        reduce_units = min(q.size, round(held * SIZE_SCALE))
        add_units = q.size - reduce_units
        if add_units <= 0:
            out.append(q)
            continue
        slack = 1.0 if q.side in resting_sides else 1.0 + LIMIT_HYSTERESIS
        add_cost = order_cost(q.side, q.price, add_units)
        cost = order_cost(q.side, q.price, q.size)
        shares = q.size / SIZE_SCALE
        after = inventory + shares if q.side == BUY else inventory - shares
        move = exposure(after, fair) - exposure(inventory, fair)
        why = ""
        if add_cost * slack > budget + 1e-9:
            why = "budget"
        elif cost * slack > notional + 1e-9:
            why = "open_notional"
        elif (move * slack > room.long + 1e-9) if q.side == BUY else (
            -move * slack > room.short + 1e-9
        ):
            why = "net_exposure"
        if not why:
            out.append(q)
            budget -= add_cost
            notional -= cost
            continue
        blocked[q.side] = why
        if reduce_units > 0:  # the reducing part alone
            out.append(Quote(q.side, q.outcome, q.price, reduce_units))
    return out, blocked


# =============================================================================================
# 5. ENGINE: the owners and the Bot that wires them together.
#
#   Threads and ownership (one lock, Feed.lock; everything else is the engine thread's alone)
#   | owner (section)   | state it alone writes                               | thread           |
#   | Feed              | books per market, stream connected, rollover hints, | its methods, from|
#   |                   | own-trade and dead-order news, streamed prices      | book-feed (via   |
#   |                   | (REST book reads come in through Feed.rest_book)    | FeedHandler),    |
#   |                   |                                                     | price-stream and |
#   |                   |                                                     | engine, locked   |
#   | Boundary          | runs of refused replies per endpoint (locked)       | engine, book-feed|
#   | Ledger            | realized totals, the UTC day's PnL, counters        | engine           |
#   | BookWatch         | its reconnect schedule; MarketState.unconfirmed     | engine           |
#   | PriceSource       | polled prices, source in use, prices as of the step | engine           |
#   | Risk              | day kill switch, MarketState.killed, capital,       | engine           |
#   |                   | budgets, Slot.blocked (what each limit holds back)  |                  |
#   | Orders            | MarketState.live, unconfirmed cancels, dry-run ids, | engine           |
#   |                   | the CTF approval                                    |                  |
#   | Fills             | MarketState fills, journal, PnL, exchange position, | engine           |
#   |                   | mismatch; failed settlements seen                   |                  |
#   | Claims            | markets to claim, their settled positions, waits,   | engine           |
#   |                   | backoffs, the given-up ones                         |                  |
#   | StateFile         | the state file; PnL carried over a restart          | engine           |
#   | Markets           | which market each slot quotes: the rollover itself  | engine           |
#   | Status            | nothing (reads all, sets gauges)                    | engine           |
#   | Tuning            | the SIGHUP request flag; applies reloads in place   | engine (+signal) |
#   | Bot               | slots (current market, schedule, quoting state),    | engine           |
#   |                   | MarketState.fair and price_off, the job schedule    |                  |
#   | book-feed thread  | the socket, reconnects, subscriptions               | its own          |
#   | price-stream      | the Hermes connection                               | its own          |
#   | alerts thread     | the webhook queue and its rate limit                | its own          |
#   | metrics server    | nothing: reads the registry                         | its own          |
#   | simulator         | everything in turbine_sim (--sim only)              | loopback only    |
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
    """What the stream threads share with the engine: each market's book, the stream's news
    and the streamed oracle prices. Every field is read and written under `lock`, and written
    only by the methods below: the book-feed thread (through FeedHandler), the price-stream
    thread (`put_price`) and the engine (`track`, `rest_book`, `take_news`, `read_back`).
    `wake` tells the engine to quote now."""

    def __init__(self, clock: Clock) -> None:
        self.lock = threading.Lock()
        # notified under `lock` whenever an order dies or a book arrives on the stream: the
        # engine waits on it for the stream to confirm a cancel (Orders.confirm_cancels)
        self.news = threading.Condition(self.lock)
        self.books_heard = 0  # stream books stored so far (orders what came after a cancel)
        self.wake = threading.Event()
        self.clock = clock
        self.books: dict[str, Book] = {}  # market id (lower case) -> book: the markets we quote
        self.connected = False
        self.hints: dict[MarketKey, dict[str, Any]] = {}  # rollover hints from the stream
        self.own_trades: set[str] = set()  # market ids where our address traded: poll fills
        self.cancelled: set[str] = set()  # order hashes the stream saw die
        # asset -> (price, publish time): the price-stream thread writes, the engine reads
        self.prices: dict[str, tuple[float, float]] = {}
        self.bad_frames = 0
        self.closing = False  # set by the engine before stop()
        # market id -> the stream book REST disproved (its levels), while the stream repeats
        # it: REST stands in (as while the stream is down), and how often it was repeated
        self.disputed: dict[str, tuple[Any, Any, float]] = {}  # (bids, asks, since)
        self.repeats: dict[str, int] = {}

    # -- the stream threads ----------------------------------------------------------------------
    def stream_book(self, market_id: str, book: Book) -> None:
        """A book heard on the stream; a change of the top of book wakes the engine. A book
        the same as the one held keeps its `checked` time (a publisher that repeats itself
        is not news); one REST disproved (`dispute`) is not taken at all while it repeats."""
        mid = market_id.lower()
        content = (book.bids, book.asks)
        with self.lock:
            old = self.books.get(mid)
            if old is None:
                return  # not a market we quote (any more)
            if mid in self.disputed:
                if content == self.disputed[mid][:2]:
                    self.repeats[mid] = self.repeats.get(mid, 0) + 1
                    return
                del self.disputed[mid]  # the stream moved on: its books are news again
                self.repeats.pop(mid, None)
            same = old.stream and content == (old.bids, old.asks)
            material = (book.best_bid, book.best_ask) != (old.best_bid, old.best_ask)
            checked = (old.checked or old.ts) if same else book.ts
            self.books[mid] = Book(book.bids, book.asks, book.ts, True, checked)
            self.books_heard += 1
            self.news.notify_all()
        if material:
            self.wake.set()

    def hint(self, keys: list[MarketKey], qm: dict[str, Any]) -> None:
        with self.lock:
            for k in keys:
                self.hints[k] = qm
        self.wake.set()

    def own_trade(self, market_id: str) -> None:
        with self.lock:
            self.own_trades.add(market_id.lower())  # "" (no id): every market checks
        self.wake.set()

    def order_died(self, order_hash: str) -> None:
        with self.lock:
            if len(self.cancelled) > 10_000:  # hashes no slot ever read back
                self.cancelled.clear()
            self.cancelled.add(order_hash)
            self.news.notify_all()

    def set_connected(self, connected: bool) -> None:
        with self.lock:
            self.connected = connected

    def bad_frame(self) -> int:
        with self.lock:
            self.bad_frames += 1
            return self.bad_frames

    def put_price(self, asset: str, price: float, published: float) -> bool:
        """A streamed oracle price; True when it is newer than the one held."""
        with self.lock:
            old = self.prices.get(asset)
            if old is not None and published <= old[1]:
                return False
            self.prices[asset] = (price, published)
            return True

    # -- the engine ------------------------------------------------------------------------------
    def book(self, market_id: str) -> Book | None:
        with self.lock:
            return self.books.get(market_id.lower())

    def is_connected(self) -> bool:
        with self.lock:
            return self.connected

    def track(self, market_id: str, old_id: str | None) -> None:
        """Rollover: stop keeping the old market's book, start an empty one for the new."""
        with self.lock:
            if old_id is not None:
                self.books.pop(old_id.lower(), None)
                self.disputed.pop(old_id.lower(), None)
                self.repeats.pop(old_id.lower(), None)
            self.books[market_id.lower()] = Book()

    def rest_book(
        self, market_id: str, rest: Book, now: float, seen: Book | None = None, force: bool = False
    ) -> bool | None:
        """The engine's REST read of a book, applied here under the lock (the stream thread's
        `stream_book` is the only other writer). With `seen`, the stream book that went quiet:
        a confirmation. The same top of book keeps it fresh (True), a different one leaves it
        to age (False); None when the stream spoke meanwhile (its book is the fresher one).
        A different one disputes the stream's book: REST's stands in, and the stream's is
        not taken again while it repeats it (`stream_book`). Without `seen`: a fallback
        read, taken while the stream is down or disputed, or right after a rollover
        (`force`) until the subscription's snapshot arrives."""
        mid = market_id.lower()
        with self.lock:
            cur = self.books.get(mid)
            if seen is not None:
                if cur is None or (cur.bids, cur.asks, cur.stream) != (seen.bids, seen.asks, True):
                    return None  # the stream told something new meanwhile (a repeat is not)
                agree = (seen.best_bid, seen.best_ask) == (rest.best_bid, rest.best_ask)
                if agree:
                    self.books[mid] = Book(seen.bids, seen.asks, now, True, now)
                else:
                    self.books[mid] = Book(rest.bids, rest.asks, now, False, now)
                    self.disputed[mid] = (seen.bids, seen.asks, now)
                return agree
            if cur is None or rest.ts < cur.ts:
                return False
            if (force and not cur.stream) or not self.connected or mid in self.disputed:
                self.books[mid] = rest
                return True
            return False

    def in_dispute(self, market_id: str) -> tuple[float, int] | None:
        """(since when REST has disproved the stream's book of this market, how often the
        stream repeated that book since), or None."""
        mid = market_id.lower()
        with self.lock:
            d = self.disputed.get(mid)
            return None if d is None else (d[2], self.repeats.get(mid, 0))

    def take_news(self) -> tuple[dict[MarketKey, dict[str, Any]], set[str]]:
        """The rollover hints (taken) and the markets with a trade of ours since their last
        read-back."""
        with self.lock:
            hints, self.hints = self.hints, {}
            own = set(self.own_trades)
            # a trade of ours without a market id asks every slot once; market ids stay until
            # that market's orders are read back (read_back)
            self.own_trades.discard("")
            return hints, own

    def prices_now(self) -> dict[str, tuple[float, float]]:
        """The streamed prices as of now: what a step's model uses (and what replay sees)."""
        with self.lock:
            return dict(self.prices)

    def dead(self, hashes: set[str]) -> set[str]:
        with self.lock:
            return self.cancelled & hashes

    def heard(self) -> int:
        """A mark: how many stream books were stored so far (see `wait_gone`)."""
        with self.lock:
            return self.books_heard

    def wait_gone(
        self, market_id: str, orders: list[LiveOrder], mark: int, timeout: float
    ) -> set[str]:
        """Wait up to `timeout` (real s) until the stream says each order is gone: its cancel
        event, or a book heard after `mark` without its price level on its side (no order
        rests there at all). Returns the hashes it confirmed."""
        mid = market_id.lower()

        def gone() -> set[str]:
            book = self.books.get(mid)
            fresh = book is not None and book.stream and self.books_heard > mark
            out = set()
            for o in orders:
                levels = (book.bids if o.side == BUY else book.asks) if fresh else ()
                if o.order_hash in self.cancelled or (
                    fresh and all(p != o.price for p, _ in levels)
                ):
                    out.add(o.order_hash)
            return out

        want = {o.order_hash for o in orders}
        with self.lock:
            self.news.wait_for(lambda: gone() >= want, timeout)
            return gone()

    def read_back(self, market_id: str, hashes: set[str]) -> None:
        """A market's orders were read back: its trade and cancel news is known."""
        with self.lock:
            self.cancelled -= hashes
            self.own_trades.discard(market_id.lower())


class FeedHandler:
    """StreamHandler for the book-feed thread: checks what a frame says, then writes it into
    Feed through Feed's methods."""

    def __init__(
        self,
        feed: Feed,
        address: str,
        keys: list[MarketKey],
        log: EventLog,
        recorder: Recorder | None = None,
        boundary: Boundary | None = None,
    ) -> None:
        self.feed = feed
        self.address = address.lower()
        self.keys = keys
        self.log = log
        self.recorder = recorder
        self.boundary = boundary

    def on_book(self, market_id: str, book: Book) -> None:
        book = Book(book.bids, book.asks, self.feed.clock.now(), True)  # fresh = when we heard it
        if self.recorder is not None:
            self.recorder.book(market_id, book)
        self.feed.stream_book(market_id, book)

    def on_trade(self, market_id: str, trade: dict[str, Any]) -> None:
        mine = self.address in {
            str(trade.get(k, "")).lower() for k in ("buyer", "seller", "maker", "taker")
        }
        if self.recorder is not None and not trade.get("paper"):  # paper fills are ours
            self.recorder.write("trade", {**trade, "marketId": market_id})
        if mine:
            self.feed.own_trade(market_id)

    def on_market(self, qm: dict[str, Any]) -> None:
        asset = str(qm.get("asset", "")).upper()
        try:
            interval = int(qm.get("intervalMinutes") or 0)
        except (TypeError, ValueError):
            interval = 0
        # a hint without an interval may be any of the asset's series: each one polls
        hit = [k for k in self.keys if k.asset == asset and interval in (0, k.interval)]
        if hit:
            self.feed.hint(hit, qm)

    def on_order_cancelled(self, market_id: str, data: dict[str, Any]) -> None:
        h = str(data.get("orderHash", "")).lower()
        if h:
            self.feed.order_died(h)

    def on_status(self, connected: bool, reason: str = "") -> None:
        self.feed.set_connected(connected)
        closing = self.feed.closing  # our own shutdown closes it: not a warning
        self.log.event(
            "stream_connected" if connected else "stream_disconnected",
            level="INFO" if connected or closing else "WARNING",
            **({"reason": reason} if reason and not connected else {}),
        )
        self.feed.wake.set()

    def on_bad_frame(self, why: str) -> None:
        n = self.feed.bad_frame()
        if n <= 20 or n % 100 == 0:  # bounded: a flood of garbage must not flood the log
            self.log.event("error", level="WARNING", kind="bad_frame", why=why, count=n)

    def on_rejected(self, e: ExchangeError) -> None:
        """A frame that parsed but cannot be true (a crossed book): dropped, so that book
        ages toward stale instead of being believed."""
        n = self.feed.bad_frame()
        if self.boundary is not None and (n <= 20 or n % 100 == 0):
            self.boundary.rejected("stream", e)


class EventLog:
    """Structured JSON lines: ts, level, bot, event, fields. Thread-safe."""

    PROBE_S = 1.0  # a failing log is tried again at most this often (market seconds)

    def __init__(self, path: str, bot: str, echo: Callable[[str], None] | None = None) -> None:
        self.bot = bot
        self.path = path
        self._lock = threading.Lock()
        self._fh = sys.stdout if path == "-" else open(path, "a", encoding="utf-8")
        self.echo = echo
        self.counts: dict[str, int] = {}
        self.clock: Callable[[], float] | None = None  # market time, set by the engine
        # the last write failed (disk full, I/O error): its reason, else None. Risk fails the
        # bot closed on it; listeners (the webhook) still hear every record
        self.failing: str | None = None
        self._probed = -math.inf  # market time of the last probe while failing
        # called with every record after it is written (any thread; must not block): alerts
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

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
            try:
                self._fh.write(line + "\n")
                self._fh.flush()
                self.failing = None
            except (OSError, ValueError) as e:  # ValueError: written after close
                first = self.failing is None
                self.failing = f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"[:120]
                if first:
                    print(f"{self.bot}: cannot write {self.path}: {self.failing}", file=sys.stderr)
        if self.failing is not None:
            rec = {**rec, "log_write_failed": self.failing}
        for listen in self.listeners:
            listen(rec)
        if self.echo is not None and event in ECHO_EVENTS:
            self.echo(
                f"{event:>14} "
                + " ".join(
                    f"{k}={short(v)}"
                    for k, v in fields.items()
                    if k not in ("order_hash", "config", "markets") or not isinstance(v, dict)
                )
            )

    def writable(self) -> bool:
        """Whether the log takes writes; while it has been failing, a `log_recovered` line
        is the probe (nothing else may be logged meanwhile: a quiet engine must find out),
        at most every PROBE_S of market time (Risk.blocked asks before every order: one
        probe a step, not one a question)."""
        if self.failing is None:
            return True
        now = self.clock() if self.clock is not None else time.monotonic()
        if now - self._probed >= self.PROBE_S:
            self._probed = now
            self.event("log_recovered", level="WARNING", after=self.failing)
        return self.failing is None

    def close(self) -> None:
        if self._fh is not sys.stdout:
            with contextlib.suppress(OSError):
                self._fh.close()


def short(v: Any) -> Any:
    """A hash or address in the pane: its first 10 characters (the log keeps it whole)."""
    if isinstance(v, str) and v.startswith("0x") and len(v) > 14:
        return v[:10] + ".."
    return v


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
    "risk_limit",
    "capital",
    "reply_rejected",
    "position_implausible",
    "params_reloaded",
}


class Alerter:
    """Webhook alerts (SPIKE_ALERT_WEBHOOK) for the events nobody should sleep through.

    It listens to the JSON log (any thread; `on_event` only files the record) and posts from
    its own thread, so a slow or dead webhook never delays the tick. One JSON body that Slack
    (`text`) and Discord (`content`) incoming webhooks both accept. The same alert (kind and
    market) at most every `alert_repeat_s`, 30 at most an hour, each a few lines built from
    the event's public fields: never a key, a secret or the webhook's own URL.
    """

    WINDOW_S = 300.0  # the error-rate window

    def __init__(
        self,
        url: str,
        cfg: Config,
        clock: Callable[[], float],
        post: Callable[..., Any] | None = None,
    ) -> None:
        self._url = url
        self.cfg = cfg
        self.clock = clock  # market time: fail-closed durations are measured on it
        self.post = post or requests.post
        self.q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=1000)
        self.closed_since: dict[str, tuple[float, str]] = {}  # slot -> (since, reason)
        self.closed_sent: set[str] = set()
        self.errors: list[float] = []
        self.rejected: dict[str, list[float]] = {}  # endpoint -> times of refused replies
        self.last: dict[str, float] = {}  # alert key -> wall time sent
        self.sent_times: list[float] = []
        self.sent = 0
        self.failed = 0
        self.suppressed = 0
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return "Alerter(<webhook redacted>)"

    # -- any thread ------------------------------------------------------------------------------
    def on_event(self, rec: dict[str, Any]) -> None:
        if rec.get("event") in ALERT_EVENTS or "log_write_failed" in rec:
            with contextlib.suppress(queue.Full):
                self.q.put_nowait(rec)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (the shutdown alert among it), then stop."""
        with contextlib.suppress(queue.Full):
            self.q.put(None, timeout=timeout)
        self._thread.join(timeout)

    # -- the alerts thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                rec = self.q.get(timeout=1.0)
            except queue.Empty:
                rec = {}
            if rec is None:
                return
            try:
                if rec:
                    self._file(rec)
                self._check_closed()
            except Exception:  # noqa: BLE001 -- an alert must never take anything down
                self.failed += 1

    def _file(self, r: dict[str, Any]) -> None:
        ev, slot = r["event"], str(r.get("slot") or "")
        bot = str(r.get("bot", ""))
        if "log_write_failed" in r:  # the disk: the webhook is the only voice left
            self._send("disk:log", f"{bot}: CANNOT WRITE ITS LOG ({r['log_write_failed']}); "
                       "quoting stops until the disk is writable")
        if ev == "reply_rejected":
            ep = str(r.get("endpoint", ""))
            now = time.monotonic()
            seen = [t for t in self.rejected.get(ep, []) if now - t < self.WINDOW_S] + [now]
            self.rejected[ep] = seen
            if len(seen) >= 3:  # one bad reply is noise; three in 5 minutes is the API
                self._send(
                    f"rejected:{ep}",
                    f"{bot}: {len(seen)} replies of {ep} refused in 5 min (last: "
                    f"{r.get('field')}={str(r.get('value'))[:40]}: {r.get('why')})",
                )
        elif ev == "position_implausible":
            self._send(
                f"implausible:{slot}",
                f"{bot}: {slot} position NOT BELIEVABLE (YES {r.get('yes')}, NO {r.get('no')}, "
                f"our orders could fill {r.get('capacity')}): market stopped, last good kept",
            )
        elif ev == "claim_waiting":
            self._send(
                f"claim_waiting:{r.get('market')}",
                f"{bot}: a claim has waited {float(r.get('waited_s') or 0) / 3600:.1f} h "
                f"({slot} market {str(r.get('market'))[:12]}): still asked, not yet paid",
            )
        elif ev == "claim_given_up":
            self._send(
                f"claim_given_up:{r.get('market')}",
                f"{bot}: CLAIM GIVEN UP after {float(r.get('waited_s') or 0) / 3600:.1f} h "
                f"({slot} market {str(r.get('market'))[:12]}): in the state file, claim by hand",
            )
        elif ev == "error" and r.get("kind") == "state_write_failed":
            self._send("disk:state", f"{bot}: cannot write its state file ({r.get('reason')})")
        elif ev == "fail_closed":
            self.closed_since.setdefault(slot, (float(r.get("t", self.clock())), str(r["reason"])))
        elif ev == "resumed":
            self.closed_since.pop(slot, None)
            self.closed_sent.discard(slot)
        elif ev == "kill_switch":
            scope = r.get("scope")
            self._send(
                f"kill:{scope}:{slot}",
                f"{bot}: KILL SWITCH ({scope}) {slot} PnL {r.get('pnl')} USDC: "
                + ("every market stopped" if scope == "day" else "this market stopped"),
            )
        elif ev == "risk_limit" and r.get("state") == "on":
            self._send(
                f"limit:{slot}:{r.get('side')}:{r.get('limit')}",
                f"{bot}: {slot} {r.get('side')} held back by {r.get('limit')} "
                f"(open notional {r.get('open_notional')}, net exposure {r.get('net_exposure')})",
            )
        elif ev == "cancel_unconfirmed":
            self._send(
                f"cancel:{slot}",
                f"{bot}: {slot} cancel NOT confirmed for {str(r.get('order_hash'))[:18]} "
                f"({r.get('error')}); retrying every tick",
            )
        elif ev == "fill_reversed":
            self._send(
                f"reversed:{slot}",
                f"{bot}: {slot or r.get('market', '')[:10]} fill reversed at settlement: "
                f"{r.get('side')} {r.get('size')} @ {r.get('price')} ({r.get('reason')})",
            )
        elif ev == "error":
            now = time.monotonic()
            self.errors = [t for t in self.errors if now - t < self.WINDOW_S] + [now]
            if len(self.errors) >= self.cfg.alert_errors:
                self._send(
                    "errors",
                    f"{bot}: {len(self.errors)} errors in 5 min (last: {r.get('kind')} "
                    f"{str(r.get('reason') or r.get('error') or '')[:80]})",
                )
        elif ev == "shutdown":
            ok = r.get("orders_left_ok")
            self._send(
                "shutdown",
                f"{bot}: STOPPED, realized {r.get('realized')} USDC, "
                + ("no order left" if ok else "ORDERS MAY BE LEFT: check the exchange"),
                force=True,
            )

    def _check_closed(self) -> None:
        now = self.clock()
        for slot, (since, reason) in list(self.closed_since.items()):
            if slot not in self.closed_sent and now - since >= self.cfg.alert_fail_closed_s:
                self.closed_sent.add(slot)
                self._send(
                    f"closed:{slot}",
                    f"{self.cfg.bot_name}: {slot or 'all markets'} not quoting for "
                    f"{now - since:.0f} s ({reason})",
                )

    def _send(self, key: str, text: str, force: bool = False) -> None:
        wall = time.monotonic()
        self.sent_times = [t for t in self.sent_times if wall - t < 3600]
        recent = wall - self.last.get(key, -math.inf) < self.cfg.alert_repeat_s
        if not force and (recent or len(self.sent_times) >= 30):
            self.suppressed += 1
            return
        self.last[key] = wall
        self.sent_times.append(wall)
        if self.suppressed:
            text += f" ({self.suppressed} alerts suppressed before this one)"
            self.suppressed = 0
        try:
            r = self.post(
                self._url, json={"text": text, "content": text[:2000]}, timeout=5
            )
            ok = getattr(r, "status_code", 200) < 400
        except requests.RequestException:
            ok = False
        if ok:
            self.sent += 1
        else:
            self.failed += 1


ALERT_EVENTS = frozenset(
    {
        "fail_closed",
        "resumed",
        "kill_switch",
        "risk_limit",
        "cancel_unconfirmed",
        "fill_reversed",
        "error",
        "shutdown",
        "reply_rejected",
        "position_implausible",
    }
)


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

    def book(self, market_id: str, book: Book, rest: bool = False) -> None:
        """`rest`: read over REST by the engine (replay serves it to the engine's read), not
        heard on the stream."""
        d: dict[str, Any] = {"m": market_id, "b": book.bids, "a": book.asks}
        if rest:
            d["rest"] = 1
        self.write("book", d)

    def market(self, qm: QuickMarket) -> None:
        self.write("market", dataclasses.asdict(qm))

    def close(self) -> None:
        self._handler.close()
        self._log.removeHandler(self._handler)


@dataclass
class MarketMetrics:
    """One market's children of the labelled metrics (labels bot, market)."""

    orders: Any
    cancels: Any
    fills: Any
    placed_size: Any
    filled_size: Any
    fill_ratio: Any
    pnl_realized: Any
    pnl_unrealized: Any
    inventory: Any
    feed_age: Any
    quoting: Any
    budget: Any
    budget_used: Any
    reversed: Any
    price_age: Any
    price_streamed: Any
    markout_short: Any
    markout_long: Any
    rebates: Any
    closed: Any


class Metrics:
    """Prometheus metrics (prometheus-client), one registry per bot; optional HTTP server.
    The same names for both bots, told apart by the `bot` label; per-market series carry a
    `market` label (BTC:15): sum over it for the portfolio."""

    def __init__(self, bot: str, port: int = 0) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            ProcessCollector,
        )

        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # process_resident_memory_bytes, CPU, open files
        lb = ["bot", "market"]
        self._per_market = {
            "orders": Counter("spike_orders_placed", "orders placed", lb, registry=r),
            "cancels": Counter("spike_orders_cancelled", "orders cancelled", lb, registry=r),
            "fills": Counter("spike_fills", "fills", lb, registry=r),
            "placed_size": Counter("spike_placed_shares", "shares placed", lb, registry=r),
            "filled_size": Counter("spike_filled_shares", "shares filled", lb, registry=r),
            "fill_ratio": Gauge("spike_fill_ratio", "filled / placed size", lb, registry=r),
            "pnl_realized": Gauge("spike_pnl_realized_usdc", "realized PnL", lb, registry=r),
            "pnl_unrealized": Gauge(
                "spike_pnl_unrealized_usdc", "unrealized PnL at fair", lb, registry=r
            ),
            "inventory": Gauge(
                "spike_inventory_shares", "net YES-equivalent shares", lb, registry=r
            ),
            "feed_age": Gauge("spike_feed_age_seconds", "age of the book", lb, registry=r),
            "quoting": Gauge(
                "spike_quoting", "1 when quoting, 0 when failed closed", lb, registry=r
            ),
            "budget": Gauge("spike_budget_usdc", "capital budget of the market", lb, registry=r),
            "budget_used": Gauge(
                "spike_budget_used_usdc", "USDC tied in the market's position", lb, registry=r
            ),
            "reversed": Counter(
                "spike_fills_reversed", "fills that failed at settlement", lb, registry=r
            ),
            "price_age": Gauge(
                "spike_price_age_seconds", "age of the model price (-1: none)", lb, registry=r
            ),
            "price_streamed": Gauge(
                "spike_price_streamed", "1: the oracle's stream, 0: Turbine's poll", lb, registry=r
            ),
            "rebates": Counter(
                "spike_rebates_estimated_usdc",
                "maker rebates our fills earn, estimated by spec 1.4's formula (not in realized)",
                lb,
                registry=r,
            ),
            "closed": Counter(
                "spike_closed_seconds",
                "market seconds failed closed, by reason",
                ["bot", "market", "reason"],
                registry=r,
            ),
            "markout_short": Gauge(
                "spike_markout_short_per_share",
                "fills marked against fair markout_s later, per share (USDC; + made money)",
                lb,
                registry=r,
            ),
            "markout_long": Gauge(
                "spike_markout_30s_per_share",
                "fills marked against fair 30 s later, per share (USDC; + made money)",
                lb,
                registry=r,
            ),
        }
        self.open_notional = Gauge(
            "spike_portfolio_open_notional_usdc",
            "USDC our open orders cost if all filled",
            ["bot"],
            registry=r,
        ).labels(bot)
        self.net_exposure = Gauge(
            "spike_portfolio_net_exposure_usdc",
            "net position value at fair, all markets",
            ["bot"],
            registry=r,
        ).labels(bot)
        self.day_pnl = Gauge(
            "spike_portfolio_day_pnl_usdc", "PnL of the UTC day, all markets", ["bot"], registry=r
        ).labels(bot)
        self.capital = Gauge(
            "spike_capital_usdc", "USDC split between the budgets", ["bot"], registry=r
        ).labels(bot)
        self._limited = Gauge(
            "spike_risk_limited",
            "sides held back by a limit, by limit",
            ["bot", "limit"],
            registry=r,
        )
        self._latency = Histogram(
            "spike_request_seconds",
            "request latency",
            ["bot", "endpoint"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self._errors = Counter("spike_errors", "errors by kind", ["bot", "kind"], registry=r)
        self._rejected = Counter(
            "spike_replies_rejected",
            "exchange replies refused at the boundary",
            ["bot", "endpoint", "field"],
            registry=r,
        )
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

    def market(self, key: MarketKey) -> MarketMetrics:
        kids: dict[str, Any] = {
            k: m.labels(self.bot, str(key)) for k, m in self._per_market.items() if k != "closed"
        }
        closed = self._per_market["closed"]  # one more label: the reason, given when it counts
        kids["closed"] = lambda reason: closed.labels(self.bot, str(key), reason)
        return MarketMetrics(**kids)

    def limited(self, counts: dict[str, int]) -> None:
        for limit in ("budget", "open_notional", "net_exposure"):
            self._limited.labels(self.bot, limit).set(counts.get(limit, 0))

    def request_done(self, endpoint: str, seconds: float, outcome: str) -> None:
        self._latency.labels(self.bot, endpoint).observe(seconds)
        self._requests.labels(self.bot, endpoint, outcome).inc()
        with self._lock:
            self.requests_total += 1
        if outcome != "ok":
            self.error(outcome)

    def rejected(self, endpoint: str, fld: str) -> None:
        self._rejected.labels(self.bot, endpoint, fld).inc()

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

    @classmethod
    def replay(cls, base: PnL, journal: Iterable[tuple[int, float, float, float]]) -> PnL:
        """`base` (what a restart carried over; zero for a new market) with the journal's
        fills booked on top: the one way PnL is rebuilt, so no rebuild forgets the carry."""
        pnl = dataclasses.replace(base)
        for side, price, shares, fee in journal:
            pnl.fill(side, price, shares, fee)
        return pnl


# A market's fill journal is kept whole up to this many entries; past it the oldest half is
# folded into the base (a fill that fails at settlement does so within seconds, never
# thousands of fills later), so the journal and the state file stay small in a deep market.
JOURNAL_MAX = 2000


class GoodRead(NamedTuple):
    """A believable position read and what could move it after: our orders' placed totals
    then, the shares then resting on each side, and the fills booked then but not yet in the
    position (the net lag, as BUY or SELL shares)."""

    yes: int
    no: int
    placed_buy: float
    placed_sell: float
    rest_buy: float
    rest_sell: float
    lag_buy: float
    lag_sell: float


@dataclass
class MarketState:
    """Everything the engine knows about the market a slot quotes; a new one at rollover.
    Each group of fields has one writer, named above it (the table at the section's head)."""

    qm: QuickMarket
    # Orders: our live orders, cancels not yet confirmed, dry-run order ids
    live: dict[str, LiveOrder] = field(default_factory=dict)
    # cancels we doubt (an error, or a read-back that still shows the order open): logged
    # once each; no new order goes out on that side while one of them may rest
    unconfirmed_cancels: set[str] = field(default_factory=set)
    cancel_ok: set[str] = field(default_factory=set)  # the exchange answered their cancel
    dry_seq: int = 0
    # shares our orders in this market could have filled: every size placed or adopted, plus
    # what a restart carried over (bounds a believable position); and the same per side,
    # placed or adopted only (bounds each read against the last good one: Fills.believable)
    capacity: float = 0.0
    placed_buy: float = 0.0
    placed_sell: float = 0.0
    # orders that may still fill (hash -> side, size): placed or adopted, until a read-back
    # shows them filled, cancelled or expired (a cancelled order's last fill can still come)
    may_fill: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Fills (and Orders.sync, which counts fills per order for it)
    filled: dict[str, int] = field(default_factory=dict)  # order hash -> size counted
    meta: dict[str, tuple[int, int]] = field(default_factory=dict)  # hash -> (side, price)
    pnl: PnL = field(default_factory=PnL)
    # pnl = base + journal: `base` is what a restart carried over (and the oldest fills,
    # folded in past JOURNAL_MAX), the journal every fill booked since, in order: (side,
    # price, shares, fee). A fill that failed at settlement is taken out of the journal and
    # pnl rebuilt (PnL.replay), on top of the base, never from zero.
    base: PnL = field(default_factory=PnL)
    journal: list[tuple[int, float, float, float]] = field(default_factory=list)
    exch_yes: int = 0
    exch_no: int = 0
    next_orders_sync: float = 0.0  # clock time of the next unconditional orders read
    mismatch: float | None = None  # exchange inventory seen once that differs from ours
    mismatch_since: float = 0.0  # clock time it was first seen
    implausible: bool = False  # the last position read was beyond capacity: fail closed
    # the last good position read and what could fill after it (Fills.snapshot); None until
    # the market's first good read
    good: GoodRead | None = None
    # Risk: this market's loss kill switch
    killed: bool = False
    # BookWatch: ts of the stream book REST last disagreed with (logged once)
    unconfirmed: float = 0.0
    # Bot (the quote step): the fair value and whether a bad asset price was logged
    fair: float | None = None
    price_off: bool = False


@dataclass
class Counters:
    """Run counters; the engine keeps one per market and one for the total."""

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
    books_confirmed: int = 0  # quiet stream books that REST confirmed
    cancels_streamed: int = 0  # cancels before a replacement, confirmed by the stream
    cancels_read_back: int = 0  # ... confirmed by reading our orders back over REST
    reversals: int = 0  # fills that failed at settlement, taken back
    rebates_est: float = 0.0  # maker rebates our fills earn, estimated (USDC; spec 1.4)


@dataclass
class Slot:
    """One quick-market series the bot quotes (BTC:15, ...): its current market, schedule,
    quoting state, budget and counters. Owned by the engine thread; its book lives in Feed."""

    key: MarketKey
    metrics: MarketMetrics
    m: MarketState | None = None
    c: Counters = field(default_factory=Counters)
    realized: float = 0.0  # realized PnL of this series' finished markets
    quoting: bool = False
    closed_reason: str | None = "starting"
    closed_since: float | None = None
    need_resync: bool = False
    due: dict[str, float] = field(default_factory=dict)
    budget: float = 0.0  # USDC; 0 until the balance is known: only reducing quotes
    blocked: dict[int, str] = field(default_factory=dict)  # side -> limit holding it back

    @property
    def name(self) -> str:
        return str(self.key)

    def open_cost(self) -> float:
        """USDC its resting orders cost if they all fill."""
        if self.m is None:
            return 0.0
        return sum(order_cost(o.side, o.price, o.remaining) for o in self.m.live.values())

    def exposure(self) -> float:
        """Its position's signed value at fair (0.5 before the first fair value)."""
        if self.m is None:
            return 0.0
        return exposure(self.m.pnl.position, self.m.fair if self.m.fair is not None else 0.5)

    def tied(self) -> float:
        """USDC its position ties up (what it uses of its budget)."""
        return position_cost(self.m.pnl.position, self.m.pnl.avg) if self.m else 0.0

    def open_pnl(self) -> float:
        """Realized + unrealized PnL of its current market."""
        return self.m.pnl.realized + self.m.pnl.unrealized(self.m.fair) if self.m else 0.0


def _due(table: dict[str, float], name: str, period: float, now: float) -> bool:
    if now >= table.get(name, 0.0):
        table[name] = now + period
        return True
    return False


def _side(side: int) -> str:
    return "BUY" if side == BUY else "SELL"


# -- the boundary: replies refused ----------------------------------------------------------------
class Boundary:
    """Replies the engine refused to believe (the exchange's CallPolicy reports them from the
    engine thread, FeedHandler from the book-feed thread: the lock guards the runs). Each is
    logged `reply_rejected` (endpoint, field, value, why) and counted in
    spike_replies_rejected_total; never booked, reconciled, rolled onto or used to drop a
    claim. A run of RUN on one read the quote step depends on is a failing host: Risk.blocked
    says `bad_replies` until that read answers believably again, or until RUN_WINDOW_S pass
    without another refusal (a read nobody repeats must not close the bot for good; one that
    is repeated and still bad renews it). Not the quick-market poll: it only matters for the
    next market, and the current one is known."""

    RUN = 2
    RUN_WINDOW_S = 10.0  # market seconds
    QUOTE_READS = frozenset({"orders", "positions", "orderbook", "price"})

    def __init__(self, log: EventLog, metrics: Metrics, clock: Clock) -> None:
        self.log = log
        self.metrics = metrics
        self.clock = clock
        self._lock = threading.Lock()
        self.runs: dict[str, tuple[int, float]] = {}  # read -> (refused in a row, last time)

    @staticmethod
    def _read(endpoint: str) -> str:
        return "orders" if endpoint == "orders_sync" else endpoint  # one reply, two urgencies

    def rejected(self, endpoint: str, e: ExchangeError) -> None:
        key = self._read(endpoint)
        with self._lock:
            n = self.runs.get(key, (0, 0.0))[0] + 1
            self.runs[key] = (n, self.clock.now())
        if isinstance(e, ReplyRejected):
            fld, value, why = e.field, e.value, e.why
        else:  # a body that could not be read at all
            fld, value, why = "body", "", e.message[:120]
        self.metrics.rejected(endpoint, fld)
        self.log.event(
            "reply_rejected",
            level="WARNING",
            endpoint=endpoint,
            field=fld,
            value=value,
            why=why,
            run=n,
        )

    def ok(self, endpoint: str) -> None:
        if self.runs:
            with self._lock:
                self.runs.pop(self._read(endpoint), None)

    def failing(self) -> str | None:
        """The read whose replies keep failing the checks, if any."""
        now = self.clock.now()
        with self._lock:
            return next(
                (
                    ep
                    for ep, (n, last) in self.runs.items()
                    if n >= self.RUN and ep in self.QUOTE_READS and now - last < self.RUN_WINDOW_S
                ),
                None,
            )


# -- the ledger: realized PnL and run counters ----------------------------------------------------
class Ledger:
    """Realized PnL and the run's counters (engine thread). Owns the run's realized total over
    finished markets, the UTC day's PnL and the total counters; each slot's own counters and
    realized PnL are added to only through `count` and `realize`."""

    def __init__(self, slots: list[Slot]) -> None:
        self.slots = slots
        self.c = Counters()  # totals over the slots
        self.realized_total = 0.0
        self.day = ""
        self.day_pnl = 0.0

    def count(self, s: Slot, name: str, v: float = 1) -> None:
        for c in (s.c, self.c):
            setattr(c, name, getattr(c, name) + v)

    def realize(self, slot_name: str, v: float) -> None:
        """PnL a finished market realized: its trading at rollover, its position at resolution."""
        self.realized_total += v
        self.day_pnl += v
        for s in self.slots:
            if s.name == slot_name:
                s.realized += v

    def roll_day(self, now: float) -> bool:
        """A new UTC day starts the day's PnL at 0; True when it did."""
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        if day == self.day:
            return False
        self.day, self.day_pnl = day, 0.0
        return True

    def inventory(self, s: Slot | None = None) -> float:
        """Net YES-equivalent shares of one slot, or summed over all."""
        return sum(x.m.pnl.position for x in ([s] if s else self.slots) if x.m)

    def pnl_now(self, s: Slot | None = None) -> tuple[float, float]:
        """(realized over the run incl. settled markets, unrealized on the current markets),
        of one slot or of the whole portfolio."""
        if s is not None:
            if s.m is None:
                return s.realized, 0.0
            return s.realized + s.m.pnl.realized, s.m.pnl.unrealized(s.m.fair)
        live = [x.m for x in self.slots if x.m]
        return (
            self.realized_total + sum(m.pnl.realized for m in live),
            sum(m.pnl.unrealized(m.fair) for m in live),
        )


# -- what every owner reads ---------------------------------------------------------------------
@dataclass(frozen=True)
class Engine:
    """What every owner below reads: the settings (one Config, changed in place by Tuning),
    the clock, the exchange, the log, the metrics, the slots, the recorder and whether this
    is a dry run. Bot builds it once; each owner gets it and its own collaborators."""

    cfg: Config
    clock: Clock
    ex: Exchange
    log: EventLog
    metrics: Metrics
    slots: list[Slot]
    recorder: Recorder | None
    dry_run: bool


class Owner:
    """An owner of one part of the engine's state (engine thread unless its header says)."""

    def __init__(self, e: Engine) -> None:
        self.cfg, self.clock, self.ex, self.log = e.cfg, e.clock, e.ex, e.log
        self.metrics, self.slots, self.recorder, self.dry_run = (
            e.metrics, e.slots, e.recorder, e.dry_run,
        )


# -- feed health ----------------------------------------------------------------------------------
class BookWatch(Owner):
    """Feed health (engine thread): how old each market's book is, the REST reads that confirm
    a quiet stream book or stand in while the stream is down (handed to Feed.rest_book, the
    books' one owner), and a reconnect when a connected stream's book stays stale."""

    def __init__(self, e: Engine, feed: Feed) -> None:
        super().__init__(e)
        self.feed = feed
        self.next_kick = 0.0  # clock time before which a stale stream is not reconnected again

    def age(self, market_id: str) -> float:
        b = self.feed.book(market_id)
        return self.clock.now() - b.ts if b is not None and b.ts else float("inf")

    def fresh(self, market_id: str) -> bool:
        return self.age(market_id) <= self.cfg.stale_after_s

    def book_excluding_own(self, s: Slot) -> Book:
        """The market without our own orders, so we neither clamp to nor price off ourselves."""
        m = s.m
        assert m is not None
        book = self.feed.book(m.qm.market_id) or Book()
        if not m.live:
            return book
        own: dict[tuple[int, int], int] = {}
        for o in m.live.values():
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

    def _read(self, s: Slot, kind: str) -> Book | None:
        assert s.m is not None
        mid = s.m.qm.market_id
        try:
            book = self.ex.orderbook(mid, self.clock.now())
        except ExchangeError as e:
            self.log.event("error", level="WARNING", kind=kind, slot=s.name, reason=e.message)
            return None
        if self.recorder is not None:
            self.recorder.book(mid, book, rest=True)
        return book

    def confirm_quiet(self, s: Slot) -> None:
        """A quiet stream is not a stale one: the real stream sends nothing while a book does
        not change. A book the stream has not touched for book_confirm_s is read over REST; it
        stays fresh only when REST shows the same top of book. A different one means the
        stream missed a change: the book is left to go stale (fail closed at stale_after_s;
        the stream's next snapshot, a whole book, heals it, or `kick` reconnects)."""
        m = s.m
        if m is None:
            return
        now = self.clock.now()
        with self.feed.lock:
            b = self.feed.books.get(m.qm.market_id.lower())
            connected = self.feed.connected
        if not connected or b is None or not b.stream:
            return  # a REST book (stream down, or no snapshot since) ages: it is not confirmed
        if now - (b.checked or b.ts) < self.cfg.book_confirm_s:
            return  # changed (or confirmed) lately; frames that only repeat it do not count
        rest = self._read(s, "book_confirm_failed")
        if rest is None:
            return
        agree = self.feed.rest_book(m.qm.market_id, rest, now, seen=b)
        if agree is None:
            return  # the stream spoke meanwhile: its book is the fresher one
        s.c.books_confirmed += agree
        if not agree and m.unconfirmed != b.ts:  # once per disputed book, not every tick
            m.unconfirmed = b.ts
            self.log.event(
                "book_unconfirmed",
                level="WARNING",
                slot=s.name,
                market=m.qm.market_id,
                stream=[b.best_bid, b.best_ask],
                rest=[rest.best_bid, rest.best_ask],
            )

    def poll_if_needed(self, s: Slot, force: bool = False) -> None:
        """REST book when the stream is down or disputed (or at once after a rollover)."""
        if s.m is None:
            return
        disputed = self.feed.in_dispute(s.m.qm.market_id) is not None
        if self.feed.is_connected() and not force and not disputed:
            return
        book = self._read(s, "book_poll_failed")
        if book is not None:
            self.feed.rest_book(s.m.qm.market_id, book, self.clock.now(), force=force)

    def kick_disputed(self, s: Slot, stream: Stream | None) -> None:
        """A stream whose book REST disproved, and that repeats that book (a stuck publisher)
        or stays quiet on it for book_confirm_s (it missed a change): reconnect it for a new
        snapshot, at most once per stale_after_s. REST stands in meanwhile (poll_if_needed);
        the first book from the stream that differs ends the dispute."""
        if s.m is None or stream is None:
            return
        d = self.feed.in_dispute(s.m.qm.market_id)
        now = self.clock.now()
        if d is None or now < self.next_kick:
            return
        since, repeats = d
        if not repeats and now - since < self.cfg.book_confirm_s:
            return  # a frame in flight may settle it: the stream's next book ends the dispute
        self.next_kick = now + self.cfg.stale_after_s
        why = f"repeats a book REST disproved ({repeats}x)" if repeats else "missed a change"
        self.log.event(
            "stream_reconnect",
            level="WARNING",
            slot=s.name,
            reason=why,
            disputed_s=round(now - since, 1),
        )
        stream.reconnect(why)

    def kick(self, s: Slot, stream: Stream | None) -> None:
        """A connected stream whose book stays stale answers pings but misses changes:
        reconnect it for a new snapshot, after 2 x stale_after_s and then at most once per
        stale_after_s (a reconnect's REST fallback must not turn fail-closed into a flicker)."""
        if s.m is None or stream is None:
            return
        now = self.clock.now()
        connected = self.feed.is_connected()
        age = self.age(s.m.qm.market_id)
        if connected and age > 2 * self.cfg.stale_after_s and now >= self.next_kick:
            self.next_kick = now + self.cfg.stale_after_s
            self.log.event("stream_reconnect", level="WARNING", slot=s.name, book_age=round(age, 1))
            stream.reconnect("stale book")


# -- the price source ------------------------------------------------------------------------------
class PriceSource(Owner):
    """The model's asset price (engine thread): the oracle's stream while it is fresh, else
    (and with price_source=turbine) Turbine's price endpoint. The price-stream thread only
    hands its updates to Feed (`on_stream_price`); a step reads them as of its start."""

    def __init__(
        self,
        e: Engine,
        feed: Feed,
        hermes_key: str = "",
        pyth_auto: bool = False,
        stream: Any = None,
    ) -> None:
        super().__init__(e)
        self.feed = feed
        self._hermes_key = hermes_key  # PYTH_API_KEY: a secret, never logged
        self.pyth_auto = pyth_auto  # price_source=auto streams: a Hermes key, or --sim
        self._given = stream  # replay's recorded stream stands in for Hermes
        self.stream: HermesStream | None = None  # price_source pyth (startup)
        self.asset_px: dict[str, float | None] = {}
        self.asset_px_at: dict[str, float] = {}  # clock time of the last Turbine price read
        self.src: dict[str, str] = {}  # asset -> source in use (logged on a change)
        self.step_prices: dict[str, tuple[float, float]] = {}  # Feed.prices at step start
        self.last_step_mono = 0.0  # monotonic time of the last step's start (read by the stream)
        self.step_now = 0.0  # clock time of the last step's start (the streamed price's age)
        # asset -> (time, price, running sum of squared log returns up to it) of each new price
        # the model was given: realized_vol is a difference of two sums, not a pass per step
        self.hist: dict[str, collections.deque[tuple[float, float, float]]] = {}

    def __repr__(self) -> str:
        return "PriceSource(<key redacted>)"

    def uses_pyth(self) -> bool:
        src = self.cfg.price_source
        return src == "pyth" or (src == "auto" and self.pyth_auto)

    def start(self, assets: list[str]) -> None:
        if self._given is not None:
            self.stream = self._given
        elif self.cfg.fair_source in ("model", "blend") and self.uses_pyth():
            self.stream = HermesStream(
                self.cfg.hermes_url,
                assets,
                self._hermes_key,
                self.on_stream_price,
                read_s=max(2.0, self.cfg.price_max_age_s),
            )
            self.stream.start()

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.stop()

    def begin_step(self, prices: dict[str, tuple[float, float]], now: float) -> None:
        self.step_prices = prices
        self.step_now = now

    def read(self, asset: str) -> None:
        """The price job: the stream's price while fresh, else a Turbine poll; a change of
        source is logged."""
        streamed = self.streamed(asset)
        if streamed is not None:
            px, src = streamed[0], "pyth"
        else:
            px, src = self.ex.asset_price(asset), "turbine"
            self.asset_px_at[asset] = self.clock.now()
        self.asset_px[asset] = px
        before = self.src.get(asset)
        if self.stream is not None and before != src:
            self.log.event(
                "price_source",
                # falling back from the stream is worth a look; the start (no stream update
                # yet) is not
                level="WARNING" if before == "pyth" else "INFO",
                asset=asset,
                source=src,
                reason="" if src == "pyth" else (self.stream.reason or "stale"),
            )
        self.src[asset] = src
        if self.recorder is not None and px is not None and src == "turbine":
            self.recorder.write("price", {"a": asset, "p": px})

    def on_stream_price(self, asset: str, price: float, published: float) -> None:
        """Price-stream thread: the latest oracle price into Feed."""
        if self.recorder is not None:  # replay feeds these to the model as the stream did;
            # written first, so that a step that used the price is marked after it
            self.recorder.write("price", {"a": asset, "p": price, "t": published, "s": "pyth"})
        # a new oracle price is news for the model: quote on it now, not at the next tick
        # (Pyth publishes every 400 ms; a step costs a few ms and requests only when a quote
        # moves past requote_tolerance). At most every PRICE_WAKE_S of real time: a
        # compressed --sim clock publishes 60 a second at 60x.
        if self.feed.put_price(asset, price, published) and (
            time.monotonic() - self.last_step_mono >= PRICE_WAKE_S
        ):
            self.feed.wake.set()

    def streamed(self, asset: str) -> tuple[float, float] | None:
        """(price, age s) of the streamed oracle price, or None when off, missing or older
        than price_max_age_s (then the Turbine poll stands in)."""
        if self.stream is None:
            return None
        got = self.step_prices.get(asset)
        if got is None:
            return None
        # its age when the step began: a slow step (a rollover's REST calls; 60x in --sim)
        # must not age the price the step started with
        age = (self.step_now or self.clock.now()) - got[1]
        return (got[0], max(0.0, age)) if age <= self.cfg.price_max_age_s else None

    def price(self, asset: str) -> float | None:
        """The freshest price for the model, read at quote time (kept for realized_vol)."""
        streamed = self.streamed(asset)
        px = streamed[0] if streamed is not None else self.asset_px.get(asset)
        if px is not None and px > 0:  # one sample per observation: its publish or poll time
            t = self.step_prices[asset][1] if streamed is not None else self.asset_px_at.get(asset)
            h = self.hist.setdefault(asset, collections.deque(maxlen=VOL_SAMPLES))
            if t is not None and (not h or t > h[-1][0]):
                cum = h[-1][2] + math.log(px / h[-1][1]) ** 2 if h else 0.0
                h.append((t, px, cum))
        return px

    def move(self, asset: str, window_s: float) -> tuple[float, float] | None:
        """(the price window_s ago, the price now) from the prices the model was given, or
        None without both."""
        h = self.hist.get(asset)
        if not h or len(h) < 2:
            return None
        t_now, p_now, _ = h[-1]
        then = next((p for t, p, _ in reversed(h) if t <= t_now - window_s), h[0][1])
        return then, p_now

    def realized_vol(self, asset: str) -> float | None:
        """The price's annualised realized volatility over the last vol_window_s: the sum of
        squared log returns between the prices the model was given over the time they span
        (so a 2 s poll and a 0.4 s stream measure the same thing); None until VOL_MIN_RETURNS
        returns span a fifth of the window. Bounded to [VOL_FLOOR, VOL_CAP]: one quiet
        stretch must not make the model certain, one jump not make it blind."""
        h = self.hist.get(asset)
        if not h or len(h) < VOL_MIN_RETURNS + 1:
            return None
        first = bisect.bisect_left(h, h[-1][0] - self.cfg.vol_window_s, key=lambda x: x[0])
        (t0, _, cum0), (t1, _, cum1) = h[first], h[-1]
        if len(h) - first < VOL_MIN_RETURNS + 1 or t1 - t0 < self.cfg.vol_window_s / 5:
            return None
        vol = math.sqrt((cum1 - cum0) / (t1 - t0) * SECONDS_PER_YEAR)
        return min(VOL_CAP, max(VOL_FLOOR, vol))

    def state(self, asset: str) -> tuple[str, float]:
        """(source, age s) of the price the model uses now (age inf: none)."""
        streamed = self.streamed(asset)
        if streamed is not None:
            return "pyth", streamed[1]
        at = self.asset_px_at.get(asset)
        if self.asset_px.get(asset) is None or at is None:
            return "turbine", math.inf
        return "turbine", max(0.0, self.clock.now() - at)


# -- may this market quote? ------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """What the stop rules read, gathered once per question (Risk.verdict): each rule has the
    data it needs at hand, so the order of the rules is the only order there is."""

    cfg: Config
    m: MarketState | None
    now: float  # clock time (market time)
    fresh: bool  # the market's book is no older than stale_after_s
    day_killed: bool
    bad_read: str | None  # a read the quotes depend on whose replies keep being refused
    log_ok: bool
    host_failing: bool  # the host's last answer was a failure (no new order until one works)
    move_bp: float | None  # the oracle's move over pause_window_s (unit-checked prices only)
    sell_ok: bool  # a SELL of YES we hold can settle (the CTF approval is in place)
    dry_run: bool


@dataclass(frozen=True)
class Stop:
    """One reason a market may not quote. `close`: cancel its orders and stop quoting (fail
    closed, logged `fail_closed` with the reason); otherwise only no new order (what rests
    stays, cancels still go out). `side`: a rule for one side's new orders only."""

    reason: str
    holds: Callable[[Check], bool]
    close: bool = True
    side: int | None = None


# "May this market quote now?": the one answer, in this order of priority (the first rule
# that holds is the reason). The quote step, every placement and the adapters' OrderGate ask
# Risk.verdict, which gathers the Check. A new stop is one rule here and one test.
STOPS: tuple[Stop, ...] = (
    Stop("no_market", lambda c: c.m is None),
    Stop("stale_feed", lambda c: not c.fresh),
    Stop("day_loss_limit", lambda c: c.day_killed),
    Stop("market_loss_limit", lambda c: c.m is not None and c.m.killed),
    Stop("position_implausible", lambda c: c.m is not None and c.m.implausible),
    Stop("bad_replies", lambda c: c.bad_read is not None),
    Stop("log_write_failed", lambda c: not c.log_ok),  # what we cannot record, we do not do
    # the quote step's own answer: no input for the chosen fair value (book and price)
    Stop("no_fair_value", lambda c: c.m is not None and c.m.fair is None),
    # off unless pause_move_bp > 0: a fast oracle move is when the fast takers' edge is widest
    Stop(
        "fast_move",
        lambda c: c.cfg.pause_move_bp > 0
        and c.move_bp is not None
        and c.move_bp >= c.cfg.pause_move_bp,
    ),
    # off unless open_quiet_s > 0: a market's first seconds, before its book has formed
    Stop(
        "market_opening",
        lambda c: c.m is not None and c.now - c.m.qm.start < c.cfg.open_quiet_s,
    ),
    Stop("host_failing", lambda c: c.host_failing, close=False),
    # the chain refuses a SELL of shares we hold without the CTF operator approval
    Stop(
        "held_sell_unapproved",
        lambda c: c.m is not None and c.m.pnl.position > 0 and not c.dry_run and not c.sell_ok,
        close=False,
        side=SELL,
    ),
)


def first_stop(c: Check, side: int | None = None, side_only: bool = False) -> Stop | None:
    """The first of STOPS that holds: the market's rules and, with `side`, that side's too
    (`side_only`: that side's own rules alone)."""
    for x in STOPS:
        applies = x.side == side if side_only else x.side is None or x.side == side
        if applies and x.holds(c):
            return x
    return None


# -- risk: kill switches, capital and limits ------------------------------------------------------
class Risk(Owner):
    """Limits and kill switches (engine thread). Owns the day's kill switch, each market's
    (`MarketState.killed`), the capital and the budgets it splits into, and what each limit
    holds back. `verdict(slot, side)` is the one answer to "may this market (side) quote
    now?", STOPS in their order: the quote step, every placement and the adapters'
    OrderGate (`gate_blocked`) all ask it."""

    def __init__(
        self,
        e: Engine,
        ledger: Ledger,
        watch: BookWatch,
        boundary: Boundary,
        prices: PriceSource,
        sell_ok: Callable[[], bool],
        host_failing: Callable[[], bool],
    ) -> None:
        super().__init__(e)
        self.ledger = ledger
        self.watch = watch
        self.boundary = boundary
        self.prices = prices
        self.sell_ok = sell_ok  # Orders' CTF approval (built after Risk: late-bound)
        self.host_failing = host_failing  # the adapters' call policy
        self.day_killed = False
        self.capital: float | None = None  # USDC split between the budgets; None: unknown
        # the wallet changed under the budgets (a rollover moved a position into a claim, a
        # claim paid, an order was refused for its balance): re-read it at the next step
        self.capital_stale = False
        self.logged_capital = 0.0  # the capital the last `capital` line showed

    # -- may it trade? ---------------------------------------------------------------------------
    def verdict(self, s: Slot, side: int | None = None, side_only: bool = False) -> Stop | None:
        """The first of STOPS that holds for the slot's market (and, with `side`, for a new
        order on that side; `side_only`: that side's own rules alone), or None."""
        m = s.m
        c = Check(
            cfg=self.cfg,
            m=m,
            now=self.clock.now(),
            fresh=m is not None and self.watch.fresh(m.qm.market_id),
            day_killed=self.day_killed,
            bad_read=self.boundary.failing(),
            log_ok=self.log.writable(),
            host_failing=self.host_failing(),
            move_bp=self.move_bp(s) if self.cfg.pause_move_bp > 0 else None,
            sell_ok=self.sell_ok(),
            dry_run=self.dry_run,
        )
        return first_stop(c, side, side_only)

    def blocked(self, s: Slot) -> str | None:
        """Why the slot's market may not quote now (a closing stop's reason), or None."""
        why = self.verdict(s)
        return why.reason if why is not None and why.close else None

    def move_bp(self, s: Slot) -> float | None:
        """The oracle's move over pause_window_s, in bp, from prices consistent with the
        strike only (a price in another unit is no move: the unit check owns it)."""
        if s.m is None:
            return None
        got = self.prices.move(s.key.asset, self.cfg.pause_window_s)
        k, band = s.m.qm.strike, self.cfg.price_band
        if got is None or not all(price_consistent(p, k, band) for p in got):
            return None
        return abs(math.log(got[1] / got[0])) * 1e4

    def gate_blocked(self, market_id: str) -> str | None:
        """The adapters' firewall asks by market id (no new order on any stop); a market no
        slot quotes has no book."""
        for s in self.slots:
            if s.m is not None and s.m.qm.market_id.lower() == market_id.lower():
                why = self.verdict(s)
                return why.reason if why is not None else None
        return "stale_feed"

    def check_kill_switches(self, now: float) -> None:
        """The day's loss over every market, and each market's own loss."""
        if self.ledger.roll_day(now):
            self.day_killed = False
        open_pnl = 0.0
        for s in self.slots:
            m = s.m
            if m is None:
                continue
            mkt = s.open_pnl()
            open_pnl += mkt
            if not m.killed and mkt < -self.cfg.max_loss_per_market:
                m.killed = True
                self.log.event(
                    "kill_switch",
                    level="ERROR",
                    scope="market",
                    slot=s.name,
                    pnl=round(mkt, 4),
                    market=m.qm.market_id,
                )
        day = self.ledger.day_pnl + open_pnl
        if not self.day_killed and day < -self.cfg.max_loss_per_day:
            self.day_killed = True
            self.log.event("kill_switch", level="ERROR", scope="day", pnl=round(day, 4))

    # -- capital and portfolio limits -----------------------------------------------------------
    def refresh_capital(self) -> float | None:
        """Capital = the wallet's USDC plus what our current positions tie up (a fill moves
        USDC into a position, not out of the portfolio), capped by capital_usdc; each slot's
        budget is its capital_split share. Until the balance is known budgets are 0 (only
        reducing quotes), except in a dry run with no wallet, which only logs quotes. Returns
        when to try again, sooner than the slow timer, while the capital is still unknown."""
        cap = self.cfg.capital_usdc
        try:
            balance = self.ex.balances()[0] / SIZE_SCALE
        except ExchangeError as e:
            if self.dry_run:
                balance = cap if cap > 0 else math.inf
            else:
                self.log.event(
                    "error", level="WARNING", kind="balance_failed", reason=e.message[:160]
                )
                return self.clock.now() + 10 if self.capital is None else None
        tied = sum(s.tied() for s in self.slots)
        base = balance + tied
        capital = min(cap, base) if cap > 0 else base
        first = self.capital is None
        self.capital = capital
        split = parse_split(self.cfg.capital_split, [s.key for s in self.slots])
        for s in self.slots:
            s.budget = capital * split[s.key]
        if first or abs(capital - self.logged_capital) > 0.05 * max(1.0, capital):
            self.logged_capital = capital
            self.log.event(
                "capital",
                balance=round(balance, 6) if math.isfinite(balance) else None,
                tied=round(tied, 6),
                capital=round(capital, 6) if math.isfinite(capital) else None,
                budgets={s.name: round(s.budget, 2) for s in self.slots},
            )
        return None

    def portfolio(self) -> tuple[float, float]:
        """(open-order notional, net exposure at fair), USDC, over every slot."""
        return sum(s.open_cost() for s in self.slots), sum(s.exposure() for s in self.slots)

    def headroom(self, s: Slot) -> Headroom:
        """What slot `s` may add. Open notional counts the other slots' resting orders (the
        slot's own are replaced by its desired quotes). Net exposure counts positions, what
        has filled, plus the quote being checked. Other slots' resting quotes are not counted
        (max_open_notional bounds them), so a burst of fills, or the fair value moving, can
        carry it past the limit; then every side that adds to it stops until it is back
        inside."""
        notional, net = self.portfolio()
        notional -= s.open_cost()
        cfg = self.cfg
        return Headroom(
            budget=s.budget - s.tied(),
            notional=cfg.max_open_notional - notional,
            long=cfg.max_net_exposure - net,
            short=cfg.max_net_exposure + net,
        )

    def note_limits(self, s: Slot, blocked: dict[int, str]) -> None:
        """Log each change of what a limit holds back (once per change, not per tick)."""
        if blocked == s.blocked:
            return
        notional, net = self.portfolio()
        for side in (BUY, SELL):
            was, now_ = s.blocked.get(side), blocked.get(side)
            if was == now_:
                continue
            self.log.event(
                "risk_limit",
                level="WARNING" if now_ else "INFO",
                slot=s.name,
                side=_side(side),
                limit=now_ or was,
                state="on" if now_ else "off",
                open_notional=round(notional, 4),
                net_exposure=round(net, 4),
                budget=round(s.budget, 4),
                inventory=s.m.pnl.position if s.m else 0.0,
            )
        s.blocked = dict(blocked)
        counts: dict[str, int] = {}
        for x in self.slots:
            for why in x.blocked.values():
                counts[why] = counts.get(why, 0) + 1
        self.metrics.limited(counts)


# -- live orders ----------------------------------------------------------------------------------
class Orders(Owner):
    """Our live orders (engine thread), the order-book manager's role: it owns each market's
    `live` orders and their unconfirmed cancels. It places (after Risk.blocked), cancels and
    confirms (an order is gone only when the exchange says so or a read-back shows it), reads
    our orders back from the exchange (the truth; new fills go to Fills through `on_fill`),
    cancels what a crash left behind, and holds the CTF approval that SELLs of held shares
    need."""

    def __init__(
        self,
        e: Engine,
        feed: Feed,
        ledger: Ledger,
        risk: Risk,
        on_fill: Callable[[Slot, str, int, int, int], None],
    ) -> None:
        super().__init__(e)
        self.feed = feed
        self.ledger = ledger
        self.risk = risk
        self.on_fill = on_fill
        self.ctf_approved = False  # the relayer accepted our CTF operator approval
        self.ctf_next = 0.0  # clock time before which a failed approval is not asked again
        self.leftover: dict[str, float] = {}  # market id -> shares a crashed run left resting
        self.confirm_misses = 0  # cancels the stream did not confirm in time, in a row
        self.confirm_skips = 0  # read-backs since the stream was last waited for

    def opened(self, m: MarketState, carried: float) -> None:
        """A market became current: what could already be filled in it (a position carried
        over a restart, orders a crashed run left) starts its capacity."""
        m.capacity = carried + self.leftover.pop(m.qm.market_id.lower(), 0.0)

    @staticmethod
    def could_fill(m: MarketState, h: str, side: int, shares: float) -> None:
        """An order of ours (placed or adopted) could fill this much on its side."""
        m.capacity += shares
        m.may_fill[h] = (side, round(shares * SIZE_SCALE))
        if side == BUY:
            m.placed_buy += shares
        else:
            m.placed_sell += shares

    def place(self, s: Slot, q: Quote, now: float) -> None:
        """The one function that places orders: kill switches, limits and freshness first."""
        m = s.m
        assert m is not None
        if self.risk.verdict(s, q.side) is not None:
            return
        if len(m.live) >= self.cfg.max_open_orders:
            return
        if q.size > self.cfg.max_order_size * SIZE_SCALE:
            return
        if any(m.meta.get(h, (None,))[0] == q.side for h in m.unconfirmed_cancels):
            return  # an order whose cancel we doubt may still rest on this side: not two
        # orders die with their market (at its end) or at the next refresh plus a grace, but
        # never sooner than the API accepts: near the end that is a little past the end, when
        # the exchange closes the market and its orders anyway
        exp = int(
            max(
                min(now + self.cfg.order_refresh_s + self.cfg.expiry_grace_s, m.qm.end),
                now + MIN_EXPIRY_AHEAD_S,
            )
        )
        shares, px = q.size / SIZE_SCALE, q.price / PRICE_SCALE
        common = {"slot": s.name, "market": m.qm.market_id, "side": _side(q.side)}
        if self.dry_run:
            m.dry_seq += 1
            h = f"dry-{m.dry_seq}"
            m.live[h] = LiveOrder(h, q.side, q.outcome, q.price, q.size, q.size, now)
            self.log.event(
                "dry_run_quote",
                **common,
                outcome="YES" if q.outcome == YES else "NO",
                price=px,
                size=shares,
            )
            return
        t0 = time.perf_counter()
        try:
            h = self.ex.place(m.qm, q.side, q.outcome, q.price, q.size, exp, now)
        except ExchangeError as e:
            self.ledger.count(s, "rejects")
            self.log.event(
                "order_rejected",
                level="WARNING",
                **common,
                price=px,
                size=shares,
                kind=e.kind,
                reason=e.message[:160],
            )
            if "closed" in e.message or e.kind == "not_found":
                s.due["rollover"] = 0.0  # the market ended under us: roll now
            if "balance" in e.message.lower():
                self.risk.capital_stale = True  # budgets from a balance the wallet lacks
            if e.kind not in ("rejected", "stale_feed", "blocked"):
                s.need_resync = True  # unsure whether it landed: read back
            return
        m.live[h] = LiveOrder(h, q.side, q.outcome, q.price, q.size, q.size, now, exp)
        m.meta[h] = (q.side, q.price)
        m.filled.setdefault(h, 0)
        self.could_fill(m, h, q.side, shares)
        self.ledger.count(s, "orders")
        self.ledger.count(s, "placed_size", shares)
        s.metrics.orders.inc()
        s.metrics.placed_size.inc(shares)
        self.log.event(
            "order_placed",
            **common,
            outcome="YES" if q.outcome == YES else "NO",
            price=px,
            size=shares,
            order_hash=h,
            expiration=exp,
            ms=round((time.perf_counter() - t0) * 1000, 1),  # the place round trip (report)
        )

    def cancel(self, s: Slot, o: LiveOrder, reason: str) -> None:
        m = s.m
        assert m is not None
        if self.dry_run:
            m.live.pop(o.order_hash, None)
            return
        t0 = time.perf_counter()
        try:
            self.ex.cancel(o.order_hash, m.qm.market_id, o.side)
        except ExchangeError as e:
            if e.kind == "not_found":
                # filled, expired or already cancelled: the exchange is the truth; read back
                m.live.pop(o.order_hash, None)
                s.need_resync = True
                return
            s.need_resync = True
            self.ledger.count(s, "errors")
            m.unconfirmed_cancels.add(o.order_hash)
            self.log.event(
                "cancel_unconfirmed",
                level="WARNING",
                slot=s.name,
                market=m.qm.market_id,
                order_hash=o.order_hash,
                reason=reason,
                error=e.message[:160],
            )
            return  # still tracked: cancelled again, or confirmed gone, later
        m.live.pop(o.order_hash, None)
        m.cancel_ok.add(o.order_hash)  # a read-back that still shows it open: a lie
        self.ledger.count(s, "cancels")
        s.metrics.cancels.inc()
        self.log.event(
            "order_cancelled",
            slot=s.name,
            market=m.qm.market_id,
            order_hash=o.order_hash,
            reason=reason,
            ms=round((time.perf_counter() - t0) * 1000, 1),  # the cancel round trip (report)
        )

    def confirm_cancels(self, s: Slot, orders: list[LiveOrder], mark: int, live: bool) -> None:
        """The exchange answered these cancels and their sides are about to get new orders.
        Believed when the stream confirms each (its cancel event, or its price level gone
        from a book heard after the cancels) within cancel_confirm_s; otherwise our orders
        are read back over REST (`sync`), which finds a cancel that lied. A stream that has
        missed CONFIRM_MISSES in a row is not waited for until CONFIRM_RETRY read-backs
        later (a venue that never says so must not cost a wait on every requote)."""
        m = s.m
        assert m is not None
        wait = self.cfg.cancel_confirm_s
        if live and wait > 0 and self.feed.is_connected() and self.confirm_misses < CONFIRM_MISSES:
            got = self.feed.wait_gone(m.qm.market_id, orders, mark, wait)
            if got >= {o.order_hash for o in orders}:
                self.confirm_misses = 0
                self.ledger.count(s, "cancels_streamed", len(orders))
                return
            self.confirm_misses += 1
        elif self.confirm_misses >= CONFIRM_MISSES:
            self.confirm_skips += 1
            if self.confirm_skips >= CONFIRM_RETRY:
                self.confirm_misses = self.confirm_skips = 0  # try the stream again
        self.ledger.count(s, "cancels_read_back", len(orders))
        self.sync(s)

    def cancel_all(self, s: Slot, reason: str, market_id: str | None = None) -> bool:
        """Cancel every open order of ours in a market (default: the slot's current one) and
        verify by reading back. Returns True when none is left."""
        mid = market_id or (s.m.qm.market_id if s.m else None)
        if mid is None or self.dry_run:
            if s.m:
                s.m.live.clear()
            return True
        market_ok = True
        try:
            self.ex.cancel_market(mid)
        except ExchangeError as e:
            market_ok = False
            self.log.event(
                "error",
                level="WARNING",
                kind="cancel_market_failed",
                reason=e.message[:160],
                slot=s.name,
                market=mid,
            )
        left = self.read_open(mid)
        for o in left or []:
            with contextlib.suppress(ExchangeError):
                self.ex.cancel(o.order_hash, mid, o.side)
        if left:
            left = self.read_open(mid)
        if s.m and s.m.qm.market_id == mid:
            self._settle_cancels(s, reason, market_ok, left)
        return left == []

    def _settle_cancels(
        self, s: Slot, reason: str, market_ok: bool, left: list[OrderInfo] | None
    ) -> None:
        """What cancel_all may say of each order it tracked: `order_cancelled` only when the
        exchange confirmed it (the market cancel answered, and the read-back, if it came, does
        not list the order) or a read-back shows it gone; otherwise `cancel_unconfirmed`, and
        the order stays tracked until it is confirmed gone or has expired."""
        m = s.m
        assert m is not None
        mid = m.qm.market_id
        now = self.clock.now()
        still = None if left is None else {o.order_hash for o in left}
        for h, o in list(m.live.items()):
            gone = (still is not None and h not in still) or (still is None and market_ok)
            if gone:
                m.live.pop(h)
                self.ledger.count(s, "cancels")
                s.metrics.cancels.inc()
                self.log.event(
                    "order_cancelled", slot=s.name, market=mid, order_hash=h, reason=reason
                )
            elif now >= o.expires:
                m.live.pop(h)  # expired at the exchange whatever it said
                self.log.event(
                    "order_expired", slot=s.name, market=mid, order_hash=h, reason=reason
                )
            elif h not in m.unconfirmed_cancels:
                m.unconfirmed_cancels.add(h)  # logged once per order, retried every tick
                self.ledger.count(s, "errors")
                self.log.event(
                    "cancel_unconfirmed",
                    level="WARNING",
                    slot=s.name,
                    market=mid,
                    order_hash=h,
                    reason=reason,
                    error="the exchange did not confirm the cancel"
                    if still is None
                    else "still open on read-back",
                )
        m.unconfirmed_cancels &= set(m.live)
        s.need_resync = True  # count fills that raced the cancels

    def read_open(self, mid: str) -> list[OrderInfo] | None:
        try:
            return self.ex.orders(mid, "open")
        except ExchangeError as e:
            self.log.event(
                "error", level="WARNING", kind="read_orders_failed", reason=e.message[:160]
            )
            return None

    def sync(self, s: Slot) -> None:
        """Read our orders on the slot's market back from the exchange (the truth): count new
        fills once per order hash, drop orders that are gone, adopt unknown open ones."""
        m = s.m
        if m is None or self.dry_run:
            return
        rows = self.ex.orders(m.qm.market_id, None, urgent=False)
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
                self.could_fill(m, h, o.side, o.size / SIZE_SCALE)
            if o.filled > counted:
                self.on_fill(s, h, o.side, o.price, o.filled - counted)
                m.filled[h] = o.filled
            if o.status != "open":
                m.may_fill.pop(h, None)  # final: filledSize is all it will ever fill
            if o.status == "open":
                seen_open.add(h)
                if h in m.cancel_ok and h not in m.unconfirmed_cancels:
                    # the exchange answered the cancel, yet the order is open: it lied
                    m.unconfirmed_cancels.add(h)
                    self.ledger.count(s, "errors")
                    self.log.event(
                        "cancel_unconfirmed",
                        level="WARNING",
                        slot=s.name,
                        market=m.qm.market_id,
                        order_hash=h,
                        reason="read_back",
                        error="still open on read-back after the exchange answered its cancel",
                    )
                lo = m.live.get(h)
                m.live[h] = LiveOrder(
                    h,
                    o.side,
                    o.outcome,
                    o.price,
                    o.size,
                    o.size - o.filled,
                    lo.placed_at if lo else now,
                    lo.expires if lo else math.inf,
                )
        for h in list(m.live):
            if h not in seen_open:
                m.live.pop(h, None)
        m.unconfirmed_cancels &= seen_open  # gone on read-back: confirmed at last
        m.cancel_ok &= seen_open
        self.feed.read_back(m.qm.market_id, set(m.filled))
        s.need_resync = False

    def cancel_leftovers(self) -> None:
        """Orders a previous run left behind (crash, kill -9) are cancelled before quoting."""
        try:
            left = self.ex.orders(None, "open")
        except ExchangeError as e:
            raise ExchangeError(
                e.kind, f"cannot read open orders at start: {e.message}", e.status
            ) from None
        markets = {o.market_id for o in left}
        for o in left:  # they may have filled before the restart: believable positions
            k = o.market_id.lower()
            self.leftover[k] = self.leftover.get(k, 0.0) + o.size / SIZE_SCALE
        for mid in markets:
            with contextlib.suppress(ExchangeError):
                self.ex.cancel_market(mid)
        rest = self.ex.orders(None, "open") if left else []
        for o in rest:
            with contextlib.suppress(ExchangeError):
                self.ex.cancel(o.order_hash, o.market_id, o.side)
        if left:
            self.log.event("leftovers_cancelled", count=len(left), markets=sorted(markets))

    def cancel_everything(self, slots: list[Slot]) -> bool:
        """Shutdown: every slot's orders, then any open order of ours anywhere; True when the
        exchange confirmed none is left."""
        left_ok = True
        for s in slots:
            if s.m is not None:
                left_ok = self.cancel_all(s, "shutdown") and left_ok
        rest = self.ex.orders(None, "open")
        for o in rest:
            with contextlib.suppress(ExchangeError):
                self.ex.cancel(o.order_hash, o.market_id, o.side)
        return left_ok and not rest

    def may_sell_held(self, now: float) -> bool:
        """Whether a SELL of shares we hold may go out: the chain refuses it without the CTF
        approval, which is asked again (at most every CTF_RETRY_S) until it is given."""
        if not self.ctf_approved and now >= self.ctf_next:
            self.request_ctf_approval()
        return self.ctf_approved

    def request_ctf_approval(self) -> None:
        now = self.clock.now()
        self.ctf_next = now + CTF_RETRY_S
        try:
            tx = self.ex.approve_ctf(now)
        except ExchangeError as e:
            self.log.event(
                "error", level="WARNING", kind="ctf_approval_failed", reason=e.message[:160]
            )
            return
        self.ctf_approved = True
        self.log.event("approval_requested", what="ctf_approval", tx=tx)


# -- fills and positions --------------------------------------------------------------------------
class Fills(Owner):
    """Fills and positions (engine thread). Owns each market's fill counts per order, journal,
    PnL and the exchange's last position: a fill is booked once (Orders.sync reports it), the
    exchange's position is reconciled after the settlement grace, and a fill that failed at
    settlement is taken back at its own price. `sync` reads our orders back (Orders.sync)."""

    def __init__(
        self,
        e: Engine,
        ledger: Ledger,
        sync: Callable[[Slot], None],
        on_fill: Callable[[Slot, int, float, float, float], None] | None = None,
    ) -> None:
        super().__init__(e)
        self.ledger = ledger
        self.sync = sync
        self.told = on_fill  # (slot, side, price, shares, now): the markouts
        self.failed_seen: dict[str, None] = {}  # failed settlements already handled (tx)
        self.failed_primed = False  # the first read of /failed-trades only learns the past

    def on_fill(self, s: Slot, h: str, side: int, price: int, size: int) -> None:
        m = s.m
        assert m is not None
        shares, px = size / SIZE_SCALE, price / PRICE_SCALE
        fee = shares * self.cfg.fee_bps / 10_000
        self.book(m, side, px, shares, fee)
        # our quotes never cross the book we saw (quotes' maker-only clamp): a fill of ours is
        # taken as a maker fill (an order that matched on arrival, a rare race, is counted too)
        rebate = maker_rebate(px, shares, self.cfg.rebate_share)
        self.ledger.count(s, "rebates_est", rebate)
        s.metrics.rebates.inc(rebate)
        if self.told is not None:
            self.told(s, side, px, shares, self.clock.now())
        self.ledger.count(s, "fills")
        self.ledger.count(s, "filled_size", shares)
        s.metrics.fills.inc()
        s.metrics.filled_size.inc(shares)
        if s.c.placed_size:
            s.metrics.fill_ratio.set(s.c.filled_size / s.c.placed_size)
        self.log.event(
            "fill",
            slot=s.name,
            market=m.qm.market_id,
            order_hash=h,
            side=_side(side),
            price=px,
            size=shares,
            position=round(m.pnl.position, 6),
            avg_price=round(m.pnl.avg, 6),
            realized=round(m.pnl.realized, 6),
            fee=round(fee, 6),
            rebate_est=round(rebate, 6),  # estimated, not in realized (spec 1.4)
            fair=round(m.fair, 6) if m.fair is not None else None,  # edge captured (report)
        )

    @staticmethod
    def book(m: MarketState, side: int, price: float, shares: float, fee: float = 0.0) -> None:
        """Book one fill (or a reconciled difference) into the market's PnL and journal."""
        m.pnl.fill(side, price, shares, fee)
        m.journal.append((side, price, shares, fee))
        if len(m.journal) > JOURNAL_MAX:
            old, m.journal = m.journal[: JOURNAL_MAX // 2], m.journal[JOURNAL_MAX // 2 :]
            m.base = PnL.replay(m.base, old)

    def poll_positions(self, s: Slot, own: bool = False) -> None:
        """`own`: the stream saw a trade of ours in this market since the last read-back."""
        m = s.m
        if m is None or self.dry_run:
            return
        yes, no = self.ex.position(m.qm)
        now = self.clock.now()
        if not self.believable(s, yes, no):
            return  # the last good position stands; Risk fails the market closed meanwhile
        changed = (yes, no) != (m.exch_yes, m.exch_no)
        m.exch_yes, m.exch_no = yes, no
        # Orders are read back when something happened (a position change, a trade of ours on
        # the stream, a doubt) and at least every orders_sync_s: a calm market costs one
        # positions read per period, not two reads.
        if changed or own or s.need_resync or now >= m.next_orders_sync:
            self.sync(s)
            m.next_orders_sync = now + self.cfg.orders_sync_s
        exch_inv = (yes - no) / SIZE_SCALE
        if abs(exch_inv - m.pnl.position) <= 1e-6:
            m.mismatch = None
            return
        # A fill between the positions read and the orders read shows in one and not the
        # other until the next round, and positions follow the chain, which settles matched
        # trades in batches a few seconds later (spec 6.5): only the same mismatch seen
        # again settle_grace_s later is real (fills from before a restart, say). The
        # exchange's position is the truth for inventory; the difference is booked at fair.
        if m.mismatch != exch_inv:
            m.mismatch, m.mismatch_since = exch_inv, now
            return
        if now - m.mismatch_since < self.cfg.settle_grace_s:
            return
        # a mismatch that lasts is usually a fill that failed at settlement: take it back at
        # its own price first; reconcile (at fair) only what that does not explain
        before = (s.c.reversals, s.c.fills)
        self.poll_failed_trades()
        if abs(exch_inv - m.pnl.position) <= 1e-6:
            m.mismatch = None
            return
        if (s.c.reversals, s.c.fills) != before:
            # a reversal or a fill just counted explains part of it: what is left (a fill
            # still settling, say) gets its own settle_grace_s
            m.mismatch, m.mismatch_since = exch_inv, now
            return
        diff = exch_inv - m.pnl.position
        px = m.fair if m.fair is not None else 0.5
        side = BUY if diff > 0 else SELL
        # realized PnL comes only from fills we can name: what the difference closes is
        # taken out at the average price (no realized change), what it opens is held at fair
        pos = m.pnl.position
        closes = min(abs(pos), abs(diff)) if pos and (diff > 0) != (pos > 0) else 0.0
        self.log.event(
            "position_reconciled",
            level="WARNING",
            slot=s.name,
            market=m.qm.market_id,
            exchange=exch_inv,
            tracked=pos,
            booked_at=px,
            closed_at_avg=round(closes, 6),
        )
        for price, shares in ((m.pnl.avg, closes), (px, abs(diff) - closes)):
            if shares > 1e-12:
                self.book(m, side, price, shares)
        m.mismatch = None

    def believable(self, s: Slot, yes: int, no: int) -> bool:
        """A position our orders could have filled. Before the market's first good read:
        neither side more shares than every order we placed (or adopted, or carried over a
        restart) in this market. After it: the last good position moved only as far as our
        orders since could fill its net, in the direction each could (`window`). Beyond that it
        is `position_implausible` (an alert), the market fails closed and the last good
        position is kept; a believable read ends it."""
        m = s.m
        assert m is not None
        cap = round(m.capacity * SIZE_SCALE) + 1
        why = "" if yes <= cap and no <= cap else "beyond every order placed"
        if not why and m.good is not None:
            why = self.window(m, yes, no)
        if not why:
            m.good = self.snapshot(m, yes, no)
            if m.implausible:
                m.implausible = False
                self.log.event(
                    "position_believable", slot=s.name, market=m.qm.market_id, yes=yes, no=no
                )
            return True
        if not m.implausible:
            m.implausible = True
            self.ledger.count(s, "errors")
            self.log.event(
                "position_implausible",
                level="ERROR",
                slot=s.name,
                market=m.qm.market_id,
                yes=yes / SIZE_SCALE,
                no=no / SIZE_SCALE,
                capacity=round(m.capacity, 6),
                why=why,
                kept=[m.exch_yes / SIZE_SCALE, m.exch_no / SIZE_SCALE],
            )
        return False

    @staticmethod
    def snapshot(m: MarketState, yes: int, no: int) -> GoodRead:
        """A good read, and what could still fill after it: our orders not yet read back as
        final (their size less the fills counted: fills not yet read are in it; a cancelled
        order's racing fill too) and the fills booked but not yet in the position
        (settlement lags the match, spec 6.5)."""
        rest = {BUY: 0.0, SELL: 0.0}
        for h, (side, size) in m.may_fill.items():
            rest[side] += max(0, size - m.filled.get(h, 0)) / SIZE_SCALE
        lag = m.pnl.position - (yes - no) / SIZE_SCALE
        return GoodRead(
            yes,
            no,
            m.placed_buy,
            m.placed_sell,
            rest[BUY],
            rest[SELL],
            max(0.0, lag),
            max(0.0, -lag),
        )

    @staticmethod
    def window(m: MarketState, yes: int, no: int) -> str:
        """Why (yes, no) cannot follow the last good read, or "". A BUY of YES adds to the net
        YES position, a SELL takes from it: the net moves within [-sells, +buys] of what our
        orders could fill since. YES and NO alone are not bounded here (each side's capacity
        bounds them): a buy and a sell that settle together move both and not the net, and
        the net is the only number the engine trades on."""
        g = m.good
        assert g is not None
        buys = round((m.placed_buy - g.placed_buy + g.rest_buy + g.lag_buy) * SIZE_SCALE) + 1
        sells = round((m.placed_sell - g.placed_sell + g.rest_sell + g.lag_sell) * SIZE_SCALE) + 1
        moved = (yes - no) - (g.yes - g.no)
        if not -sells <= moved <= buys:
            return f"net moved {moved / SIZE_SCALE:+g} since the last good read; our orders " \
                f"could move it {-sells / SIZE_SCALE:g}..{buys / SIZE_SCALE:+g}"
        return ""

    def poll_failed_trades(self) -> None:
        """Fills of ours that failed at settlement (spec 6.5) are taken back: out of the
        market's journal, PnL rebuilt from the rest (position, average price, realized), logged
        `fill_reversed` once per transaction. The first read only learns what is already there
        (failures from before this run are in the position the exchange reports)."""
        rows = self.ex.failed_trades()
        me = getattr(self.ex, "address", "").lower()
        first, self.failed_primed = not self.failed_primed, True
        mine: list[FailedFill] = []
        for f in rows:
            if f.tx in self.failed_seen:
                continue
            if first or (f.buyer == me) == (f.seller == me):
                # the past, not ours, or a trade with ourselves (nothing moved either way)
                remember(self.failed_seen, f.tx, None, most=5000)
                continue
            mine.append(f)
        # a fill can match and fail between two reads: count every fill first, so that the
        # one taken back is one we booked
        for s in self.slots:
            if s.m is not None and any(f.market_id == s.m.qm.market_id.lower() for f in mine):
                self.sync(s)  # an error leaves them unseen: next turn
        for f in mine:
            remember(self.failed_seen, f.tx, None, most=5000)
            self.reverse_fill(f, BUY if f.buyer == me else SELL)

    def reverse_fill(self, f: FailedFill, side: int) -> None:
        slot = next(
            (s for s in self.slots if s.m is not None and s.m.qm.market_id.lower() == f.market_id),
            None,
        )
        shares, px = f.size / SIZE_SCALE, f.price / PRICE_SCALE
        common = {"market": f.market_id, "tx": f.tx, "side": _side(side), "size": shares}
        if slot is None or slot.m is None:
            # a market no longer quoted: its PnL is settled; the claim pays what the chain holds
            self.log.event(
                "fill_reversed", level="WARNING", **common, price=px, reason=f.reason, booked=False
            )
            return
        m = slot.m
        signed = shares if side == BUY else -shares
        exch = (m.exch_yes - m.exch_no) / SIZE_SCALE
        booked = abs(m.pnl.position - signed - exch) < abs(m.pnl.position - exch) + 1e-9
        if booked:  # not already corrected by a position reconcile
            take_out(m.journal, side, px, shares)
            m.pnl = PnL.replay(m.base, m.journal)  # on top of what a restart carried over
            m.mismatch = None
        self.ledger.count(slot, "reversals")
        slot.metrics.reversed.inc()
        self.log.event(
            "fill_reversed",
            level="WARNING",
            slot=slot.name,
            **common,
            price=px,
            reason=f.reason,
            booked=booked,
            position=round(m.pnl.position, 6),
            avg_price=round(m.pnl.avg, 6),
            realized=round(m.pnl.realized, 6),
        )


# -- markouts and toxicity ------------------------------------------------------------------------
MARKOUT_LONG_S = 30.0  # the second markout horizon (s), reported beside markout_s


class Markouts(Owner):
    """Per-fill markouts (engine thread): each fill is marked against our fair value markout_s
    and MARKOUT_LONG_S later (signed per share: + the fill made money against where fair
    went). Per slot, a time-weighted average (weights halve every toxicity_half_life_s);
    what the short one lost is the `toxicity` quotes() widens by (toxicity_k). Owns the
    fills waiting to be marked and the averages; the metrics and pnl_snapshot show them."""

    def __init__(self, e: Engine) -> None:
        super().__init__(e)
        # slot -> fills waiting: [market, time, side, price, shares, short horizon marked]
        self.waiting: dict[str, list[list[Any]]] = {}
        self.avg: dict[tuple[str, float], tuple[float, float, float]] = {}  # (sum wx, sum w, t)

    def record(self, s: Slot, side: int, price: float, shares: float, now: float) -> None:
        assert s.m is not None
        self.waiting.setdefault(s.name, []).append(
            [s.m.qm.market_id, now, side, price, shares, False]
        )

    def score(self, s: Slot, now: float) -> None:
        """Mark the fills old enough against the fair value now (the quote step's)."""
        m = s.m
        fills = self.waiting.get(s.name)
        if not fills or m is None or m.fair is None:
            return
        keep = []
        for f in fills:
            mid, t, side, price, shares, short_done = f
            if mid != m.qm.market_id:
                continue  # its market ended: its fair is gone (resolution settles it)
            x = (m.fair - price) if side == BUY else (price - m.fair)
            if not short_done and now - t >= self.cfg.markout_s:
                self._add(s, self.cfg.markout_s, x, shares, now)
                f[5] = True
            if now - t >= MARKOUT_LONG_S:
                self._add(s, MARKOUT_LONG_S, x, shares, now)
                continue
            keep.append(f)
        self.waiting[s.name] = keep
        for h, g in (
            (self.cfg.markout_s, s.metrics.markout_short),
            (MARKOUT_LONG_S, s.metrics.markout_long),
        ):
            v = self.mean(s, h)
            if v is not None:
                g.set(v)

    def _add(self, s: Slot, h: float, x: float, w: float, now: float) -> None:
        sx, sw, t = self.avg.get((s.name, h), (0.0, 0.0, now))
        decay = 0.5 ** (max(0.0, now - t) / self.cfg.toxicity_half_life_s)
        self.avg[(s.name, h)] = (sx * decay + w * x, sw * decay + w, now)

    def mean(self, s: Slot, h: float) -> float | None:
        """The slot's average markout per share at horizon h (None before any)."""
        sx, sw, _ = self.avg.get((s.name, h), (0.0, 0.0, 0.0))
        return sx / sw if sw > 1e-9 else None

    def signals(self, s: Slot) -> Signals:
        short = self.mean(s, self.cfg.markout_s)
        return Signals(toxicity=max(0.0, -short) if short is not None else 0.0)


# -- claims ---------------------------------------------------------------------------------------
class Claims(Owner):
    """Winnings to claim (engine thread). Owns the finished markets still to claim (market id ->
    contract), the position each one finished with, since when each has waited, and how often
    in a row the exchange said it does not know one. Claimed every claim_s until the exchange
    pays or says lost; the finished position's PnL at resolution goes to the Ledger.

    Resolution takes its time on the real venue (spec 6.3: an optimistic oracle with a 60 s
    liveness, assets one after another, a failed resolution retried the next cycle), and a
    claim endpoint that answers 404 for a market we traded is a failing read, not proof the
    market does not exist: such a market is asked again with a backoff (claim_s doubling up
    to CLAIM_BACKOFF_MAX_S), never dropped. One that waits claim_alert_s is an ERROR and an
    alert (`claim_waiting`); one that waits claim_give_up_s is given up (`claim_given_up`,
    an ERROR and an alert) and kept in the state file as given up, never silently."""

    def __init__(self, e: Engine, ledger: Ledger, saved: Callable[[], None]) -> None:
        super().__init__(e)
        self.ledger = ledger
        self.saved = saved  # writes the state file after a change
        self.pending: dict[str, str] = {}  # market id -> contract, until claimed or lost
        self.settled: dict[str, dict[str, Any]] = {}  # market id -> position, for resolution
        self.filed: dict[str, float] = {}  # market id -> clock time it became a claim
        self.given_up: dict[str, dict[str, Any]] = {}  # market id -> contract, why, when
        self.strikes: dict[str, int] = {}  # market id -> "unknown market" answers in a row
        self.next_try: dict[str, float] = {}  # market id -> not asked again before (backoff)
        self.alerted: set[str] = set()  # claim_waiting said once per market and run

    def finished(self, s: Slot, m: MarketState, replace: bool = True) -> None:
        """A market of the slot ended (rollover) or we stop with it (shutdown, `replace`
        False: what rollover already filed stands): claim it later, settle its position."""
        mid = m.qm.market_id
        rec = {"position": m.pnl.position, "avg": m.pnl.avg, "slot": s.name}
        self.filed.setdefault(mid, self.clock.now())
        if replace:
            self.pending[mid] = m.qm.contract or mid
            self.settled[mid] = rec
        else:
            self.pending.setdefault(mid, m.qm.contract or mid)
            self.settled.setdefault(mid, rec)

    def resumed(self, market_id: str) -> None:
        """Restarted mid-market: it is not finished."""
        self.pending.pop(market_id, None)
        self.settled.pop(market_id, None)
        self.filed.pop(market_id, None)

    def held(self) -> float:
        """Shares of the finished markets still to claim (their positions, unsigned): value
        the wallet does not have until resolution pays it (not in the budgets' capital)."""
        return sum(abs(float(r.get("position", 0.0))) for r in self.settled.values())

    def run(self) -> None:
        if not self.pending or self.dry_run:
            return
        now = self.clock.now()
        self._waits(now)
        due = [(m, c) for m, c in self.pending.items() if now >= self.next_try.get(m, 0.0)]
        if not due:
            return
        try:
            results = self.ex.claim(due, now)
        except ExchangeError as e:
            if e.kind != "not_found":
                raise
            # one market the host does not know must not block the others: one at a time
            if len(due) == 1:
                results = [ClaimResult(due[0][0], due[0][1], "unknown")]
            else:
                results = self._one_by_one(due)
        changed = False
        for r in results:
            slot = str((self.settled.get(r.market_id) or {}).get("slot", ""))
            if r.status == "unknown":
                self._unknown(r.market_id, slot, now)
            else:
                self.strikes.pop(r.market_id, None)
                self.next_try.pop(r.market_id, None)
            if r.status in ("claimed", "lost"):
                self.pending.pop(r.market_id, None)
                self.filed.pop(r.market_id, None)
                self.alerted.discard(r.market_id)
                settled = self._settle_pnl(self.settled.pop(r.market_id, None), r.yes_won)
                changed = True
                if r.status == "claimed":
                    amount = r.amount / SIZE_SCALE
                    self.ledger.c.claims += 1
                    self.ledger.c.claimed_usdc += amount
                    s = next((x for x in self.slots if x.name == slot), None)
                    if s is not None:
                        s.c.claims += 1
                        s.c.claimed_usdc += amount
                    self.log.event(
                        "claim",
                        slot=slot,
                        market=r.market_id,
                        amount=amount,
                        tx=r.tx,
                        settled_pnl=round(settled, 6),
                        yes_won=r.yes_won,
                    )
                else:
                    self.log.event(
                        "claim_none",
                        slot=slot,
                        market=r.market_id,
                        settled_pnl=round(settled, 6),
                        yes_won=r.yes_won,
                    )
            elif r.status == "failed":
                self.log.event(
                    "error",
                    level="WARNING",
                    kind="claim_failed",
                    slot=slot,
                    market=r.market_id,
                    reason=r.tx[:160],
                )
        if changed:
            self.saved()

    def _unknown(self, mid: str, slot: str, now: float) -> None:
        """The exchange does not know the market (yet): ask again later, doubling the wait."""
        n = self.strikes.get(mid, 0) + 1
        self.strikes[mid] = n
        wait = min(CLAIM_BACKOFF_MAX_S, self.cfg.claim_s * 2 ** (n - 1))
        self.next_try[mid] = now + wait
        if n == 1:
            self.log.event(
                "claim_deferred",
                level="WARNING",
                slot=slot,
                market=mid,
                reason="the claim endpoint does not know it (404): asked again with a backoff",
                waited_s=round(now - self.filed.get(mid, now), 1),
            )

    def _waits(self, now: float) -> None:
        """A claim that has waited claim_alert_s is an ERROR (an alert); one that has waited
        claim_give_up_s is given up: an ERROR, kept in the state file under given up."""
        gone = []
        for mid, contract in self.pending.items():
            since = self.filed.setdefault(mid, now)  # a state file without it: from now
            waited = now - since
            slot = str((self.settled.get(mid) or {}).get("slot", ""))
            if waited >= self.cfg.claim_give_up_s:
                gone.append(mid)
                self.given_up[mid] = {
                    "contract": contract,
                    "slot": slot,
                    "since": since,
                    "given_up": now,
                    "position": (self.settled.get(mid) or {}).get("position"),
                    "strikes": self.strikes.get(mid, 0),
                }
                self.log.event(
                    "claim_given_up",
                    level="ERROR",
                    slot=slot,
                    market=mid,
                    contract=contract,
                    waited_s=round(waited, 1),
                    reason="not paid or lost within claim_give_up_s; kept in the state file",
                )
            elif waited >= self.cfg.claim_alert_s and mid not in self.alerted:
                self.alerted.add(mid)
                self.log.event(
                    "claim_waiting",
                    level="ERROR",
                    slot=slot,
                    market=mid,
                    contract=contract,
                    waited_s=round(waited, 1),
                    unknown_in_a_row=self.strikes.get(mid, 0),
                )
        for mid in gone:
            for d in (self.pending, self.settled, self.filed, self.strikes, self.next_try):
                d.pop(mid, None)
            self.alerted.discard(mid)
        if gone:
            self.saved()

    def _one_by_one(self, pairs: list[tuple[str, str]]) -> list[ClaimResult]:
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
        self.ledger.realize(str(rec.get("slot")), v)
        return v


# -- the state file -----------------------------------------------------------------------------
class StateFile:
    """What a restart needs (engine thread): pending claims and settled positions, realized
    totals, counters and each current market's PnL. The one place that maps the file to the
    owners and back; written to a temporary file, fsynced, then renamed over the old one, so a
    crash mid-write leaves the previous state intact."""

    def __init__(self, path: str, ledger: Ledger, claims: Claims, slots: list[Slot]) -> None:
        self.path = path
        self.ledger = ledger
        self.claims = claims
        self.slots = slots
        # market id -> (base, journal) carried over a restart: PnL.replay gives its PnL
        self.restored: dict[str, tuple[PnL, list[tuple[int, float, float, float]]]] = {}

    def load(self) -> None:
        path = self.path
        if not os.path.exists(path):
            return
        try:
            with open(path, encoding="utf-8") as fh:
                st = json.load(fh)
            self._apply(st)
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise ConfigError(
                f"state file {path} is unreadable ({type(e).__name__}); "
                "move it aside to start fresh"
            ) from None

    def _apply(self, st: dict[str, Any]) -> None:
        led, cl = self.ledger, self.claims
        cl.pending = {str(k): str(v) for k, v in st.get("claims", {}).items()}
        cl.settled = dict(st.get("settled", {}))
        cl.filed = {str(k): float(v) for k, v in st.get("claims_filed", {}).items()}
        cl.given_up = dict(st.get("claims_given_up", {}))
        led.realized_total = float(st.get("realized_total", 0.0))
        led.day = str(st.get("day", ""))
        led.day_pnl = float(st.get("day_pnl", 0.0))
        for k, v in st.get("counters", {}).items():
            if hasattr(led.c, k):
                setattr(led.c, k, type(getattr(led.c, k))(v))
        if st.get("market") and st.get("market_pnl"):  # the single-market format
            self.restored[str(st["market"])] = (PnL(**st["market_pnl"]), [])
        for s in self.slots:
            rec = st.get("markets", {}).get(s.name)
            if not rec:
                continue
            s.realized = float(rec.get("realized", 0.0))
            for k, v in rec.get("counters", {}).items():
                if hasattr(s.c, k):
                    setattr(s.c, k, type(getattr(s.c, k))(v))
            if rec.get("market") and rec.get("pnl"):
                # a file without the journal (older runs) carries its PnL as the base
                rows = rec.get("journal") or [] if rec.get("base") else []
                base = PnL(**(rec.get("base") or rec["pnl"]))
                journal = [(int(sd), float(p), float(sh), float(fee)) for sd, p, sh, fee in rows]
                self.restored[str(rec["market"])] = (base, journal)

    def save(self, bot_name: str, now: float) -> None:
        led, cl = self.ledger, self.claims
        st = {
            "bot": bot_name,
            "saved": now,
            "claims": cl.pending,
            "settled": cl.settled,
            "claims_filed": cl.filed,
            "claims_given_up": cl.given_up,
            "realized_total": led.realized_total,
            "day": led.day,
            "day_pnl": led.day_pnl,
            "counters": dataclasses.asdict(led.c),
            "markets": {
                s.name: {
                    "market": s.m.qm.market_id if s.m else None,
                    "pnl": dataclasses.asdict(s.m.pnl) if s.m else None,
                    "base": dataclasses.asdict(s.m.base) if s.m else None,
                    "journal": s.m.journal if s.m else [],
                    "realized": s.realized,
                    "counters": dataclasses.asdict(s.c),
                }
                for s in self.slots
            },
        }
        d = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".spike_state.", dir=d)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(st, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


# -- status: what the operator and Prometheus see -------------------------------------------------
class Status(Owner):
    """Gauges, the status line and the per-market summary of pnl_snapshot and shutdown lines
    (engine thread). It reads the owners and writes nothing but metrics."""

    def __init__(
        self,
        e: Engine,
        ledger: Ledger,
        risk: Risk,
        watch: BookWatch,
        prices: PriceSource,
        claims: Claims,
        mode: str,
    ) -> None:
        super().__init__(e)
        self.ledger = ledger
        self.risk = risk
        self.watch = watch
        self.prices = prices
        self.claims = claims
        self.mode = mode
        self.last_update: float | None = None  # clock time of the last update_gauges

    def update_gauges(self) -> None:
        now = self.clock.now()
        dt, self.last_update = max(0.0, now - (self.last_update or now)), now
        for s in self.slots:
            if not s.quoting and s.closed_reason and s.closed_reason != "starting":
                s.metrics.closed(s.closed_reason).inc(dt)  # fail-closed time by reason
            r, u = self.ledger.pnl_now(s)
            mm = s.metrics
            mm.pnl_realized.set(r)
            mm.pnl_unrealized.set(u)
            mm.inventory.set(self.ledger.inventory(s))
            age = self.watch.age(s.m.qm.market_id) if s.m else math.inf
            mm.feed_age.set(age if math.isfinite(age) else -1)
            src, p_age = self.prices.state(s.key.asset)
            mm.price_age.set(p_age if math.isfinite(p_age) else -1)
            mm.price_streamed.set(1 if src == "pyth" else 0)
            mm.budget.set(s.budget if math.isfinite(s.budget) else -1)
            mm.budget_used.set(s.tied())
        notional, net = self.risk.portfolio()
        self.metrics.open_notional.set(notional)
        self.metrics.net_exposure.set(net)
        self.metrics.day_pnl.set(self.ledger.day_pnl + sum(s.open_pnl() for s in self.slots))
        cap = self.risk.capital
        if cap is not None and math.isfinite(cap):
            self.metrics.capital.set(cap)

    def market_summary(self) -> dict[str, dict[str, Any]]:
        """Per-slot figures for the pnl_snapshot and shutdown lines (the report reads them)."""
        out = {}
        for s in self.slots:
            r, u = self.ledger.pnl_now(s)
            out[s.name] = {
                "realized": round(r, 6),
                "unrealized": round(u, 6),
                "inventory": round(self.ledger.inventory(s), 6),
                "fills": s.c.fills,
                "orders": s.c.orders,
                "claimed_usdc": round(s.c.claimed_usdc, 6),
                "rebates_est": round(s.c.rebates_est, 6),  # estimated, not in realized
                "budget": round(s.budget, 2) if math.isfinite(s.budget) else None,
            }
        return out

    def snapshot(self) -> dict[str, Any]:
        """The pnl_snapshot line's fields."""
        c = self.ledger.c
        r, u = self.ledger.pnl_now()
        notional, net = self.risk.portfolio()
        return {
            "realized": round(r, 6),
            "unrealized": round(u, 6),
            "total": round(r + u, 6),
            "inventory": round(self.ledger.inventory(), 6),
            "fees": round(sum(s.m.pnl.fees for s in self.slots if s.m), 6),
            "fills": c.fills,
            "orders": c.orders,
            "cancels": c.cancels,
            "fill_rate": round(c.filled_size / c.placed_size, 6) if c.placed_size else 0.0,
            "requests": self.metrics.requests_total,
            "errors": dict(self.metrics.errors_by_kind),
            "claimed_usdc": round(c.claimed_usdc, 6),
            "rebates_est": round(c.rebates_est, 6),  # maker rebates, estimated: not in total
            "fail_closed": c.fail_closed,
            "open_notional": round(notional, 4),
            "net_exposure": round(net, 4),
            "rss_mb": rss_mb(),  # memory over time, for the report's stability lines
            "markets": self.market_summary(),
        }

    def line(self) -> str:
        """One line for the pane, time and state first, under 120 columns for one market:
        `20:04:02 spike QUOTING | BTC:15 T-523s fair .512 bid .481 ask .543 x10 inv +3 | pnl
        +1.23 fills 12 expo +1.5`. The feed's and the price's ages show only when they are
        more than STATUS_AGE_S old; limits and a closed market only when they apply."""
        now = self.clock.now()
        closed = [s for s in self.slots if not s.quoting]
        state = "QUOTING" if not closed else f"CLOSED({closed[0].closed_reason})"
        if closed and len(closed) < len(self.slots):
            state = f"{len(self.slots) - len(closed)}/{len(self.slots)} QUOTING " + state
        if self.risk.day_killed:
            state = "DAY-KILLED " + state
        who = self.cfg.bot_name.removesuffix("_bot").removesuffix("_spike") or "bot"
        tag = f" {self.mode.upper()}" if self.mode in ("paper", "dry_run") else ""
        parts = [f"{time.strftime('%H:%M:%S', time.gmtime(now))} {who}{tag} {state}"]

        def px(p: int) -> str:
            return f"{p / PRICE_SCALE:.3f}".lstrip("0")

        for s in self.slots:
            m = s.m
            if m is None:
                parts.append(f"{s.name} no market yet")
                continue
            bid = next((o for o in m.live.values() if o.side == BUY), None)
            ask = next((o for o in m.live.values() if o.side == SELL), None)
            sizes = {o.remaining / SIZE_SCALE for o in (bid, ask) if o is not None}
            fair = f"{m.fair:.3f}".lstrip("0") if m.fair is not None else "-"
            part = (
                f"{s.name} T-{max(0, m.qm.end - now):.0f}s fair {fair} "
                f"bid {px(bid.price) if bid else '-'} ask {px(ask.price) if ask else '-'}"
                + (f" x{'/'.join(f'{x:g}' for x in sorted(sizes))}" if sizes else "")
                + f" inv {m.pnl.position:+g}"
            )
            age = self.watch.age(m.qm.market_id)
            if age > STATUS_AGE_S:
                part += f" feed {age:.0f}s" if math.isfinite(age) else " feed none"
            src, p_age = self.prices.state(s.key.asset)
            if p_age > STATUS_AGE_S:
                part += f" px({src}) {p_age:.0f}s" if math.isfinite(p_age) else " px none"
            if not s.quoting and len(self.slots) > 1:
                part += f" CLOSED({s.closed_reason})"
            if s.blocked:
                part += " LIMIT(" + ",".join(
                    f"{_side(k)}:{v}" for k, v in sorted(s.blocked.items())
                ) + ")"
            parts.append(part)
        r, u = self.ledger.pnl_now()
        _, net = self.risk.portfolio()
        tail = f"pnl {r + u:+.2f} fills {self.ledger.c.fills} expo {net:+.1f}"
        if self.ledger.c.rebates_est >= 0.005:  # estimated maker rebates, beside the PnL
            tail += f" reb +{self.ledger.c.rebates_est:.2f}"
        if self.claims.pending:  # winnings (or losses) waiting for resolution: not capital
            tail += f" claims {len(self.claims.pending)} ({self.claims.held():g} sh)"
        if self.claims.given_up:
            tail += f" GIVEN-UP {len(self.claims.given_up)}"
        parts.append(tail)
        return " | ".join(parts)


STATUS_AGE_S = 5.0  # the status line shows a feed or price age only past this
# realized_vol: the prices kept, the least returns it needs, and its bounds (annualised)
VOL_SAMPLES = 20_000
VOL_MIN_RETURNS = 30
VOL_FLOOR, VOL_CAP = 0.10, 2.0
SECONDS_PER_YEAR = 365 * 24 * 3600


def rss_mb() -> float | None:
    """This process's resident memory now (Linux /proc), MB; None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)


# -- market lifecycle -----------------------------------------------------------------------------
class Markets(Owner):
    """Which quick market each slot quotes (engine thread): `check_market` asks the exchange
    for the slot's current market (on the rollover poll, a stream hint or the end of ours),
    refuses one it cannot believe, and `rollover` moves the slot onto it: the old market's
    orders cancelled and read back, its position filed as a claim and its realized PnL
    booked, the new one's book tracked and subscribed (a restart's PnL carried on)."""

    def __init__(
        self,
        e: Engine,
        feed: Feed,
        ledger: Ledger,
        risk: Risk,
        watch: BookWatch,
        prices: PriceSource,
        boundary: Boundary,
        orders: Orders,
        claims: Claims,
        state: StateFile,
        stream: Callable[[], Stream | None],
        saved: Callable[[], None],
    ) -> None:
        super().__init__(e)
        self.feed, self.ledger, self.risk, self.watch = feed, ledger, risk, watch
        self.prices, self.boundary, self.orders, self.claims = prices, boundary, orders, claims
        self.state = state
        self.stream = stream  # the book feed, once startup made it
        self.saved = saved  # writes the state file

    def check_market(self, s: Slot) -> None:
        """Roll the slot to its current quick market when it changed (poll, or a hint)."""
        # a stream hint only says "poll now": the adapter's record carries what the hint
        # lacks (contract, settlement address), and a forged or stale hint changes nothing
        qm = self.ex.quick_market(s.key)
        if s.m is not None and qm.market_id.lower() == s.m.qm.market_id.lower():
            return
        try:  # a market we cannot believe is never rolled onto: we stay on the one we have
            check_quick_market(
                qm,
                s.key,
                s.m.qm if s.m else None,
                self.clock.now(),
                self.prices.price(s.key.asset),
                self.cfg.price_band,
            )
        except ReplyRejected as e:
            self.boundary.rejected("quick_market", e)
            return
        self.rollover(s, qm)

    def rollover(self, s: Slot, qm: QuickMarket) -> None:
        old = s.m
        t0 = time.perf_counter()
        stream = self.stream()
        if old is not None:
            self.orders.cancel_all(s, "rollover", old.qm.market_id)
            with contextlib.suppress(ExchangeError):
                self.orders.sync(s)  # fills that landed before the end
            self.claims.finished(s, old)
            self.ledger.realize(s.name, old.pnl.realized)
            # its position is now a claim, not capital: the budgets are read again
            self.risk.capital_stale = True
            if stream is not None:
                stream.unsubscribe(old.qm.market_id)
            self.ledger.count(s, "rollovers")
        s.m = MarketState(qm)
        s.blocked = {}
        if self.recorder is not None:
            self.recorder.market(qm)
        restored = self.state.restored.pop(qm.market_id, None)
        if restored is not None:  # restarted mid-market: carry the position on
            s.m.base, s.m.journal = dataclasses.replace(restored[0]), list(restored[1])
            s.m.pnl = PnL.replay(s.m.base, s.m.journal)
            self.claims.resumed(qm.market_id)
        self.orders.opened(s.m, abs(s.m.pnl.position) if restored is not None else 0.0)
        self.feed.track(qm.market_id, old.qm.market_id if old is not None else None)
        if stream is not None:
            stream.subscribe(qm.market_id)
        self.watch.poll_if_needed(s, force=True)
        if old is not None:
            self.log.event(
                "rollover",
                slot=s.name,
                old_market=old.qm.market_id,
                old_end=old.qm.end,
                new_market=qm.market_id,
                strike=qm.strike,
                end=qm.end,
                seconds=round(time.perf_counter() - t0, 3),
            )
        self.saved()

# -- live tuning (SIGHUP) --------------------------------------------------------------------------
class Tuning:
    """Live tuning (engine thread, but `request` is called from the SIGHUP handler and only
    sets flags). At the engine's next step the settings are read again; the tunable ones are
    applied if all of them validate, in place on the one Config every owner reads, and the
    difference is logged; on any error the old values stay. Connection, files, markets and
    the schedule need a restart."""

    def __init__(
        self,
        cfg: Config,
        log: EventLog,
        reloader: Callable[[], Config] | None,
        wake: threading.Event,
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.reloader = reloader
        self.wake = wake
        self.requested = threading.Event()

    def request(self) -> None:
        self.requested.set()
        self.wake.set()

    def apply_requested(self) -> set[str]:
        """The settings changed by a requested reload (none when nothing was asked)."""
        if not self.requested.is_set():
            return set()
        self.requested.clear()
        if self.reloader is None:
            return set()
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
            return set()
        cfg = self.cfg
        diff = {
            k: [getattr(cfg, k), getattr(new, k)]
            for k in TUNABLE
            if getattr(cfg, k) != getattr(new, k)
        }
        ignored = sorted(
            f.name
            for f in dataclasses.fields(Config)
            if f.name not in TUNABLE
            and getattr(cfg, f.name) != getattr(new, f.name)
            and f.name not in ("host", "rate_limit_per_s")
        )  # --sim rewrites these
        for k, (_, v) in diff.items():
            setattr(cfg, k, v)
        self.log.event("params_reloaded", changed=diff, needs_restart=ignored)
        return set(diff)


# -- the bot: the loop and the quote step ---------------------------------------------------------
class Bot:
    """The engine: one loop on the calling thread that, every tick, runs the due jobs and then
    each slot's quote step. It owns the slots (each series' current market, schedule and
    quoting state) and wires the owners above together; nothing is attached to it later."""

    def __init__(
        self,
        cfg: Config,
        ex: Exchange,
        clock: Clock,
        log: EventLog,
        metrics: Metrics,
        dry_run: bool = False,
        *,
        mode: str | None = None,  # live, sim, paper, dry_run, replay (the CLI says which)
        recorder: Recorder | None = None,  # --record
        alerter: Alerter | None = None,  # SPIKE_ALERT_WEBHOOK
        hermes_key: str = "",  # PYTH_API_KEY: a secret, never logged
        pyth_auto: bool = False,  # price_source=auto streams: a Hermes key, or --sim
        fresh_state: bool = False,  # --sim: start without the previous run's state
        reloader: Callable[[], Config] | None = None,  # SIGHUP re-reads the settings with it
        price_stream: Any = None,  # replay: the recorded stream instead of Hermes
        strategy: Callable[..., list[Quote]] | None = None,  # bench baselines: not `quotes`
    ) -> None:
        self.cfg = cfg
        self.ex = ex
        self.clock = clock
        self.log = log
        self.metrics = metrics
        self.dry_run = dry_run
        self.mode = mode or ("dry_run" if dry_run else "live")
        self.recorder = recorder
        self.alerter = alerter
        if alerter is not None:
            log.listeners.append(alerter.on_event)
        self.fresh_state = fresh_state
        self.strategy = strategy or quotes  # the STRATEGY section's, unless a bench says
        self.stop_event = threading.Event()
        log.clock = clock.now
        self.slots = [Slot(k, metrics.market(k)) for k in cfg.market_keys()]
        # the owners, each in its own section above
        self.feed = Feed(clock)
        self.tuning = Tuning(cfg, log, reloader, self.feed.wake)
        self.boundary = Boundary(log, metrics, clock)
        self.ledger = Ledger(self.slots)
        e = Engine(cfg, clock, ex, log, metrics, self.slots, recorder, dry_run)
        self.watch = BookWatch(e, self.feed)
        self.prices = PriceSource(e, self.feed, hermes_key, pyth_auto, price_stream)
        # Risk asks Orders (built after it) whether a held SELL can settle: late-bound
        self.risk = Risk(
            e,
            self.ledger,
            self.watch,
            self.boundary,
            self.prices,
            lambda: self.orders.ctf_approved,
            lambda: ex.policy.degraded,
        )
        # Fills asks Orders for read-backs and Orders books fills into Fills: the late-bound
        # lambda lets the two be built in order
        read_back = lambda s: self.orders.sync(s)  # noqa: E731, PLW0108
        self.markouts = Markouts(e)
        self.fills = Fills(e, self.ledger, read_back, self.markouts.record)
        self.orders = Orders(e, self.feed, self.ledger, self.risk, self.fills.on_fill)
        self.claims = Claims(e, self.ledger, self.save_state)
        self.state = StateFile(cfg.state_file, self.ledger, self.claims, self.slots)
        self.status = Status(
            e, self.ledger, self.risk, self.watch, self.prices, self.claims, self.mode
        )
        self.markets = Markets(
            e, self.feed, self.ledger, self.risk, self.watch, self.prices, self.boundary,
            self.orders, self.claims, self.state, lambda: self.stream, self.save_state,
        )
        ex.gate.blocked = self.risk.gate_blocked  # the adapters' firewall asks Risk too
        ex.policy.listener = self.boundary  # every reply refused at the boundary is told here
        self.stream: Stream | None = None  # the book feed (startup)
        self.due: dict[str, float] = {}  # job -> clock time it is next due
        self.requote: set[str] = set()  # slots whose orders are all replaced this step
        self.tick_times: list[float] = []
        self.last_status = 0.0
        self.orders_left_ok = True  # shutdown: whether the exchange confirmed none is left
        self._locks: list[Any] = []
        self._shut = False

    @property
    def c(self) -> Counters:
        """The run's counters over every slot (the Ledger's)."""
        return self.ledger.c

    def save_state(self) -> None:
        """A failed write (full disk) keeps the last good file and alerts; the engine goes on
        (the state matters at the next start) and writes again at the next occasion."""
        try:
            self.state.save(self.cfg.bot_name, self.clock.now())
        except OSError as e:
            self.log.event(
                "error",
                level="ERROR",
                kind="state_write_failed",
                reason=f"{type(e).__name__}: {e.strerror or e}"[:160],
                kept="the last good state file",
            )

    # -- start, run, stop ------------------------------------------------------------------------
    def startup(self) -> None:
        self.state.load()
        if self.recorder is not None:  # replay reads the mode: a live run's books hold ours
            self.recorder.write("start", {"mode": self.mode})
        self.log.event(
            "start",
            address=getattr(self.ex, "address", ""),
            dry_run=self.dry_run,
            mode=self.mode,
            markets=[s.name for s in self.slots],
            config={k: v for k, v in dataclasses.asdict(self.cfg).items()},
            pending_claims=len(self.claims.pending),
        )
        if not self.dry_run:
            # at every start, as the official market maker does: no documented read says
            # whether the approval is in place, and asking again is harmless
            self.orders.request_ctf_approval()
        for what, tx in self.ex.prepare(self.clock.now()).items():
            self.log.event("approval_requested", what=what, tx=tx)
        if not self.dry_run:
            self.orders.cancel_leftovers()
        self.stream = self.ex.stream()
        handler = FeedHandler(
            self.feed,
            getattr(self.ex, "address", ""),
            [s.key for s in self.slots],
            self.log,
            self.recorder,
            self.boundary,
        )
        self.stream.start(handler)
        self.prices.start(list(dict.fromkeys(s.key.asset for s in self.slots)))
        for s in self.slots:
            try:
                self.markets.check_market(s)
            except ExchangeError as e:
                raise ExchangeError(e.kind, f"market {s.name}: {e.message}", e.status) from None
        self._refresh_capital()  # a failure schedules its own retry, sooner than balance_s
        self.due.setdefault("balance", self.clock.now() + self.cfg.balance_s)

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

    def stop(self) -> None:
        self.stop_event.set()
        self.feed.wake.set()

    def request_reload(self) -> None:
        """The SIGHUP handler's call: signal-safe, it only sets flags."""
        self.tuning.request()

    def shutdown(self) -> None:
        """Cancel every order, stop the streams, write state. Safe to call more than once."""
        if self._shut:
            return
        self._shut = True
        left_ok = True
        if not self.dry_run:
            try:
                left_ok = self.orders.cancel_everything(self.slots)
            except Exception as e:  # noqa: BLE001 -- report, then still save state and exit
                left_ok = False
                self.log.event(
                    "error",
                    level="ERROR",
                    kind="shutdown_cancel",
                    error=f"{type(e).__name__}: {str(e)[:200]}",
                )
        self.prices.stop()
        if self.stream is not None:
            self.feed.closing = True
            self.stream.stop()
        for s in self.slots:
            if s.m is not None:
                self.claims.finished(s, s.m, replace=False)
        with contextlib.suppress(OSError):
            self.save_state()
        if self.recorder is not None:
            self.recorder.close()
        r, u = self.ledger.pnl_now()
        ticks = sorted(self.tick_times)
        self.orders_left_ok = left_ok
        self.log.event(
            "shutdown",
            orders_left_ok=left_ok,
            realized=round(r, 6),
            unrealized=round(u, 6),
            rebates_est=round(self.c.rebates_est, 6),
            fills=self.c.fills,
            orders=self.c.orders,
            requests=self.metrics.requests_total,
            tick_p50_ms=round(ticks[len(ticks) // 2] * 1000, 3) if ticks else None,
            markets=self.status.market_summary(),
        )
        if self.alerter is not None:
            self.alerter.close()  # the shutdown alert goes out before the process ends

    # -- the step --------------------------------------------------------------------------------
    def step(self) -> None:
        """One pass: settings reload, due jobs, kill switches, each slot's quotes, status."""
        t0 = time.perf_counter()
        changed = self.tuning.apply_requested()
        if {"capital_usdc", "capital_split"} & changed:
            self.due["balance"] = 0.0  # new budgets at once
        if changed:  # the operator's new settings show in the quotes now, not at a refresh
            self.requote = {s.name for s in self.slots}
        self.prices.last_step_mono = time.monotonic()  # read by the price-stream thread
        if self.stream is not None:
            self.stream.pump()
        if self.recorder is not None:
            self.recorder.write("step", None)  # replay steps the engine exactly here
        # the streamed prices as of the step's start: what replay sees
        self.prices.begin_step(self.feed.prices_now(), self.clock.now())
        now = self.clock.now()
        cfg = self.cfg
        self._safety_first()
        hints, own = self.feed.take_news()
        for s in self.slots:
            if (
                s.key in hints
                or _due(s.due, "rollover", cfg.rollover_s, now)
                or (s.m and now >= s.m.qm.end)
            ):
                self._job("rollover", lambda s=s: self.markets.check_market(s), s)
        if cfg.fair_source in ("model", "blend"):
            for asset in dict.fromkeys(s.key.asset for s in self.slots):
                if _due(self.due, "price:" + asset, cfg.price_s, now):
                    self._job("price", lambda a=asset: self.prices.read(a))
        # failed settlements: read when a position disagrees with our fills (poll_positions),
        # and every FAILED_IDLE_S whatever happens
        if not self.dry_run and _due(self.due, "failed_trades", FAILED_IDLE_S, now):
            self._job("failed_trades", self.fills.poll_failed_trades)
        doubt = self.boundary.failing() == "positions"  # read again every step until believed
        for s in self.slots:
            mine = s.m is not None and bool({"", s.m.qm.market_id.lower()} & own)
            if _due(s.due, "positions", cfg.positions_s, now) or mine or doubt:
                self._job("positions", lambda s=s, o=mine: self.fills.poll_positions(s, o), s)
        if _due(self.due, "claims", cfg.claim_s, now):
            paid = self.c.claimed_usdc
            self._job("claims", self.claims.run)
            self.risk.capital_stale |= self.c.claimed_usdc != paid
        if self.risk.capital_stale:
            self.risk.capital_stale = False
            self.due["balance"] = 0.0
        if _due(self.due, "balance", cfg.balance_s, now):
            self._job("balance", self._refresh_capital)
        if _due(self.due, "pnl", cfg.pnl_snapshot_s, now) and self.c.ticks:
            self._job("pnl", self.pnl_snapshot)
        self._job("kill_switches", lambda: self.risk.check_kill_switches(now))
        for s in self.slots:
            self._job("quote", lambda s=s: self._quote_step(s), s)
        self.c.ticks += 1
        self.tick_times.append(time.perf_counter() - t0)
        del self.tick_times[:-1000]
        self.status.update_gauges()
        wall = time.monotonic()
        if cfg.status_every_s and wall - self.last_status >= cfg.status_every_s:
            self.last_status = wall
            print(self.status.line(), flush=True)

    def _job(self, name: str, fn: Callable[[], None], s: Slot | None = None) -> None:
        """Run a job; an exception is logged with context and never kills the loop. Before a
        poll, the stale-feed check runs again: a slow host delays polls, not fail-closed."""
        where = {"slot": s.name} if s is not None else {}
        if name in DEFERRED_JOBS:
            self._safety_first()
        try:
            fn()
        except ExchangeError as e:
            self.c.errors += 1
            self.log.event(
                "error",
                level="WARNING",
                kind=e.kind,
                job=name,
                **where,
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
                **where,
                error=f"{type(e).__name__}: {str(e)[:200]}",
            )
            if name == "quote" and s is not None:
                with contextlib.suppress(Exception):
                    self.fail_closed(s, "exception")

    def _safety_first(self) -> None:
        """A stale book fails its market closed (and cancels) before any poll runs."""
        for s in self.slots:
            if s.m is not None and s.quoting and not self.watch.fresh(s.m.qm.market_id):
                self._job("quote", lambda s=s: self.fail_closed(s, "stale_feed"), s)

    def _refresh_capital(self) -> None:
        retry_at = self.risk.refresh_capital()
        if retry_at is not None:
            self.due["balance"] = retry_at

    def pnl_snapshot(self) -> None:
        self.log.event("pnl_snapshot", **self.status.snapshot())
        self.save_state()

    # -- the quote step --------------------------------------------------------------------------
    def _quote_step(self, s: Slot) -> None:
        self.read_market(s)
        self.quote(s)

    def read_market(self, s: Slot) -> None:
        """The quote step's reads, before it decides: the book over REST while the stream is
        down or quiet, and our orders when the stream saw one of them die or a doubt is open
        (only for a market that may trade: a blocked one is cancelled instead)."""
        m = s.m
        if m is None:
            return
        doubt = self.boundary.failing()  # a read whose replies were refused: ask it again now
        self.watch.poll_if_needed(s, force=doubt == "orderbook")
        self.watch.confirm_quiet(s)
        self.watch.kick_disputed(s, self.stream)
        if doubt == "orders":
            with contextlib.suppress(ExchangeError):  # refused again: counted; quote fails closed
                self.orders.sync(s)
        elif self.risk.blocked(s) is None and self.clock.now() < m.qm.end:
            if self.feed.dead(set(m.live)) or s.need_resync:
                self.orders.sync(s)

    def quote(self, s: Slot) -> None:
        """Decide on what the step has read: fail closed when Risk says so, else price both
        sides and send only the difference against the live orders (cancels first)."""
        m = s.m
        if m is None:
            return
        now = self.clock.now()
        if now >= m.qm.end:
            s.due["rollover"] = 0.0  # T-minus already pulled the orders: roll
            return
        book = self.watch.book_excluding_own(s)
        left = m.qm.end - now
        px = self.prices.price(s.key.asset)  # the freshest price, read at quote time
        if px is not None and not m.price_off and not price_consistent(
            px, m.qm.strike, self.cfg.price_band
        ):
            m.price_off = True  # logged once per market; the model sits out while it lasts
            self.log.event(
                "error",
                level="WARNING",
                kind="price_scale",
                slot=s.name,
                market=m.qm.market_id,
                price=px,
                strike=m.qm.strike,
                ratio=round(px / m.qm.strike, 6) if m.qm.strike else None,
            )
        vol = self.prices.realized_vol(s.key.asset) if self.cfg.vol_window_s > 0 else None
        m.fair = fair_value(book, px, m.qm.strike, left, self.cfg, vol)
        if m.pnl.position > 0 and not self.dry_run:
            self.orders.may_sell_held(now)  # keeps the CTF approval asked for until given
        stop = self.risk.verdict(s)  # the one answer (STOPS), with this step's fair value
        if stop is not None and stop.close:
            self.fail_closed(s, stop.reason)
            if stop.reason == "stale_feed":
                self.watch.kick(s, self.stream)
            return
        assert m.fair is not None  # no_fair_value is a closing stop
        self.markouts.score(s, now)
        self.resume(s)
        desired = self.strategy(
            m.fair, m.pnl.position, book, left, self.cfg, self.markouts.signals(s)
        )
        resting = {o.side for o in m.live.values()}
        desired, blocked = limit_quotes(
            desired, m.pnl.position, m.fair, self.risk.headroom(s), resting
        )
        desired = [q for q in desired if self.risk.verdict(s, q.side, side_only=True) is None]
        self.risk.note_limits(s, blocked)
        deep = book_is_deep(book, self.cfg)
        tol = self.cfg.deep_requote_tolerance if deep else self.cfg.requote_tolerance
        passive = tol if deep else tol * self.cfg.requote_passive_mult
        tol, passive = round(tol * PRICE_SCALE), round(passive * PRICE_SCALE)
        refresh = 0.0 if s.name in self.requote else self.cfg.order_refresh_s
        self.requote.discard(s.name)
        cancels, places = plan(desired, m.live.values(), tol, now, refresh, passive)
        mark = self.feed.heard()  # the stream's books from here on follow the cancels
        # cancel first: never more exposure on the book than the plan allows
        for o in cancels:
            self.orders.cancel(s, o, "requote")
        if self.risk.verdict(s) is not None:
            return  # a stop that holds new orders (the host failing): cancels only
        sides = {q.side for q in places}
        replaced = [o for o in cancels if o.order_hash in m.cancel_ok and o.side in sides]
        if replaced:
            # a cancel's answer is believed once the stream or a read-back agrees: one that
            # lied leaves its order open, and the side gets no second order (Orders.place)
            # until it is gone
            self.orders.confirm_cancels(s, replaced, mark, getattr(self.stream, "live", False))
        for q in places:
            self.orders.place(s, q, now)

    def fail_closed(self, s: Slot, reason: str) -> None:
        """Stop quoting the slot and cancel its orders; logged once per reason change."""
        changed = reason != s.closed_reason
        if changed:
            self.ledger.count(s, "fail_closed")
            s.closed_since = self.clock.now()
            self.log.event(
                "fail_closed",
                level="WARNING",
                slot=s.name,
                reason=reason,
                market=s.m.qm.market_id if s.m else None,
                feed_age=round(min(self.watch.age(s.m.qm.market_id) if s.m else 1e9, 1e9), 2),
            )
        s.quoting = False
        s.closed_reason = reason
        s.metrics.quoting.set(0)
        if s.m is not None and (changed or s.m.live):
            self.orders.cancel_all(s, reason)

    def resume(self, s: Slot) -> None:
        if not s.quoting:
            if s.closed_reason not in (None, "starting"):
                self.log.event(
                    "resumed",
                    slot=s.name,
                    after=s.closed_reason,
                    closed_s=round(self.clock.now() - (s.closed_since or 0), 2),
                )
            s.quoting = True
            s.closed_reason = None
            s.metrics.quoting.set(1)



# =============================================================================================
# 6. CLI: flags (one per setting), modes, signals, main().
# =============================================================================================
def build_parser(base: Config | None = None) -> argparse.ArgumentParser:
    defaults = base or Config()
    prog = f"{defaults.bot_name}.py"
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Turbine BTC quick-market maker. Without a subcommand it runs the bot.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""subcommands:
  {prog} [run] [options]        the bot (live; --sim, --paper, --dry-run)
  {prog} preflight [--canary]   every check a live run depends on
  {prog} report LOG [LOG ...]   the comparison of runs, verdict first (--plot DIR, --json)
  {prog} replay FILE            the engine over a recording (--set, --grid)
  {prog} reload                 apply the env file's settings to the running bot (SIGHUP)
  {prog} keystore               encrypt the env file's key (TURBINE_KEYSTORE)
each takes --help""",
    )
    ap.add_argument(
        "--env-file",
        default=".env",
        help="where the key is read and registered API credentials are saved (default: .env)",
    )
    ap.add_argument(
        "--sim",
        action="store_true",
        help="run against an in-process turbine_sim with a generated key",
    )
    ap.add_argument(
        "--speed", type=float, default=60.0, help="--sim: simulated s per real s (default: 60)"
    )
    ap.add_argument("--seed", type=int, default=7, help="--sim: simulator seed (default: 7)")
    ap.add_argument(
        "--sim-start",
        type=float,
        default=None,
        metavar="UNIX_S",
        help="--sim: simulated start time (default: now, on a market boundary); e.g. a minute "
        "before an hour to watch every series roll at once",
    )
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="read the live API and log the quotes it would place; sign nothing",
    )
    ap.add_argument(
        "--paper",
        action="store_true",
        help="paper trading: live reads and stream, orders filled on a local paper venue with a "
        "paper wallet (paper_usdc); no key needed; own log, state and wallet files",
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
    f"live mode needs {ENV_KEYSTORE} (an encrypted keystore file) or {ENV_PRIVATE_KEY} (a "
    "dedicated wallet's hex private key) in the env file; API credentials are then registered "
    "on first run and saved there. Try --sim or --dry-run first."
)


def read_passphrase(path: str, what: str) -> str:
    """A passphrase file's first line (its line end dropped); never echoed."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().rstrip("\r\n")
    except OSError as e:
        raise ConfigError(f"{what} {path}: {e.strerror}") from None


def unlock_keystore(
    sec: Secrets, environ: dict[str, str], ask: Callable[[str], str] | None = None
) -> Secrets:
    """`sec` with the private key from TURBINE_KEYSTORE (unchanged when none is set). The
    passphrase comes from TURBINE_KEYSTORE_PASSPHRASE_FILE, else is typed at a terminal; it is
    never logged. Every failure is one ConfigError line that names no secret."""
    path = environ.get(ENV_KEYSTORE, "").strip()
    if not path:
        return sec
    if environ.get(ENV_PRIVATE_KEY, "").strip():
        raise ConfigError(f"set {ENV_KEYSTORE} or {ENV_PRIVATE_KEY}, not both")
    try:
        with open(path, encoding="utf-8") as fh:
            store = json.load(fh)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{ENV_KEYSTORE} {path} is unreadable ({type(e).__name__})") from None
    pfile = environ.get(ENV_KEYSTORE_PASSPHRASE_FILE, "").strip()
    if pfile:
        passphrase = read_passphrase(pfile, ENV_KEYSTORE_PASSPHRASE_FILE)
    elif ask is not None or sys.stdin.isatty():
        import getpass

        passphrase = (ask or getpass.getpass)(f"passphrase for {path}: ")
    else:
        raise ConfigError(
            f"{ENV_KEYSTORE} needs its passphrase: start the bot at a terminal to type it, or "
            f"set {ENV_KEYSTORE_PASSPHRASE_FILE}"
        )
    from eth_account import Account

    try:
        key = Account.decrypt(store, passphrase)
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{ENV_KEYSTORE} {path}: wrong passphrase, or not a keystore") from None
    return dataclasses.replace(sec, private_key="0x" + bytes(key).hex())


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


def start_sim(
    cfg: Config, speed: float, seed: int, start: float | None = None
) -> tuple[Any, str, str, str]:
    """--sim: turbine_sim in-process, a fresh key, credentials registered through the API."""
    import turbine_sim

    sim = turbine_sim.start_sim(
        turbine_sim.SimConfig(
            speed=speed,
            seed=seed,
            start_time=start,
            intervals=tuple(sorted({k.interval for k in cfg.market_keys()})),
            assets=tuple(dict.fromkeys(k.asset for k in cfg.market_keys())),
        )
    )
    cfg.host = sim.base_url
    cfg.hermes_url = sim.base_url  # the simulator serves Hermes from its own price path
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
        if a.paper and a.dry_run:
            raise ConfigError("--paper and --dry-run: choose one")
        # a simulated or paper run never shares the live run's default log and state files
        for on, tag in ((a.sim, ".sim"), (a.paper, ".paper")):
            if on:
                b = base or Config()
                base = dataclasses.replace(
                    b,
                    log_file=b.log_file.replace(".log", tag + ".log"),
                    state_file=b.state_file.replace(".json", tag + ".json"),
                )
        cfg, sec = load_config(vars(a), environ, base)
        if a.speed <= 0:
            raise ConfigError("--speed must be > 0")
        if a.duration is not None and a.duration <= 0:
            raise ConfigError("--duration must be > 0")
        metrics = Metrics(cfg.bot_name, cfg.metrics_port)
        clock: Clock = SystemClock()
        if a.sim:
            sim, key, kid, secret = start_sim(cfg, a.speed, a.seed, a.sim_start)
            clock = sim.clock
            print(f"simulator on {cfg.host} (speed {a.speed:g}x, seed {a.seed})", flush=True)
            ex = factory(cfg, *((None,) * 3 if a.paper else (key, kid, secret)), metrics)
        elif a.dry_run or a.paper:
            ex = factory(cfg, None, None, None, metrics)
        else:
            sec = unlock_keystore(sec, environ)
            if not sec.private_key:
                raise ConfigError(HOW_TO_KEY)
            Signer(sec.private_key, cfg.chain_id)  # validate before any I/O
            kid, secret = live_credentials(cfg, sec, a.env_file)
            ex = factory(cfg, sec.private_key, kid, secret, metrics)
        if a.paper:
            import spike_paper  # not the bot: loaded only for paper trading

            if a.sim:  # a new simulated world: the last one's paper wallet means nothing
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(spike_paper.wallet_path(cfg.state_file))
            ex = spike_paper.PaperExchange(ex, cfg, clock.now)
        try:
            log = EventLog(cfg.log_file, cfg.bot_name, echo=lambda s: print(s, flush=True))
        except OSError as e:
            raise ConfigError(f"log file {cfg.log_file} is not writable ({e.strerror})") from None
        recorder = Recorder(a.record, clock.now) if a.record else None
        if a.paper and recorder is not None:
            ex.recorder = recorder  # the paper venue's payouts: their real outcomes
        bot = Bot(
            cfg,
            ex,
            clock,
            log,
            metrics,
            dry_run=a.dry_run,
            mode="paper" if a.paper else "dry_run" if a.dry_run else "sim" if a.sim else "live",
            recorder=recorder,
            alerter=Alerter(sec.alert_webhook, cfg, clock.now) if sec.alert_webhook else None,
            hermes_key=sec.hermes_api_key,
            pyth_auto=bool(sec.hermes_api_key) or a.sim,
            fresh_state=a.sim,
            # SIGHUP: re-read the env file (flags still win) and apply the strategy settings
            reloader=lambda: load_config(
                vars(a), {**read_env_file(a.env_file), **os.environ}, base
            )[0],
        )
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
    signal.signal(signal.SIGHUP, lambda _s, _f: bot.request_reload())
    code = 0
    try:
        bot.run(a.duration)
        if not bot.orders_left_ok:
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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("report", "replay", "preflight", "keystore", "reload"):
        import spike_tools  # not the bot: loaded only for these subcommands

        cli = {
            "report": spike_tools.report_cli,
            "replay": spike_tools.replay_cli,
            "preflight": spike_tools.preflight_cli,
            "keystore": spike_tools.keystore_cli,
            "reload": spike_tools.reload_cli,
        }[args[0]]
        try:
            return cli(args[1:])
        except BrokenPipeError:  # `report ... | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    if args and args[0] == "run":
        args = args[1:]
    return run_cli(args)


if __name__ == "__main__":
    raise SystemExit(main())
