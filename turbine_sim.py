#!/usr/bin/env python3
"""turbine_sim: a local Turbine exchange on loopback.

Serves the REST API (under /api/v1) and the WebSocket stream (/api/v1/stream) of
../shared/turbine-api.md on one port with aiohttp, plus /sim/* admin routes for clock and
fault control. It is the embedded default of `spike_bot.py --sim` and the peer the tests run
against.

    python turbine_sim.py --port 8080 --speed 60 --seed 7

Importable:

    sim = start_sim(SimConfig(manual_clock=True, seed=7))
    sim.base_url, sim.ws_url, sim.advance(30), sim.fault("ws_freeze"), sim.state(), sim.stop()

Layout (rules live in the model classes, the routes only translate JSON):
    Clock         simulated time (real x speed, or manual)
    crypto        EIP-712 / EIP-191 / Ed25519 verification (independent of spike_bot's signer)
    Ledger        USDC balances, allowances, permit and CTF nonces, YES/NO shares, invariants
    Exchange      markets, books, matching, settlement, resolution, claims (single-threaded:
                  everything runs on the aiohttp event loop)
    Participants  seeded noise takers, informed takers and a background maker
    Faults        switchable failure injection
    App           aiohttp routes and the stream fan-out

Where the spec is silent the simulator follows the official SDK and says so in a comment.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import collections
import email.utils
import json
import logging
import math
import random
import secrets
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

from aiohttp import WSMsgType, web
from coincurve import PublicKey
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

log = logging.getLogger("turbine_sim")

# ---------------------------------------------------------------------------------------------
# Constants (from turbine-api.md)
# ---------------------------------------------------------------------------------------------
PRICE_SCALE = 1_000_000
MIN_PRICE, MAX_PRICE = 1, 999_999
BUY, SELL = 0, 1
YES, NO = 0, 1
MAX_UINT = 2**256 - 1
ZERO_ADDRESS = "0x" + "00" * 20
MARKET_CREATOR = "0x" + keccak(b"turbine_sim:market-creator").hex()[-40:]  # Market.maker
BEARER_VALIDITY_S = 300
MIN_EXPIRY_S = 60  # [docs] an order's expiration must be at least this far in the future
MIN_TAKER_VALUE = 1_000_000  # $1: an order that takes liquidity must be worth this (u6)
# Transcribed from the spec independently of spike_bot (the simulator must not share the code
# it judges); test_turbine_sim checks the two transcriptions agree.
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
SECONDS_PER_YEAR = 365 * 24 * 3600


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    chain_id: int = 137
    seed: int = 7
    speed: float = 1.0  # sim seconds per real second (ignored with manual_clock)
    manual_clock: bool = False  # time moves only through advance()
    # sim epoch at start; None: the wall clock at 1x, else the last interval boundary + 1 s
    start_time: float | None = None
    # None: markets on interval boundaries, as live (at 1x the one in progress is partial).
    # A number: the first markets began this many seconds before the start (real-time tests
    # that need a whole market now, whatever the wall clock says).
    market_age_s: float | None = None
    assets: tuple[str, ...] = ("BTC",)
    intervals: tuple[int, ...] = (15,)  # minutes
    btc_price: float = 95_000.0
    annual_vol: float = 0.55  # BTC-like; per asset price paths are independent
    # Resolution (spec 6.3 [rules]): the Pyth price at endTime is proposed to an optimistic
    # oracle (60 s liveness) asset by asset, BTC then ETH then SOL: the first asset resolves
    # resolve_delay_s after endTime, each next one resolve_stagger_s later (30 s and 20 s
    # here: the tests' timing; the live venue's ~1-3 min is `--resolve-delay 90`). A
    # resolution that fails (the `resolve_fail` fault) is retried at the next cycle,
    # resolve_retry_s later (a 15-minute market's next one), so a claim can wait that long.
    resolve_delay_s: float = 30.0
    resolve_stagger_s: float = 20.0
    resolve_retry_s: float = 900.0
    initial_usdc: float = 1_000.0  # each new address starts with this (USDC)
    taker_fee_bps: int = 100  # fee in bps of size (SDK budgets 1% of size); assumption
    maker_fee_bps: int = 0
    rate_limit_per_s: float = 0.0  # per client (API key or IP); 0 = off
    rate_limit_burst: float = 40.0
    # The real stream sends a book on subscribe and after every change, nothing while it is
    # quiet (spec 5.1, 5.3). >0: also resend every subscribed book this often (sim s), the
    # old behaviour, kept as an option.
    book_heartbeat_s: float = 0.0
    participants: bool = True
    noise_rate_per_min: float = 4.0  # noise taker orders per sim minute
    noise_size_mean: float = 60.0  # shares, lognormal
    noise_max_cross: float = 0.32  # how far past the true probability a noise taker pays
    informed_rate_per_min: float = 6.0
    informed_edge: float = 0.025  # informed takers trade quotes mispriced by at least this
    informed_size: float = 40.0
    maker_levels: tuple[float, ...] = (0.03, 0.07, 0.12)
    maker_sizes: tuple[float, ...] = (30.0, 40.0, 60.0)
    maker_refresh_s: float = 5.0
    step_s: float = 1.0  # simulation step (price path, participants)
    # The market model. "classic": the price is a GBM at annual_vol and the participants
    # above price off the true probability with that same vol (the bot's own model: fine for
    # plumbing, circular for judging a strategy). "realistic" (RealisticModel, below): BTC-like
    # returns, an oracle that lags the fast venues, informed takers who see the fast price,
    # heavy-tailed clustered noise flow and competing makers with their own views; each part
    # is calibrated to a published figure cited beside its setting.
    preset: str = "classic"
    # -- realistic: price. Annualised base vol: BTC's one-month realized vol averaged about
    #    50% in 2024-25, with spikes near 70% (Glassnode via CoinDesk, March 2025) and 40-55%
    #    through the 2023-24 uptrend (Glassnode, 2024); base 0.45 plus clustering and jumps
    #    gives about 0.5 realized over a day.
    real_vol: float = 0.45
    # intraday seasonality (Catania & Sandholdt 2019, "Bitcoin at high frequency", JRFM 12(1)
    # 36: a smooth intra-daily pattern): vol x (1 + amp cos(2 pi (hour - peak) / 24)), peak at
    # the US session
    vol_season_amp: float = 0.35
    vol_season_peak_utc: float = 15.0
    # volatility clustering with long memory (same paper: realized vol has long memory; its
    # absolute returns' autocorrelation decays as a power law, Alonso-Marroquin et al. 2024,
    # arXiv 2402.11930): two log-vol OU factors, 10 min and 6 h half-lives
    vol_of_vol: tuple[float, float] = (0.25, 0.35)  # stationary sd of each log-vol factor
    vol_half_life_s: tuple[float, float] = (600.0, 21_600.0)
    # jumps: Catania & Sandholdt find jumps on over 80% of days; compound Poisson, Laplace
    # sizes (fat-tailed minute returns: the asymmetric Laplace fits BTC/USDT 1-minute returns
    # best, Mathematics 2025 13(16) 2691)
    jump_rate_per_day: float = 12.0
    jump_mean_abs: float = 0.0025  # mean |jump| (log return): 0.25%
    # the settlement oracle (Pyth; Hermes and /price, and resolution at endTime) publishes the
    # fast venues' price this much later: Pythnet slots are 400 ms and an aggregate needs its
    # publishers' updates (an assumption: about 1 s end to end)
    oracle_lag_s: float = 1.0
    # -- realistic: informed takers watch the fast price (they see the move oracle_lag_s
    #    before the oracle, and before a bot that polls) and estimate vol from the last 15
    #    minutes of returns; they trade a quote mispriced by informed_edge against that
    #    view, at informed_rate_per_min and at once after a move over 2.5 sd
    informed_react: bool = True
    # -- realistic: noise flow. Sizes Pareto with tail exponent 1.5 (trade sizes' power-law
    #    tail, exponent about 1.5: Gopikrishnan, Plerou, Gabaix & Stanley 2000, Phys. Rev. E
    #    62 R4493), from noise_min_size shares, capped; arrivals self-exciting (a Hawkes
    #    process: each arrival raises the rate, the boost halving every 30 s), branching
    #    ratio 0.6, i.e. 60% of the flow triggered by earlier trades (reflexivity estimates
    #    for futures markets run 0.6-0.9: Filimonov & Sornette 2012, Phys. Rev. E 85 056108)
    noise_tail: float = 1.5
    noise_min_size: float = 10.0
    noise_max_size: float = 1_000.0
    noise_branching: float = 0.6
    noise_excite_half_life_s: float = 30.0
    # -- realistic: competing makers, each (half-spread, shares a level, refresh s, the
    #    annualised vol it prices with): they read the oracle's price as a bot does, two
    #    levels a side (half-spread and twice it)
    makers: tuple[tuple[float, float, float, float], ...] = (
        (0.03, 25.0, 4.0, 0.40),
        (0.06, 60.0, 10.0, 0.65),
    )
    # spec 1.4 maker rebates (quick markets): a virtual taker fee 0.25 (p(1-p))^2 of each
    # fill's notional, 20% of it paid to the maker (daily, pro rata; accrued per fill here,
    # reported in state()["rebates"]). Off: no rebate.
    maker_rebate: bool = False
    # On-chain settlement (spec 6.5): a match is a pending trade until its batch settles this
    # many sim seconds later (0: at once), or fails if the chain would refuse it then.
    settle_delay_s: float = 2.0
    require_ctf_approval: bool = True  # selling held shares needs the CTF operator approval
    # Pyth Hermes on the same port (/v2/updates/price/latest and /stream) from the model's
    # price path. A key: every Hermes request must carry `Authorization: Bearer <key>`, as
    # Hermes requires since Pyth's 2026 Core upgrade; None: open, like a self-hosted Hermes.
    hermes_api_key: str | None = None
    # -- deep: a market as deep as Polymarket's BTC 15-minute up/down markets, the venue whose
    #    design Turbine's quick markets copy (CLOB, binary, the same maker-rebate formula; spec
    #    1.4). The price model is the realistic one (oracle lag, clustering, jumps, informed
    #    flow on the fast price) at deep_vol; the participants are many makers at and near the
    #    touch, heavy retail flow and fast-price arbitrageurs. Targets, read from recorded books
    #    of 102 such markets (one-second polls of the top five levels, Dec 2025 - Jan 2026:
    #    Borisz42/PolymarketAnalyst data/market_data_*.csv) and a summary of 8,633 of them
    #    (Jan-Mar 2026: 21tstrow/polymarket-btc-manipulation-research, 02_exports/
    #    btc15m_updown_jan1_mar31/btc15m_collection_summary.csv); figures only, neither has a
    #    licence: quoted spread 0.01 in 76% of seconds (median 0.01, p90 0.02), mean 0.023 in
    #    the last 60 s (p90 0.05); top five levels a side ~2,600 shares (p10 915, p90 6,420),
    #    ~1,200-1,400 in the last 60 s; ~3,350 trades a market (over 220 a minute), volume
    #    median ~$168k; the top of book changing >= 32 times a minute; the mid moving 0.0078 a
    #    second (mean absolute) in the first 5 minutes, 0.0174 in the last 60 s; both sides
    #    quoted 99.95% of seconds before T-600, 98.6% T-600..300, 77.6% T-300..60, 33%
    #    T-60..10, 17% in the last 10 s. test_sim_deep.py samples the preset against them;
    #    `turbine_sim.py facts` prints them for every preset.
    #    BTC's one-second log-return sd was 0.35-0.66 bp in mid-2026 (20-37% annualised): 0.30.
    deep_vol: float = 0.30
    # makers: (half-spread, shares a level, levels a side one tick apart, refresh s (jittered
    # +-30%), the annualised vol of its view, leaves at T-minus s, reads the fast venues' price
    # (1) or the oracle's (0)). Three at the touch (one watching the fast venues, as the real
    # venue's fastest makers watch the exchanges), three a tick or two behind, two deep; they
    # keep an order whose price still stands (its queue place), post only, and widen into
    # expiry by deep_risk_k x the binary's likely move over their refresh (the gamma a maker
    # carries near the strike).
    deep_makers: tuple[tuple[float, float, int, float, float, float, int], ...] = (
        (0.005, 100.0, 5, 1.0, 0.30, 2.0, 1),
        (0.005, 130.0, 5, 1.0, 0.30, 5.0, 0),
        (0.005, 80.0, 4, 1.5, 0.30, 10.0, 0),
        (0.010, 130.0, 4, 2.0, 0.30, 10.0, 0),
        (0.012, 100.0, 4, 2.5, 0.38, 15.0, 0),
        (0.015, 170.0, 3, 3.0, 0.32, 20.0, 0),
        (0.030, 450.0, 3, 5.0, 0.35, 30.0, 0),
        (0.045, 600.0, 2, 8.0, 0.40, 45.0, 0),
    )
    deep_risk_k: float = 0.15
    # the book thins into expiry: sizes x (deep_end_size + (1 - it) x min(1, T / 300 s))
    deep_end_size: float = 0.5
    # retail flow: Hawkes arrivals as the realistic preset's at this base rate, Pareto sizes
    # (median ~23 shares; one active wallet's median was 12.7, p90 28, p99 168), marketable
    # limits up to deep_noise_max_ticks past the touch
    deep_noise_rate_per_min: float = 35.0
    deep_noise_min_size: float = 20.0
    deep_noise_tail: float = 1.3
    deep_noise_max_size: float = 2_000.0
    deep_noise_max_ticks: int = 3
    # fast-price arbitrageurs: every step (and at once after a jump) take any quote mispriced
    # by more than deep_arb_edge against the fast price's probability, up to this many shares
    deep_arb_edge: float = 0.006
    deep_arb_max_size: float = 150.0
    # -- contested (issue 27): the deep preset as a deep Turbine book would be contested. Its
    #    makers, retail flow and fast-price arbitrageurs stay; added: makers that step ahead of
    #    the touch by less than a cent (Turbine has no tick, spec 1.3), makers running the
    #    official SDK's market maker (its model and ladder, turbine-api.md 8.1: most bots on
    #    the venue are generated from examples/market_maker.py), and every maker cancelling on
    #    an oracle move after its own latency. The arbitrageurs' edge over the oracle is
    #    oracle_lag_s (1 s: they watch the exchanges Pyth aggregates, which lead its price by
    #    about that). A second spike_bot is the bench's to run (bench_quality, `--rival`), not
    #    the simulator's.
    #    BTC's one-second log-return sd was 0.35-0.66 bp in mid-2026 (20-37% annualised; the
    #    deep preset's 0.30 samples at ~1.2 bp with its clustering and jumps): 0.16 and jumps of
    #    0.12% on average sample at ~0.6 bp (bench/bench_presets.py).
    contested_vol: float = 0.22
    contested_jump_mean_abs: float = 0.0012
    # the deep makers' sizes x this (the deep preset's books sample at ~2,700 shares before
    # the contested makers split the touch into sub-cent levels) and their widening into
    # expiry (deep_risk_k), so that the spread is one cent or less ~76% of seconds
    contested_size_mult: float = 2.2
    contested_risk_k: float = 0.12
    # the book thins less into expiry than the deep preset's (its makers pull on moves,
    # which thins it already): sizes x (contested_end_size + (1 - it) x min(1, T / 300 s))
    contested_end_size: float = 1.0
    # steppers: (least distance of a quote from its view, shares, how far inside the others'
    # best it steps, refresh s (jittered), annualised vol of its view, latency s, reads the
    # fast venues' price (1) or the oracle's (0)). One on the fast price at the SDK helper's
    # 0.0001 tick; two on the oracle, a second or two late, stepping 0.0005 and 0.001.
    contested_steppers: tuple[tuple[float, float, float, float, float, float, int], ...] = (
        (0.003, 120.0, 0.0001, 1.0, 0.20, 0.0, 1),
        (0.004, 90.0, 0.0005, 2.0, 0.20, 1.0, 0),
        (0.005, 150.0, 0.001, 3.0, 0.25, 2.0, 0),
    )
    # official-program makers (examples/market_maker.py, HEAD 782c939, YES book only): (base
    # spread, base daily vol, allocation USDC, latency s); its 2 s loop, six levels, momentum,
    # inventory skew, the [0.20, 0.80] clamp, one-sided below 0.35, the 0.02 rebalance
    # threshold, the circuit breaker (3+ fills in 30 s, over 80% one side: dark 10 s) and the
    # T-30 s pull, with the settings its users vary (spread, vol, allocation)
    contested_sdk_makers: tuple[tuple[float, float, float, float], ...] = (
        (0.012, 0.03, 60.0, 1.0),
        (0.020, 0.05, 150.0, 2.0),
        (0.008, 0.03, 300.0, 1.0),
        (0.015, 0.04, 100.0, 3.0),
    )
    # the deep makers' latencies to an oracle move (s), one per deep_makers row: the maker on
    # the fast venues reacts within the grid step, the rest 1-5 s later
    contested_latency_s: tuple[float, ...] = (0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 5.0)
    # a move of a maker's view by this much (probability) since its last quote re-quotes it
    # at once (after its latency), whatever its timer says
    contested_move: float = 0.01


PRESETS = ("classic", "realistic", "deep", "contested")
DEEP_PRESETS = ("deep", "contested")  # the deep participants (contested adds to them)


# ---------------------------------------------------------------------------------------------
# Clock
# ---------------------------------------------------------------------------------------------
class Clock:
    """Simulated unix time. Real mode: start + (real() - real0) x speed. Manual: moved by set().

    `real` is the real-time source (time.monotonic; time.time when the simulator runs at 1x on
    the wall clock; a fake in tests, so the ticker can be driven without sleeping).
    Thread-safe for readers: the bot reads it (in --sim mode and tests) from its own threads.
    """

    def __init__(
        self,
        start: float,
        speed: float = 1.0,
        manual: bool = False,
        real: Callable[[], float] = time.monotonic,
    ) -> None:
        self.manual = manual
        self.speed = speed
        self.real = real
        self._start = start
        self._real0 = real()
        self._t = start
        self._lock = threading.Lock()

    def now(self) -> float:
        if self.manual:
            return self._t
        return self._start + (self.real() - self._real0) * self.speed

    def set(self, t: float) -> None:
        with self._lock:
            self._t = max(self._t, t)

    def wait(self, event: threading.Event | None, seconds: float) -> bool:
        """Sleep `seconds` of simulated time, or until `event` is set. Returns event state."""
        if not self.manual:
            real = max(0.0, seconds / self.speed)
            if event is None:
                time.sleep(real)
                return False
            return event.wait(real)
        deadline = self.now() + seconds
        while self.now() < deadline:
            if event is not None and event.wait(0.003):
                return True
            if event is None:
                time.sleep(0.003)
        return bool(event and event.is_set())


def wall_clock() -> Clock:
    """1x on the wall clock: simulated time is time.time(), as a live bot's clock is."""
    c = Clock(time.time(), 1.0, False, real=time.time)
    c._real0 = c._start  # exactly time.time(), not a few microseconds behind
    return c


def default_clock(cfg: SimConfig) -> Clock:
    """The clock a SimConfig asks for.

    At 1x with no start time the simulator runs on the wall clock, like the real exchange: the
    market in progress at start is a partial one, and a live-mode client's expirations and
    T-minus windows agree with it. Compressed or manual time cannot be the wall clock; it starts
    at the last interval boundary (+1 s) so that the first market is a whole one."""
    if cfg.start_time is None and not cfg.manual_clock and cfg.speed == 1.0:
        return wall_clock()
    start = cfg.start_time
    if start is None:
        iv = min(cfg.intervals) * 60
        start = time.time() // iv * iv + 1.0
    return Clock(start, cfg.speed, cfg.manual_clock)


# ---------------------------------------------------------------------------------------------
# Crypto: EIP-712 hashing and recovery, bearer tokens
# ---------------------------------------------------------------------------------------------
def _u256(v: int) -> bytes:
    return int(v).to_bytes(32, "big")


def _addr32(a: str) -> bytes:
    return bytes.fromhex(a[2:].rjust(64, "0"))


def _b32(h: str) -> bytes:
    h = h[2:] if h.startswith("0x") else h
    if len(h) > 64:
        raise ValueError("bytes32 too long")
    return bytes.fromhex(h.rjust(64, "0"))


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


def domain_separator(name: str, version: str, chain_id: int, contract: str) -> bytes:
    return keccak(
        _DOMAIN_TYPEHASH
        + keccak(name.encode())
        + keccak(version.encode())
        + _u256(chain_id)
        + _addr32(contract)
    )


def order_struct_hash(o: dict[str, Any]) -> bytes:
    return keccak(
        ORDER_TYPEHASH
        + _b32(o["marketId"])
        + _addr32(o["trader"])
        + _u256(o["side"])
        + _u256(o["outcome"])
        + _u256(o["price"])
        + _u256(o["size"])
        + _u256(o["nonce"])
        + _u256(o["expiration"])
        + _addr32(o["makerFeeRecipient"])
    )


def eip712_digest(dsep: bytes, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + dsep + struct_hash)


def recover(digest: bytes, sig: bytes) -> str:
    """Address that signed `digest` (65-byte r||s||v, v in {27,28} or {0,1})."""
    if len(sig) != 65:
        raise ValueError("signature must be 65 bytes")
    v = sig[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        raise ValueError("bad recovery id")
    pub = PublicKey.from_signature_and_message(sig[:64] + bytes([v]), digest, hasher=None)
    return "0x" + keccak(pub.format(compressed=False)[1:])[-20:].hex()


def require_signer(dsep: bytes, struct: bytes, sig: bytes, who: str, error: str) -> None:
    """400 `error` unless `sig` over the EIP-712 digest recovers to `who`."""
    try:
        signer = recover(eip712_digest(dsep, struct), sig)
    except Exception:  # noqa: BLE001 -- untrusted input: any failure is a refusal
        raise ApiError(400, error) from None
    if not same_addr(signer, who):
        raise ApiError(400, error)


def sig_from_vrs(v: int, r: str, s: str) -> bytes:
    return _b32(r) + _b32(s) + bytes([int(v)])


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def same_addr(a: str, b: str) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


# ---------------------------------------------------------------------------------------------
# Model records
# ---------------------------------------------------------------------------------------------
class ApiError(Exception):
    """Maps to an HTTP error with the API's `{"error": ...}` body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class SimOrder:
    order_hash: str
    market_id: str
    trader: str  # lower-case address
    side: int
    outcome: int
    price: int
    size: int
    nonce: int
    expiration: int
    created_at: int
    seq: int
    permit_budget: int = 0  # USDC allowance carried by this order's own permit
    filled: int = 0
    status: str = "open"
    internal: bool = False  # participant order (no signature, never rests when ioc)
    maker_fee_recipient: str = ZERO_ADDRESS

    @property
    def remaining(self) -> int:
        return self.size - self.filled

    def to_json(self) -> dict[str, Any]:
        return {
            "orderHash": self.order_hash,
            "marketId": self.market_id,
            "trader": self.trader,
            "side": self.side,
            "outcome": self.outcome,
            "price": self.price,
            "size": self.size,
            "filledSize": self.filled,
            "remainingSize": self.remaining if self.status == "open" else 0,
            "nonce": self.nonce,
            "expiration": self.expiration,
            "status": self.status,
            "createdAt": self.created_at,
        }


@dataclass
class Market:
    market_id: str
    asset: str
    interval: int
    start: int
    end: int
    strike: float  # USD
    contract: str
    condition_id: str
    final_price: float | None = None
    closed: bool = False  # trading over (endTime passed)
    resolved: bool = False
    outcome: int | None = None
    created_at: int = 0
    volume: int = 0
    last_price: int = 0
    seq_id: int = 0  # the quick market's integer `id` (spec 3.3: HEAD parses int(id))
    updated_at: int = 0

    def to_quick(self) -> dict[str, Any]:
        return {
            "id": self.seq_id,
            "marketId": self.market_id,
            "asset": self.asset,
            "intervalMinutes": self.interval,
            "startPrice": round(self.strike * 1e6),
            "endPrice": None if self.final_price is None else round(self.final_price * 1e6),
            "startTime": self.start,
            "endTime": self.end,
            "resolved": self.resolved,
            "outcome": self.outcome,
            "winningOutcome": self.outcome,
            "priceSource": "pyth",  # what the real API says; the path is the simulator's
            "createdAt": self.created_at,
            "contractAddress": self.contract,
        }


@dataclass
class Position:
    id: int = 0  # integer row id (spec 3.3: HEAD parses int(id))
    yes: int = 0
    no: int = 0
    yes_cost: int = 0
    no_cost: int = 0
    yes_revenue: int = 0
    no_revenue: int = 0
    invested: int = 0
    last_price: int = 0
    updated: int = 0


@dataclass
class PendingTrade:
    """A matched fill on its way on-chain: pending, then settled or failed (spec 6.5)."""

    trade: dict[str, Any]  # the public Trade row (id, txHash, buyer, seller, price, size, ...)
    buyer: SimOrder
    seller: SimOrder
    taker: SimOrder
    cost: int  # USDC the buyer pays (u6), fees apart
    fee_b: int
    fee_s: int
    short: int  # shares the seller did not hold at match time: split from USDC
    permit_b: int  # reserved from the buyer order's own permit (the rest: standing allowance)
    permit_s: int
    due: float  # sim time the batch carrying it settles
    status: str = "pending"  # pending | settled | failed
    reason: str = ""
    settled_at: float = 0.0
    batch_index: int = 0

    def to_json(self) -> dict[str, Any]:
        """PendingTrade / FailedTrade / SettlementStatus fields (spec 3.3)."""
        t = self.trade
        return {
            "marketId": t["marketId"],
            "txHash": t["txHash"],
            "buyerAddress": t["buyer"],
            "sellerAddress": t["seller"],
            "fillSize": t["size"],
            "fillPrice": t["price"],
            "timestamp": str(int(self.settled_at or t["timestamp"])),  # a string (spec 3.3)
            "isBatch": True,
            "batchIndex": self.batch_index,
        }


class Book:
    """One (market, outcome) side pair with price-time priority. Keys keep lists sorted."""

    def __init__(self) -> None:
        self.bids: list[SimOrder] = []  # best (highest price, earliest) first
        self.asks: list[SimOrder] = []  # best (lowest price, earliest) first

    @staticmethod
    def _key(o: SimOrder) -> tuple[int, int]:
        return (-o.price if o.side == BUY else o.price, o.seq)

    def add(self, o: SimOrder) -> None:
        lst = self.bids if o.side == BUY else self.asks
        bisect.insort(lst, o, key=self._key)

    def remove(self, o: SimOrder) -> None:
        lst = self.bids if o.side == BUY else self.asks
        try:
            lst.remove(o)
        except ValueError:
            pass

    def levels(self, depth: int = 50) -> tuple[list[dict[str, int]], list[dict[str, int]]]:
        def agg(lst: list[SimOrder]) -> list[dict[str, int]]:
            out: list[dict[str, int]] = []
            for o in lst:
                if out and out[-1]["price"] == o.price:
                    out[-1]["size"] += o.remaining
                elif len(out) < depth:
                    out.append({"price": o.price, "size": o.remaining})
                else:
                    break
            return out

        return agg(self.bids), agg(self.asks)


# ---------------------------------------------------------------------------------------------
# Ledger: USDC, allowances, nonces, shares
# ---------------------------------------------------------------------------------------------
class Ledger:
    def __init__(self, initial_usdc: int) -> None:
        self.initial = initial_usdc
        self.balance: dict[str, int] = {}
        self.allowance: dict[str, int] = {}  # standing allowance for the settlement
        self.permit_nonce: dict[str, int] = collections.defaultdict(int)
        self.ctf_nonce: dict[str, int] = collections.defaultdict(int)
        self.positions: dict[tuple[str, str], Position] = {}  # (addr, market) -> Position
        self.collateral: dict[str, int] = collections.defaultdict(int)  # per market
        self.minted = 0
        self.fees = 0
        self.paid_out = 0

    def ensure(self, addr: str, amount: int | None = None) -> None:
        if addr not in self.balance:
            amt = self.initial if amount is None else amount
            self.balance[addr] = amt
            self.allowance[addr] = 0
            self.minted += amt

    def mint(self, addr: str, amount: int) -> None:
        self.ensure(addr, 0)
        self.balance[addr] += amount
        self.minted += amount

    def pos(self, addr: str, market: str) -> Position:
        p = self.positions.get((addr, market))
        if p is None:
            p = self.positions[(addr, market)] = Position(id=len(self.positions) + 1)
        return p

    def spend_allowance(self, addr: str, order: SimOrder | None, amount: int) -> None:
        """Consume allowance: the order's own permit first, then the standing allowance."""
        if order is not None and order.permit_budget:
            use = min(order.permit_budget, amount)
            order.permit_budget -= use
            amount -= use
        if amount and self.allowance.get(addr, 0) != MAX_UINT:
            self.allowance[addr] = self.allowance.get(addr, 0) - amount

    def available_allowance(self, addr: str, order: SimOrder | None) -> int:
        a = self.allowance.get(addr, 0)
        if a == MAX_UINT:
            return MAX_UINT
        return a + (order.permit_budget if order is not None else 0)

    def invariants(self, markets: dict[str, Market]) -> tuple[bool, list[str]]:
        bad: list[str] = []
        total = sum(self.balance.values()) + sum(self.collateral.values()) + self.fees
        if total != self.minted:
            bad.append(f"usdc not conserved: {total} != minted {self.minted}")
        if any(v < 0 for v in self.balance.values()):
            bad.append("negative usdc balance")
        for m in markets.values():
            yes = sum(p.yes for (_, mk), p in self.positions.items() if mk == m.market_id)
            no = sum(p.no for (_, mk), p in self.positions.items() if mk == m.market_id)
            c = self.collateral.get(m.market_id, 0)
            if not m.resolved and not (yes == no == c):
                bad.append(f"{m.market_id[:10]} supply yes={yes} no={no} collateral={c}")
            if m.resolved and c != (yes if m.outcome == YES else no):
                bad.append(f"{m.market_id[:10]} collateral {c} != winning supply")
        if any(p.yes < 0 or p.no < 0 for p in self.positions.values()):
            bad.append("negative share balance")
        return (not bad, bad)


def binary_probability(price: float, strike: float, tau: float, sigma_s: float) -> float:
    """P(price at the end > strike) for a driftless lognormal price: N(ln(S/K) / (s sqrt(tau)))."""
    if tau <= 0 or sigma_s <= 0:
        return 1.0 if price > strike else 0.0
    d = math.log(price / strike) / (sigma_s * math.sqrt(tau))
    return 0.5 * (1.0 + math.erf(d / math.sqrt(2.0)))


def binary_step(p: float, tau: float, h: float) -> float:
    """The binary's likely move (one sd) over the next h seconds, near p with tau left:
    phi(d) x sqrt(h / tau), whatever the vol (d is where p sits on the normal)."""
    if tau <= 0 or not 0.0 < p < 1.0:
        return 0.0
    d = statistics.NormalDist().inv_cdf(min(max(p, 1e-9), 1 - 1e-9))
    return math.exp(-0.5 * d * d) / math.sqrt(2 * math.pi) * math.sqrt(min(1.0, h / tau))


class RealisticModel:
    """The realistic preset's price (SimConfig's realistic settings say what each part is
    calibrated to): per asset a fast price whose 1 s log returns are
    vol(t) x N(0, 1) + a compound-Poisson Laplace jump, with vol(t) = base x intraday season x
    exp(two OU log-vol factors, normalised to mean 1); the published (oracle) price is the
    fast price oracle_lag_s ago. Its own random stream: the classic path is untouched."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed * 104_729 + 17)
        vol = {"deep": cfg.deep_vol, "contested": cfg.contested_vol}.get(cfg.preset, cfg.real_vol)
        self.jump_mean_abs = (
            cfg.contested_jump_mean_abs if cfg.preset == "contested" else cfg.jump_mean_abs
        )
        self.base = vol / math.sqrt(SECONDS_PER_YEAR)
        self.kappa = [math.log(2) / hl for hl in cfg.vol_half_life_s]
        self.h: dict[str, list[float]] = {}
        self.fast: dict[str, float] = {}
        self.lagged: dict[str, collections.deque[float]] = {}
        self.rets: dict[str, collections.deque[float]] = {}  # the last 15 min of 1 s returns
        self.last_ret: dict[str, float] = {}

    def start(self, asset: str, price: float, t: float) -> None:
        # log-vol factors start at a draw from their stationary law: every seed's day differs
        self.h[asset] = [self.rng.gauss(0.0, sd) for sd in self.cfg.vol_of_vol]
        self.fast[asset] = price
        n = max(1, round(self.cfg.oracle_lag_s / self.cfg.step_s)) + 1
        self.lagged[asset] = collections.deque([price] * n, maxlen=n)
        self.rets[asset] = collections.deque(maxlen=900)
        self.last_ret[asset] = 0.0

    def season(self, t: float) -> float:
        hour = (t % 86_400) / 3600
        phase = 2 * math.pi * (hour - self.cfg.vol_season_peak_utc) / 24
        return 1 + self.cfg.vol_season_amp * math.cos(phase)

    def sigma(self, asset: str, t: float) -> float:
        """Instantaneous vol per sqrt(s): the log-vol factors normalised so E[vol] = base."""
        h = sum(self.h[asset]) - 0.5 * sum(sd * sd for sd in self.cfg.vol_of_vol)
        return self.base * self.season(t) * math.exp(h)

    def step(self, asset: str, t: float, dt: float) -> tuple[float, float]:
        cfg, rng = self.cfg, self.rng
        hs = self.h[asset]
        for i, (k, sd) in enumerate(zip(self.kappa, cfg.vol_of_vol, strict=True)):
            a = math.exp(-k * dt)  # exact OU step: stationary sd stays `sd`
            hs[i] = hs[i] * a + sd * math.sqrt(1 - a * a) * rng.gauss(0.0, 1.0)
        sig = self.sigma(asset, t)
        r = sig * math.sqrt(dt) * rng.gauss(0.0, 1.0) - 0.5 * sig * sig * dt
        if rng.random() < cfg.jump_rate_per_day * dt / 86_400:
            r += rng.expovariate(1.0 / self.jump_mean_abs) * (1 if rng.random() < 0.5 else -1)
        self.fast[asset] *= math.exp(r)
        self.lagged[asset].append(self.fast[asset])
        self.rets[asset].append(r)
        self.last_ret[asset] = r / (sig * math.sqrt(dt))  # in sd units: a jump is large
        return self.fast[asset], sig

    def published(self, asset: str) -> float:
        return self.lagged[asset][0]

    def estimated_sigma(self, asset: str) -> float:
        """What a trader watching the fast price estimates: the rms 1 s return of the last
        15 minutes (no less than a fifth of the base)."""
        r = self.rets[asset]
        if len(r) < 60:
            return self.base
        return max(self.base / 5, math.sqrt(sum(x * x for x in r) / len(r)))


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------
FAULT_NAMES = (
    "ws_drop",
    "ws_freeze",
    "http_429",
    "http_500",
    "latency",
    "cancel_404",
    "malformed_ws",
    "resolve_now",
    "permit_reject",
    "clock_skew",
    "settle_fail",
    "ctf_reject",
    "hermes_freeze",
    "hermes_drop",
    "corrupt",
    "cancel_ignore",
    "ws_crossed",
    "redirect",
    "ws_stuck",
    "resolve_fail",
    "http_404",
)
# the resolver's order of assets within a cycle (spec 6.3: BTC, then ETH, then SOL)
RESOLVE_ORDER = ("BTC", "ETH", "SOL", "XRP")
# Pyth price feed ids (Hermes, /v2/updates/price/*), transcribed from Pyth's public feed list
# independently of spike_bot; the settlement oracle of quick markets is Pyth (spec 6.3).
PYTH_FEEDS: dict[str, str] = {
    "BTC": "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43",
    "ETH": "ff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace",
    "SOL": "ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d",
    "XRP": "ec5d399846a9209f3fe5881d70aae9268c94339ff9817e8d18ff19fa05eea1c8",
}
PYTH_EXPO = -8


def _crossed(msg: str) -> str:
    """The `ws_crossed` fault: an orderbook message whose bid is 0.99 and ask 0.01."""
    try:
        m = json.loads(msg)
    except ValueError:
        return msg
    if not isinstance(m, dict) or m.get("type") != "orderbook":
        return msg
    if not isinstance(m.get("data"), dict):
        return msg
    m["data"]["bids"] = [{"price": 990_000, "size": 5_000_000}]
    m["data"]["asks"] = [{"price": 10_000, "size": 5_000_000}]
    return json.dumps(m)


def corrupt_reply(resp: web.Response, rule: dict[str, Any]) -> web.Response:
    """The `corrupt` fault: a 200 reply rewritten as a broken or lying API would send it.

    rule: `path` (prefix) and `method` choose the replies; `count` / `fraction` as any fault.
    `truncate`: cut the body in half (unreadable JSON). Otherwise the JSON is edited at `at`
    (a key holding the rows or object, e.g. "orders", "quickMarket", "markets", "positions";
    "" for the body itself): `set` overwrites fields of every row (or of the object), `add`
    appends a copy of the first row with those fields changed (a row that is not ours)."""
    text = resp.text or ""
    if rule.get("truncate"):
        half = text[: len(text) // 2]
        return web.Response(status=200, text=half, content_type="application/json")
    body = json.loads(text)
    at = str(rule.get("at", ""))
    target = body.get(at) if at and isinstance(body, dict) else body
    rows = target if isinstance(target, list) else [target]
    for r in rows:
        if isinstance(r, dict):
            r.update(rule.get("set") or {})
    if rule.get("add") and isinstance(target, list):
        first = dict(target[0]) if target and isinstance(target[0], dict) else {}
        target.append({**first, **rule["add"]})
    return web.json_response(body)


class Faults:
    """Active faults and their parameters. Count-limited faults switch themselves off."""

    def __init__(self, rng: random.Random) -> None:
        self.active: dict[str, dict[str, Any]] = {}
        self.rng = rng
        self.log: list[dict[str, Any]] = []

    def on(self, name: str, params: dict[str, Any], now: float) -> None:
        self.active[name] = dict(params)
        self.log.append({"t": now, "fault": name, "on": True, "params": params})
        log.warning("fault on: %s %s", name, params)

    def off(self, name: str, now: float) -> None:
        if self.active.pop(name, None) is not None:
            self.log.append({"t": now, "fault": name, "on": False})
            log.warning("fault off: %s", name)

    def trip(self, name: str, now: float) -> bool:
        """Whether fault `name` applies to this event (count or fraction), consuming a count."""
        p = self.active.get(name)
        if p is None:
            return False
        if "fraction" in p:
            return self.rng.random() < float(p["fraction"])
        if "count" in p:
            n = int(p["count"])
            if n <= 0:
                self.off(name, now)
                return False
            p["count"] = n - 1
            if n - 1 <= 0:
                self.off(name, now)
            return True
        return True


# ---------------------------------------------------------------------------------------------
# Exchange: markets, matching, settlement, resolution, claims
# ---------------------------------------------------------------------------------------------
# The exchange's rules, in four parts (each a mixin of Exchange: one object, one event loop
# thread, each part writing only the state its header names); Exchange holds the state and
# its construction.
class ExchangeMarkets:
    """The markets (part of Exchange): quick markets opened on their interval, closed, rolled over
    and resolved on the oracle's schedule; the model's clock (step_to: price path, participants,
    due settlements and resolutions, expiries). Owns markets, current, history, pending_resolve."""

    # -- markets ------------------------------------------------------------------------------
    def _open_market(self, asset: str, interval: int, start: int) -> Market:
        tag = f"{asset}:{interval}:{start}:{self.cfg.seed}".encode()
        mid = "0x" + keccak(b"market:" + tag).hex()
        contract = "0x" + keccak(b"contract:" + tag)[-20:].hex()
        m = Market(
            market_id=mid,
            asset=asset,
            interval=interval,
            start=start,
            end=start + interval * 60,
            strike=self.prices[asset],
            contract=contract,
            condition_id="0x" + keccak(b"condition:" + tag).hex(),
            created_at=int(self.t),
            seq_id=len(self.markets) + 1,
            updated_at=int(self.t),
        )
        self.markets[mid] = m
        self.by_contract[contract.lower()] = mid
        self.current[(asset, interval)] = mid
        self.history[(asset, interval)].append(mid)
        self.books[(mid, YES)] = Book()
        self.books[(mid, NO)] = Book()
        return m

    def market(self, ref: str) -> Market:
        """A market by id or by contract address."""
        ref_l = ref.lower()
        mid = self.by_contract.get(ref_l)
        if mid is None:
            padded = "0x" + ref_l.removeprefix("0x").rjust(64, "0")
            mid = next((k for k in self.markets if k.lower() in (ref_l, padded)), None)
        if mid is None:
            raise ApiError(404, "market not found")
        return self.markets[mid]

    def close_market(self, m: Market) -> None:
        """End of trading: pull every order, fix the final price, schedule resolution."""
        m.closed = True
        m.final_price = self.prices[m.asset]
        for o in list(self.open.values()):
            if o.market_id == m.market_id:
                self._cancel(o, "expired")
        turn = RESOLVE_ORDER.index(m.asset) if m.asset in RESOLVE_ORDER else len(RESOLVE_ORDER)
        due = m.end + self.cfg.resolve_delay_s + turn * self.cfg.resolve_stagger_s
        self.pending_resolve.append((due, m.market_id))

    def resolve(self, m: Market) -> None:
        if m.resolved:
            return
        if not m.closed:
            self.close_market(m)
        self.settle_due(self.t, m.market_id)  # the oracle waits for the last batch
        m.resolved = True
        m.outcome = YES if (m.final_price or 0) > m.strike else NO
        m.updated_at = int(self.t)
        self.counters["resolved"] += 1

    def rollover(self, asset: str, interval: int, at: int) -> None:
        old = self.markets[self.current[(asset, interval)]]
        old.end = min(old.end, at)
        self.close_market(old)
        new = self._open_market(asset, interval, at)
        self.events.append(
            {
                "type": "quick_market",
                "marketId": new.market_id,
                "data": new.to_quick(),
                "_all": True,
            }
        )
        self.counters["rollovers"] += 1

    def true_probability(self, m: Market) -> float:
        """P(final > strike): normal CDF of log(S/K) over sigma * sqrt(time left). Realistic:
        from the fast price and the model's current vol, over the time until the oracle
        prints the final price (as well as the simulator itself can know it)."""
        if self.model is None:
            return binary_probability(self.prices[m.asset], m.strike, m.end - self.t, self.sigma_s)
        fast = self.fast[m.asset]
        sig = self.fast_hist[m.asset][-1][2]
        return binary_probability(fast, m.strike, m.end - self.cfg.oracle_lag_s - self.t, sig)

    # -- time ---------------------------------------------------------------------------------
    def step_to(self, t: float, participants: Participants | None) -> None:
        """Advance the model to sim time t.

        The model moves on a fixed grid (anchor + k x step_s, anchored at the whole second
        before the start): everything random happens at grid points, in grid order, so the
        same seed gives the same price path, markets and participant trades however time is
        reached (one advance, many 20 ms ticks, any speed). Between grid points only the
        readers' time `self.t` moves; the remainder is kept for the next call, never dropped.
        """
        dt = self.cfg.step_s
        while self.grid0 + (self.k + 1) * dt <= t + 1e-9:
            self.k += 1
            self.t = max(self.t, self.grid0 + self.k * dt)
            self._step(self.grid0 + self.k * dt, dt, participants)
        self.t = max(self.t, t)

    def _step(self, gt: float, dt: float, participants: Participants | None) -> None:
        """One grid step at grid time gt."""
        if self.pending:
            self.settle_due(gt)
        for a in self.prices:
            if self.model is None:
                z = self.rng.gauss(0.0, 1.0)
                sd = self.sigma_s * math.sqrt(dt)
                self.prices[a] *= math.exp(sd * z - 0.5 * sd * sd)
                self.fast[a], sig = self.prices[a], self.sigma_s
            else:
                self.fast[a], sig = self.model.step(a, gt, dt)
                self.prices[a] = self.model.published(a)
            self.price_hist[a].append((gt, self.prices[a]))
            self.fast_hist[a].append((gt, self.fast[a], sig))
        for (asset, iv), mid in list(self.current.items()):
            m = self.markets[mid]
            if gt >= m.end:
                self.rollover(asset, iv, m.end)
        if self.pending_resolve:
            due = [x for x in self.pending_resolve if x[0] <= gt]
            if due:
                self.pending_resolve = [x for x in self.pending_resolve if x[0] > gt]
                for at, mid in due:
                    m = self.markets[mid]
                    only = str(self.faults.active.get("resolve_fail", {}).get("asset", ""))
                    if (not only or only.upper() == m.asset) and self.faults.trip(
                        "resolve_fail", gt
                    ):
                        # the oracle's proposal failed: the next cycle tries again
                        self.pending_resolve.append((at + self.cfg.resolve_retry_s, mid))
                        self.counters["resolutions_failed"] += 1
                        continue
                    self.resolve(m)
        self.expire_orders()
        if participants is not None:
            participants.step(gt, dt)

    def expire_orders(self) -> None:
        for o in list(self.open.values()):
            if o.expiration <= self.t:
                self._cancel(o, "expired")


class ExchangeOrders:
    """Orders and matching (part of Exchange): order validation (signature, bounds, expiry, nonce,
    permits, funds), the per-outcome books, price-time matching, cancels. Owns orders, open,
    books, used_nonces."""

    # -- orders -------------------------------------------------------------------------------
    def _cancel(self, o: SimOrder, status: str = "cancelled") -> None:
        o.status = status
        self.open.pop(o.order_hash, None)
        self.books[(o.market_id, o.outcome)].remove(o)
        self.dirty.add(o.market_id)
        if not o.internal:
            self.events.append(
                {
                    "type": "order_cancelled",
                    "marketId": o.market_id,
                    "data": {"orderHash": o.order_hash, "status": status},
                }
            )

    def verify_permit(self, owner: str, p: dict[str, Any], spender: str) -> int:
        """Check an EIP-2612 permit; returns its value. Consumes the nonce."""
        try:
            value = int(p["value"])
            deadline = int(p["deadline"])
            nonce = int(p["nonce"])
            sig = sig_from_vrs(int(p["v"]), p["r"], p["s"])
        except (KeyError, ValueError, TypeError) as e:
            raise ApiError(400, f"invalid permit: {e}") from None
        if not same_addr(spender, self.chain["settlement"]):
            raise ApiError(400, "invalid permit: spender is not the settlement contract")
        if deadline < self.t:
            raise ApiError(400, "permit expired")
        if nonce != self.ledger.permit_nonce[owner]:
            raise ApiError(400, f"invalid permit nonce: expected {self.ledger.permit_nonce[owner]}")
        struct = keccak(
            PERMIT_TYPEHASH
            + _addr32(owner)
            + _addr32(spender)
            + _u256(value)
            + _u256(nonce)
            + _u256(deadline)
        )
        require_signer(self.dsep_usdc, struct, sig, owner, "invalid permit signature")
        return value

    def required_usdc(self, side: int, price: int, size: int, held: int) -> int:
        if side == BUY:
            return price * size // PRICE_SCALE + size * self.cfg.taker_fee_bps // 10_000
        return max(0, size - held)

    def place(self, body: dict[str, Any], caller: str | None, permit_rejected: bool) -> SimOrder:
        """Validate, verify and match a signed order from the API."""
        try:
            o = body["order"]
            fields = dict(
                marketId=str(o["marketId"]),
                trader=str(o["trader"]),
                side=int(o["side"]),
                outcome=int(o["outcome"]),
                price=int(o["price"]),
                size=int(o["size"]),
                nonce=int(o["nonce"]),
                expiration=int(o["expiration"]),
                makerFeeRecipient=str(o.get("makerFeeRecipient") or ZERO_ADDRESS),
            )
            sig = bytes.fromhex(str(body["signature"]).removeprefix("0x"))
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise ApiError(400, f"invalid order: {e}") from None
        trader = fields["trader"].lower()
        if caller is not None and trader != caller:
            raise ApiError(403, "order trader does not match the API key")
        if fields["side"] not in (BUY, SELL) or fields["outcome"] not in (YES, NO):
            raise ApiError(400, "invalid side or outcome")
        if not MIN_PRICE <= fields["price"] <= MAX_PRICE:
            raise ApiError(400, "price must be between 1 and 999999")
        if fields["size"] <= 0:
            raise ApiError(400, "size must be positive")
        try:
            struct = order_struct_hash(fields)
        except ValueError:
            raise ApiError(400, "invalid order: bad field encoding") from None
        require_signer(self.dsep_order, struct, sig, trader, "invalid signature")
        m = self.market(fields["marketId"])
        if m.closed or self.t >= m.end:
            raise ApiError(400, "market is closed")
        if fields["expiration"] < self.t + MIN_EXPIRY_S:
            raise ApiError(400, "expiration must be at least 60 seconds in the future")
        if (trader, fields["nonce"]) in self.used_nonces:
            raise ApiError(400, "nonce already used")
        book = self.books[(m.market_id, fields["outcome"])]
        opp = book.asks if fields["side"] == BUY else book.bids
        crosses = bool(opp) and (
            opp[0].price <= fields["price"]
            if fields["side"] == BUY
            else opp[0].price >= fields["price"]
        )
        if crosses and fields["price"] * fields["size"] // PRICE_SCALE < MIN_TAKER_VALUE:
            raise ApiError(400, "order value below the $1 minimum for taker orders")
        usdc, standing, held = self.available(trader, m.market_id, fields["outcome"])
        need = self.required_usdc(fields["side"], fields["price"], fields["size"], max(0, held))
        permit_value = 0
        if body.get("permitSignature"):
            if permit_rejected:
                raise ApiError(400, "invalid permit signature")
            permit_value = self.verify_permit(
                trader, body["permitSignature"], self.chain["settlement"]
            )
        if need > 0 and standing != MAX_UINT and standing + permit_value < need:
            raise ApiError(400, "ERC20: transfer amount exceeds allowance")
        if need > usdc:
            raise ApiError(400, "ERC20: transfer amount exceeds balance")
        if body.get("permitSignature"):
            self.ledger.permit_nonce[trader] += 1
        self.used_nonces.add((trader, fields["nonce"]))
        self.seq += 1
        order = SimOrder(
            order_hash="0x" + keccak(struct).hex(),
            market_id=m.market_id,
            trader=trader,
            side=fields["side"],
            outcome=fields["outcome"],
            price=fields["price"],
            size=fields["size"],
            nonce=fields["nonce"],
            expiration=fields["expiration"],
            created_at=int(self.t),
            seq=self.seq,
            permit_budget=permit_value,
            maker_fee_recipient=fields["makerFeeRecipient"],
        )
        self.orders[order.order_hash] = order
        self.counters["orders_placed"] += 1
        self.match(order)
        return order

    def place_internal(
        self, trader: str, market_id: str, side: int, outcome: int, price: int, size: int, ioc: bool
    ) -> SimOrder:
        self.seq += 1
        o = SimOrder(
            order_hash=f"internal:{self.seq}",
            market_id=market_id,
            trader=trader,
            side=side,
            outcome=outcome,
            price=max(MIN_PRICE, min(MAX_PRICE, price)),
            size=size,
            nonce=self.seq,
            expiration=2**40,
            created_at=int(self.t),
            seq=self.seq,
            internal=True,
        )
        self.match(o, rest=not ioc)
        return o

    def match(self, taker: SimOrder, rest: bool = True) -> None:
        book = self.books[(taker.market_id, taker.outcome)]
        opp = book.asks if taker.side == BUY else book.bids
        while taker.remaining > 0 and opp:
            maker = opp[0]
            if (taker.side == BUY and maker.price > taker.price) or (
                taker.side == SELL and maker.price < taker.price
            ):
                break
            if maker.expiration <= self.t:
                self._cancel(maker, "expired")
                continue
            qty = min(taker.remaining, maker.remaining)
            buyer, seller = (taker, maker) if taker.side == BUY else (maker, taker)
            failed = self.settle(buyer, seller, maker.price, qty, taker)
            if failed is maker:
                self._cancel(maker, "cancelled")
                self.counters["failed_trades"] += 1
                continue
            if failed is taker:
                self.counters["failed_trades"] += 1
                break
            if maker.remaining == 0:
                maker.status = "filled"
                book.remove(maker)
                self.open.pop(maker.order_hash, None)
        if taker.remaining == 0:
            taker.status = "filled"
        elif rest and taker.status == "open":
            book.add(taker)
            self.open[taker.order_hash] = taker
        elif not rest:
            taker.status = "cancelled"
        self.dirty.add(taker.market_id)

    def cancel(self, order_hash: str, caller: str) -> SimOrder:
        o = self.orders.get(order_hash) or self.orders.get(order_hash.lower())
        if o is None or o.trader != caller or o.status != "open":
            raise ApiError(404, "order not found")
        self._cancel(o)
        self.counters["orders_cancelled"] += 1
        return o

    def cancel_market(self, market_id: str, caller: str) -> int:
        m = self.market(market_id)
        n = 0
        for o in list(self.open.values()):
            if o.market_id == m.market_id and o.trader == caller:
                self._cancel(o)
                n += 1
        self.counters["orders_cancelled"] += n
        return n

    # -- views --------------------------------------------------------------------------------
    def book_json(self, mid: str, outcome: int = YES) -> dict[str, Any]:
        bids, asks = self.books[(mid, outcome)].levels()
        return {"marketId": mid, "bids": bids, "asks": asks, "lastUpdate": int(self.t)}


class ExchangeSettlement:
    """Settlement and positions (part of Exchange): what a match reserves, the pending trade, its
    on-chain settlement or failure, positions. Owns pending, failed, reservations, the ledger's
    balances and positions as trades move them."""

    # -- matching (off-chain) and settlement (on-chain) ----------------------------------------
    def available(self, addr: str, mid: str, outcome: int) -> tuple[int, int, int]:
        """(USDC, standing allowance, outcome shares) the matcher may still commit for `addr`:
        on-chain balances less what pending trades have reserved, plus shares they deliver."""
        L = self.ledger
        L.ensure(addr)
        pos = L.pos(addr, mid)
        held = pos.yes if outcome == YES else pos.no
        a = L.allowance.get(addr, 0)
        allow = a if a == MAX_UINT else a - self.reserved_allow[addr]
        shares = (
            held + self.incoming[(addr, mid, outcome)] - self.reserved_shares[(addr, mid, outcome)]
        )
        return L.balance[addr] - self.reserved_usdc[addr], allow, shares

    def _reserve(self, addr: str, order: SimOrder, usdc: int) -> int:
        """Reserve USDC and allowance, the order's own permit first; returns the permit part."""
        self.reserved_usdc[addr] += usdc
        from_permit = min(usdc, order.permit_budget)
        order.permit_budget -= from_permit
        self.reserved_allow[addr] += usdc - from_permit
        return from_permit

    def _release(self, addr: str, order: SimOrder, usdc: int, from_permit: int) -> None:
        self.reserved_usdc[addr] -= usdc
        order.permit_budget += from_permit
        self.reserved_allow[addr] -= usdc - from_permit

    def settle(
        self, buyer: SimOrder, seller: SimOrder, price: int, qty: int, taker: SimOrder
    ) -> SimOrder | None:
        """Match one fill off-chain: check what each side can still commit, reserve it, fill
        the orders, publish the trade, and queue it for on-chain settlement (at once when
        settle_delay_s is 0). Returns the order that could not pay, if any."""
        mid, outcome = buyer.market_id, buyer.outcome
        b, s = buyer.trader, seller.trader
        cost = price * qty // PRICE_SCALE
        fee_b = qty * (self.cfg.taker_fee_bps if buyer is taker else self.cfg.maker_fee_bps)
        fee_b //= 10_000
        fee_s = qty * (self.cfg.taker_fee_bps if seller is taker else self.cfg.maker_fee_bps)
        fee_s //= 10_000
        b_usdc, b_allow, _ = self.available(b, mid, outcome)
        s_usdc, s_allow, s_held = self.available(s, mid, outcome)
        short = max(0, qty - max(0, s_held))
        if b_usdc < cost + fee_b or (
            b_allow != MAX_UINT and b_allow + buyer.permit_budget < cost + fee_b
        ):
            return buyer
        if short and (
            s_usdc < short or (s_allow != MAX_UINT and s_allow + seller.permit_budget < short)
        ):
            return seller
        permit_b = self._reserve(b, buyer, cost + fee_b)
        permit_s = self._reserve(s, seller, short) if short else 0
        self.reserved_shares[(s, mid, outcome)] += qty - short
        self.incoming[(b, mid, outcome)] += qty
        buyer.filled += qty
        seller.filled += qty
        m = self.markets[mid]
        m.volume += qty
        m.last_price = price
        m.updated_at = int(self.t)
        self.counters["trades"] += 1
        n = self.counters["trades"]
        maker = seller if buyer is taker else buyer
        if self.cfg.maker_rebate:  # spec 1.4: 20% of a virtual 0.25 (p(1-p))^2 taker fee
            p = price / PRICE_SCALE
            rebate = round(0.2 * 0.25 * (p * (1 - p)) ** 2 * cost)
            self.rebates[maker.trader] += rebate
            self.rebates_by_market[(maker.trader, mid)] += rebate
        tx = "0x" + keccak(f"tx:{n}".encode()).hex()
        tr = {
            "id": n,
            "marketId": mid,
            "buyer": b,
            "seller": s,
            "price": price,
            "size": qty,
            "outcome": outcome,
            "side": taker.side,
            "maker": maker.trader,
            "taker": taker.trader,
            "makerOrderHash": maker.order_hash,
            "takerOrderHash": taker.order_hash,
            "timestamp": int(self.t),
            "txHash": tx,
            "tradeHash": "0x" + keccak(f"trade:{n}".encode()).hex(),
        }
        self.trades[mid].append(tr)
        self.trade_count[mid] += 1
        if not (buyer.internal and seller.internal):
            self.api_trades[mid].append(tr)  # every trade of an API client, kept whole
        self.events.append({"type": "trade", "marketId": mid, "data": tr})
        p = PendingTrade(
            tr,
            buyer,
            seller,
            taker,
            cost,
            fee_b,
            fee_s,
            short,
            permit_b,
            permit_s,
            self.t + self.cfg.settle_delay_s,
        )
        self.pending.append(p)
        self.by_tx[tx] = p
        if self.cfg.settle_delay_s <= 0:
            self.settle_due(self.t)
        return None

    def settle_due(self, t: float, market_id: str | None = None) -> None:
        """Settle, in match order, every pending trade due by t (or all of one market's)."""
        keep: list[PendingTrade] = []
        batch = 0
        for p in self.pending:
            if p.due <= t + 1e-9 or p.trade["marketId"] == market_id:
                p.batch_index = batch
                batch += 1
                self._settle_onchain(p)
            else:
                keep.append(p)
        self.pending = keep

    def _settle_onchain(self, p: PendingTrade) -> None:
        """Release the reservations, then do what the settlement contract would: move USDC and
        shares if the chain allows it now, else fail the trade with the chain's reason (nothing
        moves; the orders keep their filledSize: see docs/simulator.md, "settlement")."""
        L = self.ledger
        tr = p.trade
        mid, outcome, qty, price = tr["marketId"], tr["outcome"], tr["size"], tr["price"]
        b, s = tr["buyer"], tr["seller"]
        self._release(b, p.buyer, p.cost + p.fee_b, p.permit_b)
        if p.short:
            self._release(s, p.seller, p.short, p.permit_s)
        self.reserved_shares[(s, mid, outcome)] -= qty - p.short
        self.incoming[(b, mid, outcome)] -= qty
        bpos, spos = L.pos(b, mid), L.pos(s, mid)
        held = spos.yes if outcome == YES else spos.no
        short = max(0, qty - held)
        need_b = p.cost + p.fee_b
        reason = ""
        if self.faults.trip("settle_fail", self.t):
            reason = "execution reverted: transaction simulation failed (settle_fail fault)"
        elif L.balance[b] < need_b:
            reason = "ERC20: transfer amount exceeds balance (buyer)"
        elif L.available_allowance(b, p.buyer) < need_b:
            reason = "ERC20: transfer amount exceeds allowance (buyer)"
        elif qty - short > 0 and self.cfg.require_ctf_approval and s not in self.ctf_approved:
            reason = "ERC1155: caller is not token owner or approved (seller)"
        elif short and L.balance[s] < short:
            reason = "ERC20: transfer amount exceeds balance (seller split)"
        elif short and L.available_allowance(s, p.seller) < short:
            reason = "ERC20: transfer amount exceeds allowance (seller split)"
        p.status = "failed" if reason else "settled"
        p.settled_at = self.t
        if reason:
            p.reason = reason
            self.failed.append(p)
            self.counters["failed_trades"] += 1
            log.info("settlement failed: %s %s", tr["txHash"][:12], reason)
            return
        L.balance[b] -= need_b
        L.spend_allowance(b, p.buyer, need_b)
        if short:
            L.balance[s] -= short
            L.spend_allowance(s, p.seller, short)
            L.collateral[mid] += short
            spos.yes += short
            spos.no += short
            spos.invested += short
        if outcome == YES:
            spos.yes -= qty
            bpos.yes += qty
            bpos.yes_cost += p.cost
            spos.yes_revenue += p.cost
        else:
            spos.no -= qty
            bpos.no += qty
            bpos.no_cost += p.cost
            spos.no_revenue += p.cost
        fee_s = p.fee_s
        L.balance[s] += p.cost - fee_s
        if L.balance[s] < 0:  # seller fee larger than proceeds and balance (tiny prices)
            fee_s += L.balance[s]
            L.balance[s] = 0
        L.fees += p.fee_b + fee_s
        bpos.invested += need_b
        for pos in (bpos, spos):
            pos.last_price = price
            pos.updated = int(self.t)
        for a in (b, s):
            self.user_trades[a] += 1
            self.user_volume[a] += p.cost
        self.counters["settled_trades"] += 1
        ok, bad = L.invariants({mid: self.markets[mid]})
        if not ok:
            self.invariant_errors.extend(bad)
            log.error("invariant broken: %s", bad)

    def position_json(self, addr: str, mid: str) -> dict[str, Any]:
        p = self.ledger.pos(addr, mid)
        m = self.markets[mid]
        return {
            "id": p.id,
            "marketId": mid,
            "contractAddress": m.contract,
            "userAddress": addr,
            "yesShares": p.yes,
            "noShares": p.no,
            "yesCost": p.yes_cost,
            "noCost": p.no_cost,
            "yesRevenue": p.yes_revenue,
            "noRevenue": p.no_revenue,
            "totalInvested": p.invested,
            "invested": p.invested,
            "totalCost": p.yes_cost + p.no_cost,
            "totalRevenue": p.yes_revenue + p.no_revenue,
            "lastTradePrice": p.last_price,
            "lastUpdated": p.updated,
        }


class ExchangeClaims:
    """Claims and the relayer's redemptions (part of Exchange): claim-data and redeeming winning
    shares. Owns the redemptions done."""

    # -- claims -------------------------------------------------------------------------------
    def claim_data(self, owner: str, contract: str) -> dict[str, Any]:
        m = self.market(contract)
        pos = self.ledger.pos(owner, m.market_id)
        win = 0
        if m.resolved:
            win = pos.yes if m.outcome == YES else pos.no
        return {
            "market_address": m.contract,
            "market_id": m.market_id,
            "resolved": m.resolved,
            "winning_balance": str(win),
            "ctf_address": self.chain["ctf"],
            "collateral_token": self.chain["usdc"],
            "condition_id": m.condition_id,
            "winning_outcome": m.outcome,
            "ctf_nonce": self.ledger.ctf_nonce[owner],
            "parent_collection_id": "0x" + "00" * 32,
        }

    def redeem(self, r: dict[str, Any], chain_id: int | None = None) -> dict[str, Any]:
        try:
            owner = str(r["owner"]).lower()
            cond = str(r["conditionId"])
            index_sets = [int(x) for x in r["indexSets"]]
            deadline = int(r["deadline"])
            collateral = str(r["collateralToken"])
            parent = str(r.get("parentCollectionId") or "0x" + "00" * 32)
            sig = sig_from_vrs(int(r["v"]), r["r"], r["s"])
        except (KeyError, ValueError, TypeError) as e:
            raise ApiError(400, f"invalid redemption: {e}") from None
        m = next((x for x in self.markets.values() if x.condition_id.lower() == cond.lower()), None)
        if m is None:
            raise ApiError(404, "condition not found")
        if deadline < self.t:
            raise ApiError(400, "redemption deadline passed")
        nonce = self.ledger.ctf_nonce[owner]
        arr = keccak(b"".join(_u256(i) for i in index_sets))
        struct = keccak(
            REDEEM_TYPEHASH
            + _addr32(owner)
            + _addr32(collateral)
            + _b32(parent)
            + _b32(cond)
            + arr
            + _u256(nonce)
            + _u256(deadline)
        )
        require_signer(
            self.dsep_ctf, struct, sig, owner, "invalid redemption signature (or stale ctf nonce)"
        )
        if not m.resolved:
            raise ApiError(400, "market not resolved")
        self.ledger.ctf_nonce[owner] += 1
        pos = self.ledger.pos(owner, m.market_id)
        paid = 0
        for i in index_sets:  # indexSet 1 = YES, 2 = NO; only the winner pays
            if i == 1 and m.outcome == YES:
                paid += pos.yes
                pos.yes = 0
            elif i == 2 and m.outcome == NO:
                paid += pos.no
                pos.no = 0
        self.ledger.collateral[m.market_id] -= paid
        self.ledger.ensure(owner)
        self.ledger.balance[owner] += paid
        self.ledger.paid_out += paid
        self.counters["claims"] += 1
        tx = "0x" + keccak(f"redeem:{owner}:{nonce}:{cond}".encode()).hex()
        return {
            "success": True,
            "tx_hash": tx,
            "txHash": tx,
            "payout": str(paid),
            "marketAddress": m.contract,
        }


class Exchange(ExchangeMarkets, ExchangeOrders, ExchangeSettlement, ExchangeClaims):
    """All exchange rules. Not thread-safe by design: only the event loop thread calls it."""

    def __init__(self, cfg: SimConfig, clock: Clock) -> None:
        self.cfg = cfg
        self.clock = clock
        self.chain = CHAINS[cfg.chain_id]
        self.rng = random.Random(cfg.seed)
        self.ledger = Ledger(round(cfg.initial_usdc * 1e6))
        self.markets: dict[str, Market] = {}
        self.by_contract: dict[str, str] = {}
        self.current: dict[tuple[str, int], str] = {}  # (asset, interval) -> market id
        self.history: dict[tuple[str, int], list[str]] = collections.defaultdict(list)
        self.books: dict[tuple[str, int], Book] = {}
        self.orders: dict[str, SimOrder] = {}  # every API order ever placed, by hash
        self.open: dict[str, SimOrder] = {}  # resting orders (API and participants)
        self.used_nonces: set[tuple[str, int]] = set()
        self.trades: dict[str, collections.deque[dict[str, Any]]] = collections.defaultdict(
            lambda: collections.deque(maxlen=1000)
        )
        # the API's recent trades are the last 1,000 a market (a deep market trades thousands):
        # API clients' trades are also kept whole, for the benches' ledger arithmetic
        self.api_trades: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        self.trade_count: collections.Counter[str] = collections.Counter()
        self.user_trades: dict[str, int] = collections.defaultdict(int)
        self.user_volume: dict[str, int] = collections.defaultdict(int)
        self.api_keys: dict[str, tuple[str, VerifyKey]] = {}  # kid -> (address, key)
        self.key_by_addr: dict[str, str] = {}
        self.prices: dict[str, float] = {
            a: cfg.btc_price * (1 if a == "BTC" else 0.035) for a in cfg.assets
        }
        self.price_hist: dict[str, collections.deque[tuple[float, float]]] = {
            a: collections.deque(maxlen=200_000) for a in cfg.assets
        }
        self.sigma_s = cfg.annual_vol / math.sqrt(SECONDS_PER_YEAR)
        if cfg.preset not in PRESETS:
            raise ValueError(f"unknown preset {cfg.preset!r} ({', '.join(PRESETS)})")
        self.model = RealisticModel(cfg) if cfg.preset != "classic" else None
        # the fast venues' price (informed traders watch it) and the model's instantaneous
        # vol per sqrt(s), each grid step; classic: the published price and sigma_s
        self.fast: dict[str, float] = dict(self.prices)
        self.fast_hist: dict[str, collections.deque[tuple[float, float, float]]] = {
            a: collections.deque(maxlen=200_000) for a in cfg.assets
        }
        self.rebates: collections.Counter[str] = collections.Counter()  # u6, maker_rebate
        self.rebates_by_market: collections.Counter[tuple[str, str]] = collections.Counter()
        self.seq = 0
        self.dirty: set[str] = set()
        self.events: list[dict[str, Any]] = []  # stream messages waiting to be flushed
        self.counters: collections.Counter[str] = collections.Counter()
        self.pending_resolve: list[tuple[float, str]] = []
        self.faults = Faults(random.Random(cfg.seed + 99))  # the App switches them
        # settlement: matched trades wait here for their batch; reservations keep the matcher
        # from committing the same USDC, allowance or shares twice meanwhile
        self.pending: list[PendingTrade] = []
        self.failed: collections.deque[PendingTrade] = collections.deque(maxlen=1000)
        self.by_tx: dict[str, PendingTrade] = {}
        self.reserved_usdc: collections.Counter[str] = collections.Counter()
        self.reserved_allow: collections.Counter[str] = collections.Counter()
        self.reserved_shares: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self.incoming: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self.ctf_approved: set[str] = set()  # owners whose CTF operator is the settlement
        self.invariant_errors: list[str] = []
        self.dsep_order = domain_separator("Turbine", "1", cfg.chain_id, self.chain["settlement"])
        self.dsep_usdc = domain_separator(
            self.chain["usdc_name"], self.chain["usdc_version"], cfg.chain_id, self.chain["usdc"]
        )
        self.dsep_ctf = domain_separator(
            "ConditionalTokensWithPermit", "1", cfg.chain_id, self.chain["ctf"]
        )
        self.t = clock.now()
        self.grid0 = float(math.floor(self.t))  # model grid anchor (see step_to)
        self.k = 0  # grid steps taken
        for a in cfg.assets:
            self.price_hist[a].append((self.t, self.prices[a]))
            self.fast_hist[a].append((self.t, self.prices[a], self.sigma_s))
            if self.model is not None:
                self.model.start(a, self.prices[a], self.t)
            for iv in cfg.intervals:
                start = int(self.t // (iv * 60) * (iv * 60))
                if cfg.market_age_s is not None:  # a market that began just now, for tests
                    start = int(self.t - cfg.market_age_s)
                self._open_market(a, iv, start)

    def state(self) -> dict[str, Any]:
        ok, bad = self.ledger.invariants(self.markets)
        ok = ok and not self.invariant_errors
        return {
            "time": self.t,
            "markets": {
                f"{a}:{iv}": self.markets[mid].to_quick() for (a, iv), mid in self.current.items()
            },
            "prices": dict(self.prices),
            "open_orders": [
                {
                    "trader": o.trader,
                    "marketId": o.market_id,
                    "orderHash": o.order_hash,
                    "side": o.side,
                    "outcome": o.outcome,
                    "price": o.price,
                    "size": o.size,
                    "filledSize": o.filled,
                }
                for o in self.open.values()
                if not o.internal
            ],
            "balances": {a: b for a, b in self.ledger.balance.items()},
            "allowances": {a: str(v) for a, v in self.ledger.allowance.items() if v},
            "fees": self.ledger.fees,
            "paid_out": self.ledger.paid_out,
            "minted": self.ledger.minted,
            "counters": dict(self.counters),
            "rebates": dict(self.rebates),
            "pending_trades": len(self.pending),
            "failed_trades": len(self.failed),
            "ctf_approved": sorted(self.ctf_approved),
            "invariants_ok": ok,
            "invariant_errors": (bad + self.invariant_errors)[:20],
        }


# ---------------------------------------------------------------------------------------------
# Participants
# ---------------------------------------------------------------------------------------------
class Participants:
    """Seeded market participants that make fill rate, adverse selection and PnL meaningful.

    noise:    Poisson takers, random side, lognormal size, paying up to `noise_max_cross`
              through the true probability, so some sweep several levels.
    informed: take any quote mispriced by more than `informed_edge` against the true
              probability (adverse selection for stale or off-fair quotes).
    maker:    a background maker laddering both sides around the true probability.
    """

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.cfg = ex.cfg
        self.rng = random.Random(ex.cfg.seed * 7919 + 1)
        self.noise = "0x" + keccak(b"participant:noise").hex()[-40:]
        self.informed = "0x" + keccak(b"participant:informed").hex()[-40:]
        self.maker = "0x" + keccak(b"participant:maker").hex()[-40:]
        self._fund([self.noise, self.informed, self.maker])
        self.maker_orders: dict[Any, list[SimOrder]] = collections.defaultdict(list)
        self.next_refresh: dict[Any, float] = {}
        self.excite: dict[str, float] = {}  # realistic noise: self-excitation per market
        self.deep = ex.cfg.preset in DEEP_PRESETS
        if self.deep:  # the deep preset's own addresses and random stream
            self.rng = random.Random(ex.cfg.seed * 7919 + 3)
            self.makers = self._fund(
                ["0x" + keccak(f"participant:deep{i}".encode()).hex()[-40:]
                 for i in range(len(ex.cfg.deep_makers))]
            )  # fmt: skip
        elif ex.model is not None:  # the realistic preset's own addresses and random stream
            self.rng = random.Random(ex.cfg.seed * 7919 + 2)
            self.makers = self._fund(
                ["0x" + keccak(f"participant:maker{i}".encode()).hex()[-40:]
                 for i in range(len(ex.cfg.makers))]
            )  # fmt: skip

    def _fund(self, addrs: list[str]) -> list[str]:
        """Deep pockets and standing approvals (max allowance, CTF operator) for `addrs`."""
        for a in addrs:
            self.ex.ledger.ensure(a, 10**15)
            self.ex.ledger.allowance[a] = MAX_UINT
            self.ex.ctf_approved.add(a)
        return addrs

    def step(self, t: float, dt: float) -> None:
        ex = self.ex
        if self.deep:
            self._step_deep(t, dt)
            return
        if ex.model is not None:
            self._step_realistic(t, dt)
            return
        for mid in list(ex.current.values()):
            m = ex.markets[mid]
            if m.closed or t >= m.end - 1:
                continue
            p = ex.true_probability(m)
            if t >= self.next_refresh.get(mid, 0.0):
                self._refresh_maker(m, p)
                self.next_refresh[mid] = t + self.cfg.maker_refresh_s
            if self.rng.random() < self.cfg.noise_rate_per_min * dt / 60.0:
                self._noise(m, p)
            if self.rng.random() < self.cfg.informed_rate_per_min * dt / 60.0:
                self._informed_at(m, p)

    @staticmethod
    def _px(p: float) -> int:
        return max(MIN_PRICE, min(MAX_PRICE, round(p * 100) * 10_000))

    def _shares(self, n: float) -> int:
        return max(1, int(n)) * 1_000_000

    def _refresh_maker(self, m: Market, p: float) -> None:
        ex = self.ex
        for o in self.maker_orders.pop(m.market_id, []):
            if o.status == "open":
                ex._cancel(o)
        if p < 0.03 or p > 0.97:
            return
        orders = []
        for off, sz in zip(self.cfg.maker_levels, self.cfg.maker_sizes, strict=False):
            size = self._shares(sz * (0.6 + 0.8 * self.rng.random()))
            bid, ask = self._px(p - off), self._px(p + off)
            if MIN_PRICE < bid < p * PRICE_SCALE:
                orders.append(
                    ex.place_internal(self.maker, m.market_id, BUY, YES, bid, size, False)
                )
            if p * PRICE_SCALE < ask < MAX_PRICE:
                orders.append(
                    ex.place_internal(self.maker, m.market_id, SELL, YES, ask, size, False)
                )
        self.maker_orders[m.market_id] = orders

    def _noise(self, m: Market, p: float) -> None:
        side = BUY if self.rng.random() < 0.5 else SELL
        cross = self.rng.random() ** 2 * self.cfg.noise_max_cross
        size = self._shares(self.rng.lognormvariate(math.log(self.cfg.noise_size_mean), 0.9))
        limit = p + cross if side == BUY else p - cross
        self.ex.place_internal(self.noise, m.market_id, side, YES, self._px(limit), size, True)
        self.ex.counters["noise_orders"] += 1

    # -- the realistic preset ----------------------------------------------------------------
    def _step_realistic(self, t: float, dt: float) -> None:
        ex, cfg = self.ex, self.cfg
        model = ex.model
        assert model is not None
        for mid in list(ex.current.values()):
            m = ex.markets[mid]
            if m.closed or t >= m.end - 1:
                continue
            pub, tau = ex.prices[m.asset], m.end - t
            for i, (half, size, refresh, vol) in enumerate(cfg.makers):
                key = (mid, i)
                if t >= self.next_refresh.get(key, 0.0):
                    sig = vol / math.sqrt(SECONDS_PER_YEAR)
                    view = binary_probability(pub, m.strike, tau, sig)
                    self._ladder(m, key, self.makers[i], view, (half, 2 * half), (size, size))
                    self.next_refresh[key] = t + refresh
            excite = self.excite.get(mid, 0.0) * math.exp(
                -math.log(2) * dt / cfg.noise_excite_half_life_s
            )
            # base rate x (1 + excite); an arrival adds what makes `noise_branching` more
            # arrivals on average over the boost's life (half-life / ln 2)
            rate = cfg.noise_rate_per_min * (1 + excite)
            if self.rng.random() < rate * dt / 60:
                view = binary_probability(pub, m.strike, tau, model.base)
                self._noise_realistic(m, view)
                life = cfg.noise_excite_half_life_s / math.log(2)
                excite += cfg.noise_branching / (cfg.noise_rate_per_min / 60 * life)
            self.excite[mid] = excite
            jumped = cfg.informed_react and abs(model.last_ret[m.asset]) > 2.5
            if jumped or self.rng.random() < cfg.informed_rate_per_min * dt / 60:
                fair = binary_probability(
                    ex.fast[m.asset],
                    m.strike,
                    tau - cfg.oracle_lag_s,
                    model.estimated_sigma(m.asset),
                )
                self._informed_at(m, fair)

    def _ladder(
        self,
        m: Market,
        key: Any,
        who: str,
        p: float,
        offsets: tuple[float, ...],
        sizes: tuple[float, ...],
    ) -> None:
        ex = self.ex
        for o in self.maker_orders.pop(key, []):
            if o.status == "open":
                ex._cancel(o)
        if p < 0.03 or p > 0.97:
            return
        orders = []
        for off, sz in zip(offsets, sizes, strict=False):
            size = self._shares(sz * (0.6 + 0.8 * self.rng.random()))
            bid, ask = self._px(p - off), self._px(p + off)
            if MIN_PRICE < bid < p * PRICE_SCALE:
                orders.append(ex.place_internal(who, m.market_id, BUY, YES, bid, size, False))
            if p * PRICE_SCALE < ask < MAX_PRICE:
                orders.append(ex.place_internal(who, m.market_id, SELL, YES, ask, size, False))
        self.maker_orders[key] = orders

    def _noise_realistic(self, m: Market, p: float) -> None:
        cfg = self.cfg
        side = BUY if self.rng.random() < 0.5 else SELL
        cross = self.rng.random() ** 2 * cfg.noise_max_cross
        u = 1.0 - self.rng.random()  # (0, 1]: Pareto by inversion
        shares = min(cfg.noise_max_size, cfg.noise_min_size * u ** (-1.0 / cfg.noise_tail))
        limit = p + cross if side == BUY else p - cross
        self.ex.place_internal(
            self.noise, m.market_id, side, YES, self._px(limit), self._shares(shares), True
        )
        self.ex.counters["noise_orders"] += 1

    def _informed_at(self, m: Market, fair: float) -> None:
        """Take every quote mispriced by more than informed_edge against `fair`."""
        self._take_mispriced(m, fair, self.cfg.informed_edge, self.cfg.informed_size)

    def _take_mispriced(self, m: Market, fair: float, edge: float, shares: float) -> None:
        """An informed taker: buy the asks below fair - edge, else sell the bids above fair +
        edge, up to `shares`, as one immediate-or-cancel order."""
        book = self.ex.books[(m.market_id, YES)]
        size = self._shares(shares)
        if book.asks and book.asks[0].price < (fair - edge) * PRICE_SCALE:
            px = int((fair - edge) * PRICE_SCALE)
            self.ex.place_internal(self.informed, m.market_id, BUY, YES, px, size, True)
            self.ex.counters["informed_orders"] += 1
        elif book.bids and book.bids[0].price > (fair + edge) * PRICE_SCALE:
            px = int((fair + edge) * PRICE_SCALE) + 1
            self.ex.place_internal(self.informed, m.market_id, SELL, YES, px, size, True)
            self.ex.counters["informed_orders"] += 1

    # -- the deep preset ----------------------------------------------------------------------
    def _step_deep(self, t: float, dt: float) -> None:
        """Takers first, then the makers re-quote: within a grid second the makers who refresh
        every second refill the touch the flow took, as the real ones do within milliseconds."""
        ex, cfg = self.ex, self.cfg
        model = ex.model
        assert model is not None
        for mid in list(ex.current.values()):
            m = ex.markets[mid]
            if m.closed or t >= m.end - 1:
                continue
            pub, tau = ex.prices[m.asset], m.end - t
            excite = self.excite.get(mid, 0.0) * math.exp(
                -math.log(2) * dt / cfg.noise_excite_half_life_s
            )
            rate = cfg.deep_noise_rate_per_min * (1 + excite)  # Hawkes, as the realistic preset
            life = cfg.noise_excite_half_life_s / math.log(2)
            for _ in range(self._poisson(rate * dt / 60)):
                self._noise_deep(m)
                excite += cfg.noise_branching / (cfg.deep_noise_rate_per_min / 60 * life)
            self.excite[mid] = excite
            fair = binary_probability(
                ex.fast[m.asset], m.strike, tau - cfg.oracle_lag_s, model.estimated_sigma(m.asset)
            )
            self._take_mispriced(m, fair, cfg.deep_arb_edge, cfg.deep_arb_max_size)
            thin = cfg.deep_end_size + (1 - cfg.deep_end_size) * min(1.0, tau / 300)
            for i, (half, size, levels, refresh, vol, leave, fast) in enumerate(cfg.deep_makers):
                key = (mid, i)
                if t < self.next_refresh.get(key, 0.0):
                    continue
                self.next_refresh[key] = t + refresh * (0.7 + 0.6 * self.rng.random())
                if tau <= leave:
                    self._requote(m, key, self.makers[i], {})
                    continue
                sig = vol / math.sqrt(SECONDS_PER_YEAR)
                view = binary_probability(ex.fast[m.asset] if fast else pub, m.strike, tau, sig)
                h = half + cfg.deep_risk_k * binary_step(view, tau, refresh)
                want = self._deep_ladder(view, h, size * thin, levels)
                self._requote(m, key, self.makers[i], want, take=half <= 0.005)

    def _deep_ladder(
        self, view: float, half: float, size: float, levels: int
    ) -> dict[tuple[int, int], int]:
        """(side, price) -> shares: `levels` a side one tick apart from view -+ half, outward.
        Nobody sells a near-certain winner at the cap or buys the loser at the floor: no ask at
        0.99, no bid at 0.01 (the real books go one-sided as a market decides)."""
        tick = PRICE_SCALE // 100
        # the nearest tick to view -+ half, never through the view: half 0.005 is one tick wide
        bid0 = min(math.floor((view - half) * 100 + 0.5), math.floor(view * 100)) * tick
        ask0 = max(math.ceil((view + half) * 100 - 0.5), math.ceil(view * 100)) * tick
        if ask0 <= bid0:
            ask0 = bid0 + tick
        out: dict[tuple[int, int], int] = {}
        for j in range(levels):
            sz = self._shares(size * (0.6 + 0.8 * self.rng.random()))
            if bid0 - j * tick > tick:
                out[(BUY, bid0 - j * tick)] = sz
            if ask0 + j * tick < PRICE_SCALE - tick:
                out[(SELL, ask0 + j * tick)] = sz
        return out

    def _requote(
        self, m: Market, key: Any, who: str, want: dict[tuple[int, int], int], take: bool = False
    ) -> None:
        """Diff a maker's resting orders against the ladder it wants: an order whose price still
        stands keeps its queue place; new ones are post-only (never cross another's quote),
        except a touch maker's (`take`), which takes the stale quotes its price reaches first."""
        ex = self.ex
        keep: list[SimOrder] = []
        for o in self.maker_orders.pop(key, []):
            if o.status != "open":
                continue
            if want.pop((o.side, o.price), None) is not None:
                keep.append(o)
            else:
                ex._cancel(o)
        book = ex.books[(m.market_id, YES)]
        for (side, px), sz in sorted(want.items()):
            opp = book.asks if side == BUY else book.bids
            if not take and opp and (px >= opp[0].price if side == BUY else px <= opp[0].price):
                continue
            keep.append(ex.place_internal(who, m.market_id, side, YES, px, sz, False))
        self.maker_orders[key] = keep

    def _poisson(self, lam: float) -> int:
        n, p, limit = 0, self.rng.random(), math.exp(-lam)
        while p > limit:
            n += 1
            p *= self.rng.random()
        return n

    def _noise_deep(self, m: Market) -> None:
        """A retail order: Pareto size, marketable up to deep_noise_max_ticks past the touch."""
        cfg = self.cfg
        book = self.ex.books[(m.market_id, YES)]
        side = BUY if self.rng.random() < 0.5 else SELL
        opp = book.asks if side == BUY else book.bids
        if not opp:
            return
        u = 1.0 - self.rng.random()
        shares = min(
            cfg.deep_noise_max_size, cfg.deep_noise_min_size * u ** (-1 / cfg.deep_noise_tail)
        )
        ticks = self.rng.randint(0, cfg.deep_noise_max_ticks) * (PRICE_SCALE // 100)
        limit = opp[0].price + ticks if side == BUY else opp[0].price - ticks
        self.ex.place_internal(
            self.noise, m.market_id, side, YES, limit, self._shares(shares), True
        )
        self.ex.counters["noise_orders"] += 1


# ---------------------------------------------------------------------------------------------
# The contested preset's participants (the deep ones plus steppers and official-program makers)
# ---------------------------------------------------------------------------------------------
@dataclass
class SdkMakerState:
    """One official-program maker in one market: what examples/market_maker.py keeps."""

    prices: collections.deque[tuple[float, float]] = field(
        default_factory=lambda: collections.deque(maxlen=60)
    )
    ema: float = 0.0  # momentum: an EMA(0.3) of the velocity
    target: float | None = None  # P(YES) at the last rebalance
    rebalanced: float = -1e9
    next_loop: float = 0.0
    dark_until: float = 0.0  # the circuit breaker
    fills: collections.deque[tuple[float, int]] = field(
        default_factory=lambda: collections.deque(maxlen=100)
    )
    seen: dict[str, int] = field(default_factory=dict)  # order hash -> filled size seen


class ContestedParticipants(Participants):
    """The contested preset (SimConfig's contested settings say what each part stands for):
    the deep preset's flow and makers, each maker now also re-quoting when its view moved by
    contested_move after its own latency; makers stepping ahead of the touch by less than a
    cent; makers running the official SDK's market maker."""

    def __init__(self, ex: Exchange) -> None:
        super().__init__(ex)
        cfg = ex.cfg
        self.crng = random.Random(cfg.seed * 7919 + 4)  # its own stream: deep's is untouched
        self.steppers = self._fund(
            ["0x" + keccak(f"participant:stepper{i}".encode()).hex()[-40:]
             for i in range(len(cfg.contested_steppers))]
        )  # fmt: skip
        self.sdk_makers = self._fund(
            ["0x" + keccak(f"participant:sdkmm{i}".encode()).hex()[-40:]
             for i in range(len(cfg.contested_sdk_makers))]
        )  # fmt: skip
        self.last_view: dict[Any, float] = {}  # maker key -> the view it last quoted on
        self.sdk: dict[Any, SdkMakerState] = {}

    def _seen(self, asset: str, lag_s: float, fast: bool) -> float:
        """The price a maker with this latency sees now: the fast venues' or the oracle's, as
        it was lag_s ago (whole grid steps)."""
        ex = self.ex
        k = max(0, round(lag_s / self.cfg.step_s))
        if fast:
            hist = ex.fast_hist[asset]
            return hist[max(0, len(hist) - 1 - k)][1] if hist else ex.fast[asset]
        hist2 = ex.price_hist[asset]
        return hist2[max(0, len(hist2) - 1 - k)][1] if hist2 else ex.prices[asset]

    def _due(self, key: Any, t: float, view: float, refresh: float, half: float) -> str:
        """"quote" when its timer ran out; "pull" when its view moved since its last quote by
        contested_move or its own half-spread, whichever is more (its quotes would be picked
        off: it cancels at once and quotes again a second or two later, the gap the real
        books show after a move); "" otherwise."""
        if abs(view - self.last_view.get(key, view)) >= max(self.cfg.contested_move, half):
            self.last_view[key] = view
            self.next_refresh[key] = t + 1 + self.crng.random() * min(1.0, refresh)
            return "pull"
        if t < self.next_refresh.get(key, 0.0):
            return ""
        self.next_refresh[key] = t + refresh * (0.7 + 0.6 * self.crng.random())
        self.last_view[key] = view
        return "quote"

    def step(self, t: float, dt: float) -> None:
        ex, cfg = self.ex, self.cfg
        model = ex.model
        assert model is not None
        for mid in list(ex.current.values()):
            m = ex.markets[mid]
            if m.closed or t >= m.end - 1:
                continue
            tau = m.end - t
            # the flow first (retail and the fast-price arbitrageurs), as in the deep preset
            excite = self.excite.get(mid, 0.0) * math.exp(
                -math.log(2) * dt / cfg.noise_excite_half_life_s
            )
            rate = cfg.deep_noise_rate_per_min * (1 + excite)
            life = cfg.noise_excite_half_life_s / math.log(2)
            for _ in range(self._poisson(rate * dt / 60)):
                self._noise_deep(m)
                excite += cfg.noise_branching / (cfg.deep_noise_rate_per_min / 60 * life)
            self.excite[mid] = excite
            sig_fast = model.estimated_sigma(m.asset)
            fair = binary_probability(ex.fast[m.asset], m.strike, tau - cfg.oracle_lag_s, sig_fast)
            self._take_mispriced(m, fair, cfg.deep_arb_edge, cfg.deep_arb_max_size)
            end = cfg.contested_end_size
            thin = end + (1 - end) * min(1.0, tau / 300)
            self._deep_makers(m, t, tau, thin)
            self._steppers(m, t, tau, thin)
            for j in range(len(cfg.contested_sdk_makers)):
                self._sdk_maker(m, t, tau, j)

    def _deep_makers(self, m: Market, t: float, tau: float, thin: float) -> None:
        cfg = self.cfg
        for i, (half, size, levels, refresh, vol, leave, fast) in enumerate(cfg.deep_makers):
            key = (m.market_id, i)
            lag = cfg.contested_latency_s[i] if i < len(cfg.contested_latency_s) else 1.0
            sig = vol / math.sqrt(SECONDS_PER_YEAR)
            view = binary_probability(self._seen(m.asset, lag, bool(fast)), m.strike, tau, sig)
            h = half + cfg.contested_risk_k * binary_step(view, tau, refresh)
            due = self._due(key, t, view, refresh, h)
            if not due:
                continue
            if tau <= leave or due == "pull":
                self._requote(m, key, self.makers[i], {})
                continue
            want = self._deep_ladder(view, h, size * cfg.contested_size_mult * thin, levels)
            self._requote(m, key, self.makers[i], want, take=half <= 0.005)

    def _steppers(self, m: Market, t: float, tau: float, thin: float) -> None:
        """Step ahead of the others' best by `step` while the view allows `edge`; else quote
        at the edge behind it. Post only, on the 0.0001 grid; an order whose price still
        stands keeps its queue place."""
        cfg = self.cfg
        book = self.ex.books[(m.market_id, YES)]
        for i, (edge0, size, step, refresh, vol, lag, fast) in enumerate(cfg.contested_steppers):
            key = (m.market_id, "step", i)
            sig = vol / math.sqrt(SECONDS_PER_YEAR)
            view = binary_probability(self._seen(m.asset, lag, bool(fast)), m.strike, tau, sig)
            edge = edge0 + cfg.contested_risk_k * binary_step(view, tau, refresh)
            due = self._due(key, t, view, refresh, edge)
            if not due:
                continue
            if tau <= 5 or not 0.02 < view < 0.98 or due == "pull":
                self._requote(m, key, self.steppers[i], {})
                continue
            mine = {o.order_hash for o in self.maker_orders.get(key, []) if o.status == "open"}
            bids = [o.price for o in book.bids if o.order_hash not in mine]
            asks = [o.price for o in book.asks if o.order_hash not in mine]
            g, stp = 100, round(step * PRICE_SCALE)
            bid = math.floor((view - edge) * PRICE_SCALE / g) * g
            ask = math.ceil((view + edge) * PRICE_SCALE / g) * g
            if bids:
                bid = min(bid, bids[0] + stp)
            if asks:
                ask = max(ask, asks[0] - stp)
                bid = min(bid, asks[0] - g)
            if bids:
                ask = max(ask, bids[0] + g)
            sz = self._shares(size * thin * (0.6 + 0.8 * self.crng.random()))
            want = {}
            if MIN_PRICE < bid < MAX_PRICE:
                want[(BUY, bid)] = sz
            if g < ask < MAX_PRICE:
                want[(SELL, ask)] = sz
            self._requote(m, key, self.steppers[i], want)

    def _sdk_maker(self, m: Market, t: float, tau: float, j: int) -> None:
        """examples/market_maker.py's 2 s loop for one maker in one market (YES book only)."""
        ex, cfg = self.ex, self.cfg
        spread0, base_vol, alloc, lag = cfg.contested_sdk_makers[j]
        key = (m.market_id, "sdk", j)
        st = self.sdk.setdefault(key, SdkMakerState(next_loop=t))
        if t < st.next_loop:
            return
        st.next_loop = t + 2.0  # FAST_POLL_INTERVAL
        who = self.sdk_makers[j]
        if tau <= 30:  # END_OF_MARKET_PULL_SECONDS: pull everything, stop
            self._requote(m, key, who, {})
            return
        for o in self.maker_orders.get(key, []):  # fills since the last loop
            d = o.filled - st.seen.get(o.order_hash, 0)
            if d > 0:
                st.fills.append((t, o.side))
                st.seen[o.order_hash] = o.filled
        recent = [s for ft, s in st.fills if t - ft <= 30]
        if len(recent) >= 3 and max(recent.count(BUY), recent.count(SELL)) / len(recent) > 0.8:
            st.fills.clear()
            st.dark_until = t + 10  # the circuit breaker: cancel all, dark 10 s
            self._requote(m, key, who, {})
            return
        if t < st.dark_until:
            return
        px = self._seen(m.asset, lag, False)  # Pyth, through its own latency
        st.prices.append((t, px))
        obs = list(st.prices)
        vel = 0.0
        if len(obs) >= 2:
            (p0, t0), (p1, t1) = (obs[-min(5, len(obs))][1], obs[-min(5, len(obs))][0]), (px, t)
            vel = (p1 - p0) / (t1 - t0) if t1 > t0 else 0.0
        rets = [(obs[k][1] - obs[k - 1][1]) / obs[k - 1][1] for k in range(1, len(obs))]
        vol = statistics.stdev(rets) if len(rets) > 1 else 0.0
        st.ema = 0.3 * vel + 0.7 * st.ema
        sigma = max(vol / math.sqrt(2.0), base_vol / math.sqrt(86_400))
        z = ((px - m.strike) / m.strike) / (sigma * math.sqrt(max(1.0, tau)))
        pos = ex.ledger.pos(who, m.market_id)
        gross = abs(pos.yes) + abs(pos.no)
        net = (pos.yes - pos.no) / gross if gross else 0.0
        p = 0.5 * (1 + math.erf(z / math.sqrt(2)))
        p += max(-0.10, min(0.10, st.ema * 0.5 / 1e6)) - net * 0.05
        p = max(0.20, min(0.80, p))
        spread = spread0 * (1 + vol * 10) * (1 + abs(st.ema) * 2 / 1e6)
        if 30 < tau < 90:
            spread *= 1 + 2 * (1 - tau / 90)
        spread = max(0.01, min(0.20, spread))
        live = [o for o in self.maker_orders.get(key, []) if o.status == "open"]
        moved = st.target is None or (abs(p - st.target) > 0.02 and t - st.rebalanced >= 2)
        if not (moved or (vol > 0.005 and t - st.rebalanced >= 5) or len(live) < 4):
            return
        st.target, st.rebalanced = p, t
        want: dict[tuple[int, int], int] = {}
        if p - 0.5 >= -0.15:  # below 0.35 it leaves the YES book to NO
            yes_usd = alloc * max(0.2, min(0.8, 0.5 + 0.3 * (p - 0.5)))
            sell = max(0.3, min(0.7, 0.5 + 0.3 * (p - 0.5)))
            w = [1.5 ** (5 - i) for i in range(6)]  # innermost first, the largest
            for side, usd in ((BUY, yes_usd * (1 - sell)), (SELL, yes_usd * sell)):
                for i, wi in enumerate(w):
                    off = spread / 4 + spread * i / 5
                    q = min(0.99, max(0.01, p - off if side == BUY else p + off))
                    price = max(10_000, min(990_000, int(q * PRICE_SCALE)))
                    level = usd * wi / sum(w)
                    if level >= 1.0:
                        want[(side, price)] = int(level * 1e12 / price)
        # its "graceful rebalance": the new ladder, then the old orders cancelled; a price it
        # still wants keeps its order here (the same exposure, the queue place aside)
        self._requote(m, key, who, want, take=True)


def participants_for(ex: Exchange) -> Participants:
    """The participants of `ex`'s preset."""
    return ContestedParticipants(ex) if ex.cfg.preset == "contested" else Participants(ex)


# ---------------------------------------------------------------------------------------------
# App: routes, auth, faults, stream
# ---------------------------------------------------------------------------------------------
def _err(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


# The app's routes and stream in six parts (each a mixin of SimApp: the routes only
# translate JSON to calls on the Exchange, where the rules live); SimApp holds the state, the
# route table, the middleware (auth, rate limit, HTTP faults) and the helpers they share.
class StreamPublisher:
    """The stream (part of SimApp): the WebSocket route, subscriptions, the frames each change
    publishes (books, trades, quick markets), the stream faults (freeze, stuck, malformed,
    crossed, drop), and the clock that drives it all (ticker at speed, advance on a manual
    clock). Owns sockets, stuck_books, the heartbeat times."""

    # -- stream fan-out -----------------------------------------------------------------------
    def _malformed(self) -> str:
        self._malformed_i += 1
        variants = [
            '{"type": "orderbook", "marketId": ',
            "not json at all",
            '{"type": "orderbook", "marketId": "0x12", "data": {"bids": "x"}}',
            '{"no_type": 1}',
            "[1, 2, 3]",
            '{"type": "orderbook", "marketId": "0x12", "data": {"bids": [{"price": -5}]}}',
        ]
        return variants[self._malformed_i % len(variants)]

    def _send_all(self, frames: dict[web.WebSocketResponse, list[str]]) -> None:
        freeze = self.faults.active.get("ws_freeze")
        if freeze is not None and not freeze.get("market"):
            return  # the whole stream is frozen (with a market: only that one, in flush)
        malformed = "malformed_ws" in self.faults.active
        crossed = "ws_crossed" in self.faults.active
        for ws, msgs in frames.items():
            if ws.closed or not msgs:
                continue
            out = [self._malformed(), *msgs] if malformed else msgs
            if crossed:  # books that cannot be true: the best bid far above the best ask
                out = [_crossed(m) for m in out]
            # several messages per frame, newline-separated, as the spec allows
            for i in range(0, len(out), 8):
                task = asyncio.ensure_future(self._safe_send(ws, "\n".join(out[i : i + 8])))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
            self.ex.counters["ws_frames"] += 1

    @staticmethod
    async def _safe_send(ws: web.WebSocketResponse, text: str) -> None:
        try:
            await ws.send_str(text)
        except (ConnectionError, RuntimeError):  # peer gone; the reader side cleans up
            return

    def flush(self, heartbeat: bool = False) -> None:
        ex = self.ex
        if not self.sockets:
            ex.dirty.clear()
            ex.events.clear()
            return
        frames: dict[web.WebSocketResponse, list[str]] = {ws: [] for ws in self.sockets}
        frozen = str(self.faults.active.get("ws_freeze", {}).get("market", "")).lower()
        for ev in ex.events:
            all_ = ev.pop("_all", False)
            if frozen and str(ev.get("marketId", "")).lower() == frozen:
                continue
            text = json.dumps(ev, separators=(",", ":"))
            for ws, subs in self.sockets.items():
                if all_ or ev["marketId"] in subs:
                    frames[ws].append(text)
        ex.events.clear()
        mids = set(ex.dirty)
        ex.dirty.clear()
        stuck = "ws_stuck" in self.faults.active
        if heartbeat or stuck:  # a stuck publisher keeps talking
            for subs in self.sockets.values():
                mids |= subs
        if not stuck:
            self.stuck_books.clear()
        book_text = {
            mid: json.dumps(
                {
                    "type": "orderbook",
                    "marketId": mid,
                    "data": {k: v for k, v in ex.book_json(mid).items() if k != "marketId"},
                },
                separators=(",", ":"),
            )
            for mid in mids
            if mid in ex.markets and mid.lower() != frozen
        }
        if stuck:  # ... the first book it had of each market, however the market moves
            book_text = {m: self.stuck_books.setdefault(m, t) for m, t in book_text.items()}
        for ws, subs in self.sockets.items():
            for mid in subs:
                if mid in book_text:
                    frames[ws].append(book_text[mid])
        self._send_all(frames)

    async def ticker(self) -> None:
        """Real-speed mode: move the model with the clock, publish, heartbeat (every 20 ms)."""
        while True:
            await asyncio.sleep(0.02)
            try:
                self.tick()
            except Exception:
                log.exception("sim ticker")

    def tick(self) -> None:
        """One ticker round. The model itself moves on its own grid (Exchange.step_to), so how
        often this runs changes when frames go out, never what happens."""
        if self.clock.manual:
            return
        k = self.ex.k
        self.sync()
        if self.ex.k != k:
            self._price_moved()
        hb = False
        if self.cfg.book_heartbeat_s > 0:
            # at most 50 heartbeats a real second, however fast simulated time runs
            real = self.clock.real()
            hb = (
                self.ex.t - self.last_heartbeat >= self.cfg.book_heartbeat_s
                and real - self.last_heartbeat_real >= 0.02
            )
            if hb:
                self.last_heartbeat = self.ex.t
                self.last_heartbeat_real = real
        self.flush(heartbeat=hb)

    def advance(self, seconds: float) -> None:
        """Manual clock: move time, run the model, publish (called on the loop thread).

        Publishes after every whole simulated second, so a client sees the same sequence of
        books it would see at speed."""
        target = self.clock.now() + seconds
        t = self.ex.t
        while t < target:
            t = min(target, t + max(self.cfg.step_s, 1.0))
            self.clock.set(t)
            k = self.ex.k
            self.ex.step_to(t, self.participants)
            if self.ex.k != k:
                self._price_moved()
            hb = (
                self.cfg.book_heartbeat_s > 0
                and self.ex.t - self.last_heartbeat >= self.cfg.book_heartbeat_s
            )
            if hb:
                self.last_heartbeat = self.ex.t
            self.flush(heartbeat=hb)
        self.clock.set(target)

    # -- stream -------------------------------------------------------------------------------
    async def stream(self, request: web.Request) -> web.StreamResponse:
        refuse = self.faults.active.get("ws_drop", {}).get("refuse")
        if refuse:
            return _err(503, "stream unavailable")
        # [docs] the server pings every 54 s (aiohttp then waits heartbeat/2 = 27 s for the
        # pong, the real server 60 s: stricter, and any client library answers at once)
        ws = web.WebSocketResponse(heartbeat=54.0)
        await ws.prepare(request)
        self.sockets[ws] = set()
        self.ex.counters["ws_connections"] += 1
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                    typ, mid = data.get("type"), data.get("marketId")
                except (ValueError, AttributeError):
                    continue
                if typ == "subscribe" and isinstance(mid, str):
                    try:
                        m = self.ex.market(mid)
                    except ApiError:
                        # the SDK also subscribes channels by asset; accept and ignore
                        continue
                    self.sockets[ws].add(m.market_id)
                    # [docs] a confirmation, then the snapshot
                    ack = {"type": "subscribe", "marketId": m.market_id}
                    await ws.send_str(json.dumps({**ack, "data": {"status": "subscribed"}}))
                    self.ex.dirty.add(m.market_id)
                    self.flush()
                elif typ == "unsubscribe" and isinstance(mid, str):
                    self.sockets[ws].discard(mid)
        finally:
            self.sockets.pop(ws, None)
        return ws

    async def drop_sockets(self) -> None:
        for ws in list(self.sockets):
            await ws.close(code=1011, message=b"dropped by simulator")
        self.sockets.clear()


class MarketRoutes:
    """Public market reads (part of SimApp): health, markets, stats, quick markets and their
    history and prices, books, trades, resolution, platform stats, holders. Owns nothing: reads
    the Exchange."""

    # -- public routes ------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "time": self.ex.t})

    async def markets(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"markets": [self._market_json(m) for m in self.ex.markets.values()]}
        )

    async def market_one(self, request: web.Request) -> web.Response:
        return web.json_response(self._market_json(self.ex.market(request.match_info["market_id"])))

    async def quick_market(self, request: web.Request) -> web.Response:
        m = self._current(request.match_info["asset"], request)
        asks = self.ex.books[(m.market_id, YES)].asks
        return web.json_response(
            {
                "active": True,
                "asset": m.asset,
                "quickMarket": m.to_quick(),
                "bestAskPrice": asks[0].price if asks else None,
            }
        )

    async def quick_history(self, request: web.Request) -> web.Response:
        m = self._current(request.match_info["asset"], request)
        ids = self.ex.history[(m.asset, m.interval)][-self._limit(request) :]
        return web.json_response(
            {"markets": [self.ex.markets[i].to_quick() for i in reversed(ids)]}
        )

    async def quick_price(self, request: web.Request) -> web.Response:
        self.ex.counters["price_requests"] += 1
        a = request.match_info["asset"].upper()
        if a not in self.ex.prices:
            raise ApiError(404, f"unknown asset {a}")
        return web.json_response({"price": self.ex.prices[a], "timestamp": int(self.ex.t)})

    async def price_history(self, request: web.Request) -> web.Response:
        a = request.match_info["asset"].upper()
        if a not in self.ex.prices:
            raise ApiError(404, f"unknown asset {a}")
        hist = list(self.ex.price_hist[a])[-self._limit(request) :]
        return web.json_response({"prices": [{"price": p, "timestamp": int(t)} for t, p in hist]})

    async def orderbook(self, request: web.Request) -> web.Response:
        m = self.ex.market(request.match_info["market_id"])
        try:
            outcome = int(request.query.get("outcome", YES))
        except ValueError:
            raise ApiError(400, "invalid outcome") from None
        if outcome not in (YES, NO):
            raise ApiError(400, "invalid outcome")
        return web.json_response(self.ex.book_json(m.market_id, outcome))

    async def trades(self, request: web.Request) -> web.Response:
        m = self.ex.market(request.match_info["market_id"])
        lst = list(self.ex.trades[m.market_id])[-self._limit(request) :]
        return web.json_response({"trades": lst[::-1]})

    async def stats(self, request: web.Request) -> web.Response:
        m = self.ex.market(request.match_info["market_id"])
        return web.json_response(
            {
                "marketId": m.market_id,
                "contractAddress": m.contract,
                "lastPrice": m.last_price,
                "totalVolume": m.volume,
                "volume24h": m.volume,
            }
        )

    async def resolution(self, request: web.Request) -> web.Response:
        m = self.ex.market(request.match_info["market_id"])
        out: dict[str, Any] = {
            "marketId": m.market_id,
            "expired": m.closed,
            "resolved": m.resolved,
            "assertionId": "0x" + keccak(b"assertion:" + m.market_id.encode()).hex(),
            "timestamp": m.end,
        }
        # [docs] winningOutcome only once resolved; HEAD's int(winningOutcome) raises on null
        if m.resolved:
            out["winningOutcome"] = out["outcome"] = m.outcome
        return web.json_response(out)

    async def platform_stats(self, request: web.Request) -> web.Response:
        vol = sum(m.volume for m in self.ex.markets.values())
        n = self.ex.counters["trades"]
        return web.json_response(
            {
                "chains": [
                    {
                        "chain_id": self.cfg.chain_id,
                        "total_volume": vol,
                        "total_trades": n,
                        "updated_at": int(self.ex.t),
                    }
                ],
                "total_volume": vol,
                "total_trades": n,
            }
        )

    async def holders(self, request: web.Request) -> web.Response:
        m = self.ex.market(request.match_info["market_id"])
        rows = [
            {
                "userAddress": addr,
                "yesShares": p.yes,
                "noShares": p.no,
                "totalInvested": p.invested,
            }
            for (addr, mid), p in self.ex.ledger.positions.items()
            if mid == m.market_id and (p.yes or p.no)
        ]
        rows.sort(key=lambda r: -(r["yesShares"] + r["noShares"]))
        return web.json_response({"topHolders": rows[: self._limit(request)]})


class AccountRoutes:
    """Orders and accounts (part of SimApp): API keys, placing, reading and cancelling orders,
    positions, user orders, activity and stats, balances and nonces, pending and failed trades,
    settlement status. Owns the API keys (in the Exchange)."""

    async def register_key(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        try:
            addr = str(body["address"])
            sig = str(body["signature"])
            text = f"Register API key for Turbine: {to_checksum_address(addr)}"
            signer = Account.recover_message(encode_defunct(text=text), signature=sig)
        except Exception:  # noqa: BLE001 -- untrusted input: any failure is a refusal
            raise ApiError(400, "invalid registration signature") from None
        if not same_addr(signer, addr):
            raise ApiError(401, "signature does not match address")
        a = addr.lower()
        if a in self.ex.key_by_addr:
            return web.json_response(
                {
                    "error": "API key already exists for this wallet",
                    "api_key_id": self.ex.key_by_addr[a],
                },
                status=409,
            )
        seed = secrets.token_bytes(32)
        sk = SigningKey(seed)
        kid = "sim-" + secrets.token_hex(8)
        self.ex.api_keys[kid] = (a, sk.verify_key)
        self.ex.key_by_addr[a] = kid
        self.ex.ledger.ensure(a)
        return web.json_response(
            {
                "success": True,
                "api_key_id": kid,
                "api_private_key": (seed + bytes(sk.verify_key)).hex(),
                "message": "API key registered",
            }
        )

    # -- authenticated routes -----------------------------------------------------------------
    async def post_order(self, request: web.Request) -> web.Response:
        caller = self.auth(request)
        body = await self._json(request)
        trades0 = self.ex.counters["trades"]
        o = self.ex.place(body, caller, "permit_reject" in self.faults.active)
        # [docs] {"orderHash","status","matches","timestamp"}; status here is the order's own
        # (open/filled/cancelled: what the SDK's tests mock), the fill figures are extra
        return web.json_response(
            {
                "success": True,
                "orderHash": o.order_hash,
                "status": o.status,
                "matches": self.ex.counters["trades"] - trades0,
                "timestamp": int(self.ex.t),
                "filledSize": o.filled,
                "remainingSize": o.remaining if o.status == "open" else 0,
            }
        )

    def _orders(self, pred: Callable[[SimOrder], bool], status: str | None) -> list[dict[str, Any]]:
        return [
            o.to_json()
            for o in self.ex.orders.values()
            if not o.internal and pred(o) and (status is None or o.status == status)
        ]

    async def get_orders(self, request: web.Request) -> web.Response:
        caller = self.auth(request)
        q = request.query
        trader = q.get("trader", caller).lower()
        mid = q.get("market_id") or q.get("marketId")
        return web.json_response(
            {
                "orders": self._orders(
                    lambda o: (
                        o.trader == trader and (mid is None or o.market_id.lower() == mid.lower())
                    ),
                    q.get("status"),
                )
            }
        )

    async def get_order(self, request: web.Request) -> web.Response:
        self.auth(request)
        o = self.ex.orders.get(request.match_info["order_hash"].lower())
        if o is None or o.internal:
            raise ApiError(404, "order not found")
        return web.json_response(o.to_json())

    async def cancel_order(self, request: web.Request) -> web.Response:
        caller = self.auth(request)
        h = request.match_info["order_hash"].lower()
        if self.faults.trip("cancel_404", self.ex.t):
            raise ApiError(404, "order not found")
        if not self.faults.trip("cancel_ignore", self.ex.t):  # a cancel that lies: 200, still open
            self.ex.cancel(h, caller)
        return web.json_response({"success": True, "orderHash": h, "status": "cancelled"})

    async def cancel_market(self, request: web.Request) -> web.Response:
        caller = self.auth(request)
        mid = request.query.get("marketId") or request.query.get("market_id")
        if not mid:
            raise ApiError(400, "marketId is required")
        if self.faults.trip("cancel_404", self.ex.t):
            raise ApiError(404, "order not found")
        n = self.ex.cancel_market(mid, caller)
        return web.json_response({"success": True, "cancelled": n})

    async def positions(self, request: web.Request) -> web.Response:
        caller = self.auth(request)
        m = self.ex.market(request.match_info["market"])
        user = request.query.get("user", caller).lower()
        return web.json_response({"positions": [self.ex.position_json(user, m.market_id)]})

    async def user_positions(self, request: web.Request) -> web.Response:
        self.auth(request)
        a = request.match_info["address"].lower()
        return web.json_response(
            {
                "positions": [
                    self.ex.position_json(a, mid)
                    for (addr, mid) in self.ex.ledger.positions
                    if addr == a
                ]
            }
        )

    async def user_orders(self, request: web.Request) -> web.Response:
        self.auth(request)
        a = request.match_info["address"].lower()
        return web.json_response(
            {"orders": self._orders(lambda o: o.trader == a, request.query.get("status"))}
        )

    async def user_activity(self, request: web.Request) -> web.Response:
        self.auth(request)
        a = request.match_info["address"].lower()
        mk = {mid for (addr, mid) in self.ex.ledger.positions if addr == a}
        pnl = self.ex.ledger.balance.get(a, self.ex.ledger.initial) - self.ex.ledger.initial
        return web.json_response(
            {
                "address": a,
                "totalTrades": self.ex.user_trades[a],
                "totalVolume": self.ex.user_volume[a],
                "pnl": pnl,
                "marketsTraded": len(mk),
            }
        )

    async def user_stats(self, request: web.Request) -> web.Response:
        a = self.auth(request)
        L = self.ex.ledger
        cost = sum(p.yes_cost + p.no_cost for (x, _), p in L.positions.items() if x == a)
        inv = sum(p.invested for (x, _), p in L.positions.items() if x == a)
        pnl = L.balance.get(a, L.initial) - L.initial
        return web.json_response(
            {
                "user_address": a,
                "total_cost": cost,
                "total_invested": inv,
                "position_value": 0,
                "pnl": pnl,
                "pnl_percentage": pnl / L.initial * 100 if L.initial else 0,
            }
        )

    def _empty_list(self, name: str) -> Callable[[web.Request], Any]:
        key = {"failed-claims": "failedClaims", "pending-claims": "pendingClaims"}[name]

        async def h(request: web.Request) -> web.Response:
            return web.json_response({key: []})

        return h

    async def pending_trades(self, request: web.Request) -> web.Response:
        return web.json_response({"pendingTrades": [p.to_json() for p in self.ex.pending]})

    async def failed_trades(self, request: web.Request) -> web.Response:
        rows = [{**p.to_json(), "reason": p.reason} for p in self.ex.failed]
        return web.json_response({"failedTrades": rows[::-1]})  # newest first

    async def settlement_status(self, request: web.Request) -> web.Response:
        tx = request.match_info["tx_hash"].lower()
        p = self.ex.by_tx.get(tx)
        if p is None:
            return web.json_response({"found": False, "txHash": tx})
        return web.json_response(
            {**p.to_json(), "found": True, "status": p.status, "error": p.reason}
        )

    async def balances(self, request: web.Request) -> web.Response:
        a = request.match_info["address"].lower()
        self.ex.ledger.ensure(a)
        return web.json_response(
            {
                "balance": str(self.ex.ledger.balance[a]),
                "allowance": str(self.ex.ledger.allowance.get(a, 0)),
            }
        )

    async def contract_nonce(self, request: web.Request) -> web.Response:
        c, owner = request.match_info["contract"], request.match_info["owner"].lower()
        if same_addr(c, self.ex.chain["usdc"]):
            return web.json_response({"nonce": self.ex.ledger.permit_nonce[owner]})
        if same_addr(c, self.ex.chain["ctf"]):
            return web.json_response({"nonce": self.ex.ledger.ctf_nonce[owner]})
        raise ApiError(404, "unknown contract")


class RelayerRoutes:
    """Claims and the relayer (part of SimApp): claimable, claim-data, the USDC permit, the CTF
    approval and single and batch redemptions. Owns nothing of its own: the Exchange books them."""

    async def claimable(self, request: web.Request) -> web.Response:
        a = request.match_info["address"].lower()
        out = []
        total = 0
        for (addr, mid), p in self.ex.ledger.positions.items():
            m = self.ex.markets[mid]
            if addr != a or not m.resolved:
                continue
            bal = p.yes if m.outcome == YES else p.no
            if bal > 0:
                out.append(
                    {
                        "market_id": mid,
                        "contract_address": m.contract,
                        "outcome_label": "YES" if m.outcome == YES else "NO",
                        "balance": str(bal),  # u6 shares
                        "payout": f"{bal / 1e6:.2f}",  # dollars, spec 3.2 #28: "10.50"
                    }
                )
                total += bal
        return web.json_response(
            {"claimable": out, "count": len(out), "totalPayout": f"{total / 1e6:.2f}"}
        )

    async def claim_data(self, request: web.Request) -> web.Response:
        a = request.match_info["address"].lower()
        refs = [x for x in request.query.get("markets", "").split(",") if x]
        if not refs:
            raise ApiError(400, "markets is required")
        return web.json_response({"markets": [self.ex.claim_data(a, r) for r in refs]})

    async def relayer_permit(self, request: web.Request) -> web.Response:
        self.auth(request)
        body = await self._json(request)
        if "permit_reject" in self.faults.active:
            raise ApiError(400, "invalid permit signature")
        try:
            owner = str(body["owner"]).lower()
            spender = str(body["spender"])
        except KeyError as e:
            raise ApiError(400, f"missing {e}") from None
        nonce = self.ex.ledger.permit_nonce[owner]
        value = self.ex.verify_permit(owner, {**body, "nonce": body.get("nonce", nonce)}, spender)
        self.ex.ledger.ensure(owner)
        self.ex.ledger.permit_nonce[owner] += 1
        self.ex.ledger.allowance[owner] = value  # EIP-2612 permit sets, not adds
        tx = "0x" + keccak(f"permit:{owner}:{nonce}".encode()).hex()
        return web.json_response({"success": True, "tx_hash": tx, "txHash": tx})

    async def relayer_ctf_approval(self, request: web.Request) -> web.Response:
        """SetApprovalForAll by permit (spec 4.6): checked with eth-account's typed-data
        encoding, the CTF nonce consumed, the settlement becomes (or stops being) operator."""
        caller = self.auth(request)
        body = await self._json(request)
        if "ctf_reject" in self.faults.active:
            raise ApiError(503, "relayer unavailable")
        ex = self.ex
        try:
            owner = str(body["owner"])
            operator = str(body["operator"])
            approved = bool(body["approved"])
            deadline = int(body["deadline"])
            sig = sig_from_vrs(int(body["v"]), body["r"], body["s"])
        except (KeyError, ValueError, TypeError) as e:
            raise ApiError(400, f"invalid ctf approval: {e}") from None
        o = owner.lower()
        if o != caller:
            raise ApiError(403, "owner does not match the API key")
        if not same_addr(operator, ex.chain["settlement"]):
            raise ApiError(400, "operator is not the settlement contract")
        if deadline < ex.t:
            raise ApiError(400, "approval deadline passed")
        nonce = ex.ledger.ctf_nonce[o]
        typed = {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
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
                "chainId": self.cfg.chain_id,
                "verifyingContract": ex.chain["ctf"],
            },
            "message": {
                "owner": to_checksum_address(o),
                "operator": to_checksum_address(operator),
                "approved": approved,
                "nonce": nonce,
                "deadline": deadline,
            },
        }
        try:
            signer = Account.recover_message(encode_typed_data(full_message=typed), signature=sig)
        except Exception:  # noqa: BLE001 -- untrusted input: any failure is a refusal
            raise ApiError(400, "invalid ctf approval signature (or stale ctf nonce)") from None
        if not same_addr(signer, o):
            raise ApiError(400, "invalid ctf approval signature (or stale ctf nonce)")
        ex.ledger.ctf_nonce[o] += 1
        if approved:
            ex.ctf_approved.add(o)
        else:
            ex.ctf_approved.discard(o)
        ex.counters["ctf_approvals"] += 1
        tx = "0x" + keccak(f"ctf-approval:{o}:{nonce}".encode()).hex()
        return web.json_response({"success": True, "tx_hash": tx, "txHash": tx})

    async def relayer_redeem(self, request: web.Request) -> web.Response:
        self.auth(request)
        body = await self._json(request)
        return web.json_response(self.ex.redeem(body))

    async def relayer_batch_redeem(self, request: web.Request) -> web.Response:
        self.auth(request)
        body = await self._json(request)
        reds = body.get("redemptions")
        if not isinstance(reds, list) or not reds:
            raise ApiError(400, "redemptions must be a non-empty list")
        results = [self.ex.redeem({**r, "owner": r.get("owner", body.get("owner"))}) for r in reds]
        tx = results[0]["tx_hash"]  # HEAD's examples read txHash (camel) on the batch route
        return web.json_response({"success": True, "results": results, "txHash": tx, "tx_hash": tx})


class HermesRoutes:
    """Pyth Hermes (part of SimApp): /v2/updates/price/latest and the server-sent price stream from
    the model's oracle price. Owns hermes_streams and price_waiters."""

    # -- Pyth Hermes ---------------------------------------------------------------------------
    def _hermes_ids(self, request: web.Request) -> list[str]:
        key = self.cfg.hermes_api_key
        if key is not None and request.headers.get("Authorization", "") != f"Bearer {key}":
            raise ApiError(401, "missing or invalid API key")
        ids = [i.lower().removeprefix("0x") for i in request.query.getall("ids[]", [])]
        known = {v: a for a, v in PYTH_FEEDS.items() if a in self.ex.prices}
        missing = [i for i in ids if i not in known]
        if not ids or missing:
            raise ApiError(404, f"Price ids not found: {', '.join(missing) or '(none given)'}")
        return ids

    def _hermes_update(self, ids: list[str]) -> dict[str, Any]:
        """A Hermes price update (parsed) from the model: publish_time is the last grid step."""
        ex = self.ex
        asset = {v: a for a, v in PYTH_FEEDS.items()}
        pub = int(ex.grid0 + ex.k * self.cfg.step_s)
        parsed = []
        for i in ids:
            p = ex.prices[asset[i]]
            px = {
                "price": str(round(p * 10**-PYTH_EXPO)),
                "conf": str(round(p * 1e-4 * 10**-PYTH_EXPO)),  # ~1 bp, as BTC's usually is
                "expo": PYTH_EXPO,
                "publish_time": pub,
            }
            parsed.append(
                {
                    "id": i,
                    "price": px,
                    "ema_price": px,
                    "metadata": {
                        "slot": ex.k,
                        "proof_available_time": pub,
                        "prev_publish_time": pub - 1,
                    },
                }
            )
        blob = keccak(json.dumps(parsed, sort_keys=True).encode()).hex()  # not a real VAA
        return {"binary": {"encoding": "hex", "data": [blob]}, "parsed": parsed}

    async def _next_price(self, timeout: float) -> None:
        """Wait until the model steps (or `timeout`): streams send as the price moves."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.price_waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            self.price_waiters.discard(fut)

    def _price_moved(self) -> None:
        for f in list(self.price_waiters):
            if not f.done():
                f.set_result(None)

    async def hermes_latest(self, request: web.Request) -> web.Response:
        return web.json_response(self._hermes_update(self._hermes_ids(request)))

    async def hermes_stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one `data:` update per model step (coalesced to 50 a second)."""
        ids = self._hermes_ids(request)
        if self.faults.active.get("hermes_drop", {}).get("refuse"):
            raise ApiError(503, "stream unavailable")
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        self.hermes_streams.add(resp)
        self.ex.counters["hermes_streams"] += 1
        sent = -1
        try:
            while resp in self.hermes_streams:
                if self.ex.k != sent and "hermes_freeze" not in self.faults.active:
                    sent = self.ex.k
                    data = json.dumps(self._hermes_update(ids), separators=(",", ":"))
                    await resp.write(f"data:{data}\n\n".encode())
                await self._next_price(0.25)
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            self.hermes_streams.discard(resp)
        return resp


class AdminRoutes:
    """The simulator's own controls (part of SimApp, never faulted): faults on and off, advance,
    state, mint. Owns the faults switched on."""

    # -- admin --------------------------------------------------------------------------------
    async def sim_fault_on(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in FAULT_NAMES:
            return _err(404, f"unknown fault {name}; known: {', '.join(FAULT_NAMES)}")
        params: dict[str, Any] = {}
        if request.can_read_body:
            try:
                params = await request.json()
            except json.JSONDecodeError:
                return _err(400, "invalid JSON body")
        await self.apply_fault(name, params or {})
        return web.json_response({"ok": True, "active": self.faults.active})

    async def apply_fault(self, name: str, params: dict[str, Any]) -> None:
        self.faults.on(name, params, self.ex.t)
        if name == "ws_drop":
            await self.drop_sockets()
            if not params.get("refuse"):
                self.faults.off(name, self.ex.t)
        elif name == "hermes_drop":
            self.hermes_streams.clear()  # each stream's loop ends and closes its response
            if not params.get("refuse"):
                self.faults.off(name, self.ex.t)
        elif name == "resolve_now":
            self.sync()
            for (asset, iv), mid in list(self.ex.current.items()):
                if params.get("asset") and params["asset"].upper() != asset:
                    continue
                if params.get("interval") and int(params["interval"]) != iv:
                    continue
                m = self.ex.markets[mid]
                self.ex.rollover(asset, iv, math.ceil(self.ex.t))
                self.ex.resolve(m)
            self.faults.off(name, self.ex.t)
            self.flush()

    async def sim_fault_off(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.faults.off(name, self.ex.t)
        if name == "ws_freeze":
            self.flush(heartbeat=True)
        return web.json_response({"ok": True, "active": self.faults.active})

    async def sim_advance(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        if not self.clock.manual:
            return _err(400, "advance needs a manual clock (start with --manual)")
        self.advance(float(body.get("seconds", 1)))
        return web.json_response({"time": self.ex.t})

    async def sim_state(self, request: web.Request) -> web.Response:
        self.sync()
        st = self.ex.state()
        st["faults"] = self.faults.active
        st["ws_clients"] = len(self.sockets)
        return web.json_response(st)

    async def sim_mint(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.ex.ledger.mint(str(body["address"]).lower(), int(body["amount"]))
        return web.json_response({"ok": True})


class SimApp(
    StreamPublisher, MarketRoutes, AccountRoutes, RelayerRoutes, HermesRoutes, AdminRoutes
):
    """The simulator's HTTP and WebSocket app: its state, the route table, the middleware
    (auth, the rate limit, HTTP faults) and the helpers its parts share."""

    def __init__(self, cfg: SimConfig, clock: Clock | None = None) -> None:
        self.cfg = cfg
        # a caller may supply the clock (a subclass sharing time with another process)
        self.clock = clock or default_clock(cfg)
        self.ex = Exchange(cfg, self.clock)
        self.participants = participants_for(self.ex) if cfg.participants else None
        self.faults = self.ex.faults
        self.sockets: dict[web.WebSocketResponse, set[str]] = {}
        self.stuck_books: dict[str, str] = {}  # ws_stuck: the book text each market froze at
        self.buckets: dict[str, tuple[float, float]] = {}
        self.last_heartbeat = self.ex.t
        self.last_heartbeat_real = self.clock.real()
        self._malformed_i = 0
        self._sends: set[asyncio.Future[None]] = set()
        self.hermes_streams: set[web.StreamResponse] = set()
        self.price_waiters: set[asyncio.Future[None]] = set()  # streams waiting for a step
        self.app = web.Application(middlewares=[self.middleware], client_max_size=1 << 20)
        self._routes()

    # -- plumbing -----------------------------------------------------------------------------
    def _routes(self) -> None:
        r = self.app.router
        g, p, d = r.add_get, r.add_post, r.add_delete
        g("/health", self.health)
        g("/api/v1/health", self.health)
        g("/api/v1/markets", self.markets)
        g("/api/v1/markets/{market_id}", self.market_one)
        g("/api/v1/quick-markets/{asset}", self.quick_market)
        g("/api/v1/quick-markets/{asset}/history", self.quick_history)
        g("/api/v1/quick-markets/{asset}/price", self.quick_price)
        g("/api/v1/quick-markets/{asset}/price-history", self.price_history)
        g("/api/v1/orderbook/{market_id}", self.orderbook)
        g("/api/v1/trades/{market_id}", self.trades)
        g("/api/v1/stats/{market_id}", self.stats)
        g("/api/v1/resolution/{market_id}", self.resolution)
        g("/api/v1/platform/stats", self.platform_stats)
        g("/api/v1/holders/{market_id}", self.holders)
        p("/api/v1/orders", self.post_order)
        g("/api/v1/orders", self.get_orders)
        d("/api/v1/orders", self.cancel_market)
        g("/api/v1/orders/{order_hash}", self.get_order)
        d("/api/v1/orders/{order_hash}", self.cancel_order)
        g("/api/v1/positions/{market}", self.positions)
        g("/api/v1/users/{address}/positions", self.user_positions)
        g("/api/v1/users/{address}/orders", self.user_orders)
        g("/api/v1/users/{address}/activity", self.user_activity)
        g("/api/v1/users/{address}/claimable", self.claimable)
        g("/api/v1/users/{address}/claim-data", self.claim_data)
        g("/api/v1/users/{address}/balances", self.balances)
        g("/api/v1/contracts/nonce/{contract}/{owner}", self.contract_nonce)
        g("/api/v1/user-stats", self.user_stats)
        g("/api/v1/pending-trades", self.pending_trades)
        g("/api/v1/failed-trades", self.failed_trades)
        g("/api/v1/settlements/{tx_hash}", self.settlement_status)
        # redemptions are executed at once here: nothing is ever pending or failed
        for name in ("failed-claims", "pending-claims"):
            g(f"/api/v1/{name}", self._empty_list(name))
        p("/api/v1/api-keys", self.register_key)
        p("/api/v1/relayer/usdc-permit", self.relayer_permit)
        p("/api/v1/relayer/ctf-approval", self.relayer_ctf_approval)
        p("/api/v1/relayer/ctf-redemption", self.relayer_redeem)
        p("/api/v1/relayer/batch-ctf-redemption", self.relayer_batch_redeem)
        g("/api/v1/stream", self.stream)
        g("/v2/updates/price/latest", self.hermes_latest)
        g("/v2/updates/price/stream", self.hermes_stream)
        p("/sim/fault/{name}", self.sim_fault_on)
        d("/sim/fault/{name}", self.sim_fault_off)
        p("/sim/advance", self.sim_advance)
        g("/sim/state", self.sim_state)
        p("/sim/mint", self.sim_mint)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[..., Any]
    ) -> web.StreamResponse:
        path = request.path
        if path.startswith("/sim/"):
            return await handler(request)
        if path.startswith("/v2/"):  # Hermes: another service, none of Turbine's faults
            self.sync()
            self.ex.counters["hermes_requests"] += 1
            try:
                return await handler(request)
            except ApiError as e:
                return _err(e.status, e.message)
        self.sync()
        self.ex.counters["requests"] += 1
        f = self.faults
        now = self.ex.t
        slow = f.active.get("latency")
        if slow is not None and path.startswith(str(slow.get("path", "/"))):
            if request.method == str(slow.get("method", request.method)):
                await asyncio.sleep(float(slow.get("ms", 200)) / 1000.0)
        if path != "/api/v1/stream":
            redirect = f.active.get("redirect")  # a CDN or proxy sending clients elsewhere
            if (
                redirect is not None
                and path.startswith(str(redirect.get("path", "/api/")))
                and f.trip("redirect", now)
            ):
                to = str(redirect.get("to", "http://127.0.0.1:9")).rstrip("/")
                return web.Response(
                    status=int(redirect.get("status", 307)),
                    headers={"Location": to + request.path_qs},
                )
            if f.trip("http_429", now):
                return _err(429, "rate limit exceeded", {"Retry-After": "1"})
            h404 = str(f.active.get("http_404", {}).get("path", "/"))
            if path.lower().startswith(h404.lower()) and f.trip("http_404", now):
                return _err(404, "not found")
            h500 = str(f.active.get("http_500", {}).get("path", "/"))
            if path.lower().startswith(h500.lower()) and f.trip("http_500", now):
                return _err(500, "internal server error")
            if self.cfg.rate_limit_per_s > 0 and not self._take_token(request):
                self.ex.counters["rate_limited"] += 1
                return _err(429, "rate limit exceeded", {"Retry-After": "1"})
        try:
            resp = await handler(request)
        except ApiError as e:
            resp = _err(e.status, e.message)
        except json.JSONDecodeError:
            resp = _err(400, "invalid JSON body")
        if "corrupt" in f.active and resp.status == 200 and isinstance(resp, web.Response):
            rule = f.active["corrupt"]
            if (
                path.startswith(str(rule.get("path", "/api/")))
                and request.method == str(rule.get("method", "GET"))
                and f.trip("corrupt", now)
            ):
                resp = corrupt_reply(resp, rule)
        if "clock_skew" in f.active:  # the server's clock, as a client sees it in Date
            skew = float(f.active["clock_skew"].get("seconds", 0.0))
            resp.headers["Date"] = email.utils.formatdate(time.time() + skew, usegmt=True)
        self.flush()
        return resp

    def _take_token(self, request: web.Request) -> bool:
        key = request.headers.get("Authorization", "")[:40] or (request.remote or "?")
        now = time.monotonic()
        tokens, last = self.buckets.get(key, (self.cfg.rate_limit_burst, now))
        tokens = min(self.cfg.rate_limit_burst, tokens + (now - last) * self.cfg.rate_limit_per_s)
        if tokens < 1.0:
            self.buckets[key] = (tokens, now)
            return False
        self.buckets[key] = (tokens - 1.0, now)
        return True

    def auth(self, request: web.Request) -> str:
        """Address of a valid, fresh bearer token's API key, else 401."""
        h = request.headers.get("Authorization", "")
        if not h.startswith("Bearer "):
            raise ApiError(401, "missing bearer token")
        try:
            p64, s64 = h[7:].split(".", 1)
            payload_bytes = _b64d(p64)
            payload = json.loads(payload_bytes)
            kid, ts = str(payload["kid"]), int(payload["ts"])
        except Exception:  # noqa: BLE001 -- untrusted input: any failure is a refusal
            raise ApiError(401, "malformed bearer token") from None
        entry = self.ex.api_keys.get(kid)
        if entry is None:
            raise ApiError(401, "unknown API key")
        try:
            entry[1].verify(payload_bytes, _b64d(s64))
        except (BadSignatureError, ValueError):
            raise ApiError(401, "invalid bearer token signature") from None
        # Tokens are checked against the real wall clock (plus an injectable skew): a compressed
        # simulated clock must not invalidate a client whose own clock is right.
        skew = float(self.faults.active.get("clock_skew", {}).get("seconds", 0.0))
        if abs(time.time() + skew - ts) > BEARER_VALIDITY_S:
            raise ApiError(401, "bearer token expired")
        return entry[0]

    def sync(self) -> None:
        """Bring the model up to the clock (real-speed mode)."""
        if not self.clock.manual:
            self.ex.step_to(self.clock.now(), self.participants)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        body = await request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "JSON object expected")
        return body

    def _current(self, asset: str, request: web.Request) -> Market:
        try:
            iv = int(request.query.get("interval", "15"))
        except ValueError:
            raise ApiError(400, "invalid interval") from None
        mid = self.ex.current.get((asset.upper(), iv))
        if mid is None:
            raise ApiError(404, f"no quick market for {asset} {iv}m")
        return self.ex.markets[mid]

    def _market_json(self, m: Market) -> dict[str, Any]:
        return {
            "id": m.market_id,
            "chainId": self.cfg.chain_id,
            "contractAddress": m.contract,
            "settlementAddress": self.ex.chain["settlement"],
            "question": f"{m.asset} above {m.strike:.2f} at {m.end}?",
            "description": "simulated quick market",
            "category": "crypto",
            "expiration": m.end,  # HEAD reads `expiration`
            "expirationTime": m.end,  # 0.1.0 reads `expirationTime` first
            "maker": MARKET_CREATOR,
            "resolved": m.resolved,
            "winningOutcome": m.outcome,
            "volume": m.volume,
            "createdAt": m.created_at,
            "updatedAt": m.updated_at,
        }

    @staticmethod
    def _limit(request: web.Request, default: int = 100) -> int:
        try:
            return max(1, min(1000, int(request.query.get("limit", default))))
        except ValueError:
            raise ApiError(400, "invalid limit") from None





















































# ---------------------------------------------------------------------------------------------
# Handle: run the app on a background thread
# ---------------------------------------------------------------------------------------------
class Sim:
    """A running simulator. Every call is safe from any thread."""

    def __init__(self, cfg: SimConfig, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self.app = SimApp(cfg, clock)
        self.clock = self.app.clock
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="turbine-sim", daemon=True
        )
        self._thread.start()
        self.port = self.call(self._start())

    async def _start(self) -> int:
        self._runner = web.AppRunner(self.app.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port)
        await site.start()
        self._ticker = asyncio.ensure_future(self.app.ticker())
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def base_url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.cfg.host}:{self.port}/api/v1/stream"

    def call(self, coro_or_fn: Any, timeout: float = 60.0) -> Any:
        """Run a coroutine, or a plain function, on the simulator's loop and return its result."""
        if asyncio.iscoroutine(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn, self.loop).result(timeout)

        async def wrap() -> Any:
            return coro_or_fn()

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout)

    def advance(self, seconds: float) -> float:
        self.call(lambda: self.app.advance(seconds), timeout=600)
        return self.clock.now()

    def fault(self, name: str, **params: Any) -> None:
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name}")
        self.call(self.app.apply_fault(name, params))

    def clear_fault(self, name: str) -> None:
        def off() -> None:
            self.app.faults.off(name, self.app.ex.t)
            if name == "ws_freeze":
                self.app.flush(heartbeat=True)

        self.call(off)

    def state(self) -> dict[str, Any]:
        def st() -> dict[str, Any]:
            self.app.sync()
            s = self.app.ex.state()
            s["faults"] = dict(self.app.faults.active)
            s["ws_clients"] = len(self.app.sockets)
            return s

        return self.call(st)

    def mint(self, address: str, usdc: float) -> None:
        self.call(lambda: self.app.ex.ledger.mint(address.lower(), round(usdc * 1e6)))

    def stop(self) -> None:
        if not self.loop.is_running():
            return

        async def shutdown() -> None:
            self._ticker.cancel()
            self.app.hermes_streams.clear()  # their loops end within 20 ms
            await asyncio.sleep(0.05)
            await self.app.drop_sockets()
            await self._runner.cleanup()

        try:
            self.call(shutdown(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# Facts: a preset's book sampled as the real venue's was (the deep preset's figures)
# ---------------------------------------------------------------------------------------------
def book_facts(preset: str, seed: int, hours: float, **kw: Any) -> dict[str, Any]:
    """Run a preset with its participants and no client for `hours`, sample the current BTC:15
    market's YES book every simulated second (top five levels, as the real venue's recordings
    were polled) and return raw samples for `summarize_facts`."""
    cfg = SimConfig(manual_clock=True, start_time=1_767_225_600 + 1, seed=seed, preset=preset, **kw)
    ex = Exchange(cfg, Clock(cfg.start_time or 0.0, 1.0, manual=True))
    parts = participants_for(ex)
    rows: list[tuple[float, float, float | None, float | None, float, float, tuple]] = []
    t = cfg.start_time or 0.0
    for _ in range(int(hours * 3600)):
        t += 1.0
        ex.step_to(t, parts)
        m = ex.markets[ex.current[("BTC", 15)]]
        bids, asks = ex.books[(m.market_id, YES)].levels(5)
        bb = bids[0]["price"] / PRICE_SCALE if bids else None
        ba = asks[0]["price"] / PRICE_SCALE if asks else None
        top = (
            bids[:1] and (bids[0]["price"], bids[0]["size"]),
            asks[:1] and (asks[0]["price"], asks[0]["size"]),
        )
        rows.append(
            (
                m.end - ex.t,
                m.start,
                bb,
                ba,
                sum(x["size"] for x in bids) / 1e6,
                sum(x["size"] for x in asks) / 1e6,
                top,
            )
        )
    done = [mk for mk in ex.markets.values() if mk.closed and mk.end - mk.start >= 899]
    trades = [ex.trade_count[mk.market_id] for mk in done]
    volume = [mk.volume / 1e6 for mk in done]
    hist = [p for _, p in ex.price_hist["BTC"]]
    rets = [math.log(hist[i] / hist[i - 1]) for i in range(1, len(hist))]
    return {"rows": rows, "trades": trades, "volume_shares": volume, "rets": rets}


def summarize_facts(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The real venue's figures (SimConfig's deep settings cite them) from book_facts samples."""

    def q(xs: list[float], p: float) -> float | None:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 4) if xs else None

    spreads, last_spreads, depth, last_depth, moves_early, moves_last = [], [], [], [], [], []
    buckets = {">600": [0, 0], "300-600": [0, 0], "60-300": [0, 0], "10-60": [0, 0], "<10": [0, 0]}
    changes = seconds = 0
    trades: list[int] = []
    volume: list[float] = []
    rets: list[float] = []
    for smp in samples:
        trades += smp["trades"]
        volume += smp["volume_shares"]
        rets += smp["rets"]
        prev = None
        for left, start, bb, ba, dbid, dask, top in smp["rows"]:
            key = (
                ">600"
                if left > 600
                else "300-600"
                if left > 300
                else "60-300"
                if left > 60
                else "10-60"
                if left > 10
                else "<10"
            )
            both = bb is not None and ba is not None
            buckets[key][0] += both
            buckets[key][1] += 1
            if both:
                spreads.append(ba - bb)
                if left <= 60:
                    last_spreads.append(ba - bb)
            depth += [dbid, dask]
            if left <= 60:
                last_depth += [dbid, dask]
            if prev is not None and prev[0] == start:
                seconds += 1
                changes += top != prev[1]
                if both and prev[2] is not None:
                    mv = abs((bb + ba) / 2 - prev[2])
                    if left > 600:
                        moves_early.append(mv)
                    elif left <= 60:
                        moves_last.append(mv)
            prev = (start, top, (bb + ba) / 2 if both else None)
    sd = statistics.pstdev(rets) if len(rets) > 1 else 0.0
    return {
        "spread_median": q(spreads, 0.5),
        "spread_p90": q(spreads, 0.9),
        "spread_one_tick_share": round(
            sum(1 for x in spreads if x < 0.0101) / max(1, len(spreads)), 3
        ),
        "spread_last60_mean": round(statistics.fmean(last_spreads), 4) if last_spreads else None,
        "spread_last60_p90": q(last_spreads, 0.9),
        "both_sides_quoted": {k: round(a / b, 3) if b else None for k, (a, b) in buckets.items()},
        "top5_depth_median": q(depth, 0.5),
        "top5_depth_p10": q(depth, 0.1),
        "top5_depth_p90": q(depth, 0.9),
        "top5_depth_last60_median": q(last_depth, 0.5),
        "trades_per_market": round(statistics.fmean(trades), 1) if trades else None,
        "volume_usd_per_market_approx": round(statistics.fmean(volume) * 0.5, 0)
        if volume
        else None,
        "top_changes_per_min": round(60 * changes / max(1, seconds), 1),
        "mid_move_first5min": round(statistics.fmean(moves_early), 4) if moves_early else None,
        "mid_move_last60s": round(statistics.fmean(moves_last), 4) if moves_last else None,
        "btc_1s_return_sd_bp": round(sd * 1e4, 3),
    }


# the real venue's figures (SimConfig's deep settings cite their sources), for the comparison
REAL_VENUE_FACTS: dict[str, Any] = {
    "spread_median": 0.01,
    "spread_p90": 0.02,
    "spread_one_tick_share": 0.76,
    "spread_last60_mean": 0.023,
    "spread_last60_p90": 0.05,
    "both_sides_quoted": {
        ">600": 0.9995,
        "300-600": 0.986,
        "60-300": 0.776,
        "10-60": 0.33,
        "<10": 0.17,
    },
    "top5_depth_median": 2600,
    "top5_depth_p10": 915,
    "top5_depth_p90": 6420,
    "top5_depth_last60_median": 1300,
    "trades_per_market": 3350,
    "volume_usd_per_market_approx": 168_000,
    "top_changes_per_min": 32,
    "mid_move_first5min": 0.0078,
    "mid_move_last60s": 0.0174,
    "btc_1s_return_sd_bp": "0.35-0.66",
}


def start_sim(cfg: SimConfig | None = None, **overrides: Any) -> Sim:
    cfg = cfg or SimConfig()
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return Sim(cfg)


def new_api_credentials_for_tests(sim: Sim, private_key: str) -> tuple[str, str]:
    """Register API credentials for `private_key` on `sim` (helper for tests and --sim)."""
    import requests

    acct = Account.from_key(private_key)
    sig = Account.sign_message(
        encode_defunct(text=f"Register API key for Turbine: {acct.address}"), private_key
    ).signature.hex()
    r = requests.post(
        sim.base_url + "/api/v1/api-keys",
        json={"address": acct.address, "signature": "0x" + sig.removeprefix("0x")},
        timeout=10,
    )
    r.raise_for_status()
    d = r.json()
    return d["api_key_id"], d["api_private_key"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Local Turbine exchange simulator (REST + WS).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--speed", type=float, default=1.0, help="sim seconds per real second")
    ap.add_argument("--manual", action="store_true", help="manual clock (POST /sim/advance)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--chain-id", type=int, default=137, choices=sorted(CHAINS))
    ap.add_argument("--interval", type=int, action="append", help="quick-market minutes (repeat)")
    ap.add_argument("--asset", action="append", help="asset (repeat), default BTC")
    ap.add_argument("--initial-usdc", type=float, default=1000.0)
    ap.add_argument("--rate-limit", type=float, default=0.0, help="requests/s per client, 0=off")
    ap.add_argument("--no-participants", action="store_true")
    ap.add_argument(
        "--preset",
        choices=PRESETS,
        default="classic",
        help="market model: classic (thin: GBM, participants on the true probability), "
        "realistic (thin: BTC-like vol, jumps, a lagging oracle, informed takers on the fast "
        "price, two competing makers) or deep (Polymarket-like depth: one-tick spread, "
        "thousands of shares, thousands of trades a market, fast-price arbitrageurs)",
    )
    ap.add_argument("--maker-rebate", action="store_true", help="spec 1.4 maker rebates")
    ap.add_argument(
        "--settle-delay", type=float, default=2.0, help="sim s, match to settlement (0: at once)"
    )
    ap.add_argument(
        "--book-heartbeat", type=float, default=0.0, help="resend books every N sim s (0: quiet)"
    )
    ap.add_argument(
        "--resolve-delay",
        type=float,
        default=30.0,
        help="sim s after endTime the first asset resolves (live: ~60-180)",
    )
    ap.add_argument(
        "--no-ctf-approval", action="store_true", help="settle held-share sales unapproved"
    )
    a = ap.parse_args(argv)
    if a.speed <= 0:
        ap.error("--speed must be > 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = SimConfig(
        host=a.host,
        port=a.port,
        speed=a.speed,
        manual_clock=a.manual,
        seed=a.seed,
        chain_id=a.chain_id,
        intervals=tuple(a.interval or (15,)),
        assets=tuple(x.upper() for x in (a.asset or ["BTC"])),
        initial_usdc=a.initial_usdc,
        rate_limit_per_s=a.rate_limit,
        participants=not a.no_participants,
        preset=a.preset,
        maker_rebate=a.maker_rebate,
        settle_delay_s=a.settle_delay,
        book_heartbeat_s=a.book_heartbeat,
        resolve_delay_s=a.resolve_delay,
        require_ctf_approval=not a.no_ctf_approval,
    )
    sim = Sim(cfg)
    log.info(
        "turbine_sim on %s (ws %s) speed=%s seed=%s",
        sim.base_url,
        sim.ws_url,
        "manual" if a.manual else a.speed,
        a.seed,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
