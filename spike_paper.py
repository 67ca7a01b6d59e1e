"""spike_paper: paper trading, the live market's data with our orders on a local paper venue.

    python spike_bot.py --paper              # live reads and stream, paper orders and wallet
    python spike_bot.py --sim --paper        # the simulator stands in for the live market

`PaperExchange` is spike_bot's `Exchange` interface: quick markets, books, the asset price,
resolutions and the stream come from the wrapped read-only adapter (TurbineExchange, or the
official SDK's adapter in official_spike_bot.py); our orders, positions and USDC live in a
`PaperVenue`. The venue is also what `spike_bot.py replay` fills against, so a paper day and the
replay of its recording run one fill model:

  * a resting order fills at its own price (a maker) when a public trade prints through it, or
    at it once the size that was ahead of us at that price has traded (queue position: the
    size resting at our price when we joined, reduced by trades there and by the level
    shrinking); or when the opposite best reaches it (that liquidity is used once);
  * an order that crosses the book when placed takes the crossing levels at once (a taker),
    and the exchange's $1 taker minimum applies;
  * each trade's size is used once, best price first, then time.

Stream messages for the venue are held until the engine's next step (`PaperStream.pump`, called
by Bot.step before anything else) and then go to the venue and the engine in arrival order. A
recording (`--record`) marks each step, so `replay` delivers the same messages between the same
steps and reproduces a paper run's fills exactly. This module is not the bot: spike_bot.py loads
it only for --paper and replay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spike_bot import (
    BUY,
    MAX_PRICE,
    MAX_UINT,
    MIN_PRICE,
    PRICE_SCALE,
    SELL,
    SIZE_SCALE,
    YES,
    Book,
    Bot,
    CallPolicy,
    ClaimResult,
    Config,
    ConfigError,
    EventLog,
    ExchangeError,
    FailedFill,
    MarketKey,
    Metrics,
    OrderGate,
    OrderInfo,
    QuickMarket,
    Recorder,
    StreamHandler,
)

# Never a real wallet: paper orders are never signed, and no public trade names this address.
PAPER_ADDRESS = "0x" + "00" * 18 + "9a9e"
MIN_EXPIRY_S = 60  # [docs] the API refuses an expiration less than 60 s ahead (spec 9)
MIN_TAKER_U6 = 1_000_000  # [docs] $1 minimum value of an order that takes liquidity (spec 9)
FORGET_S = 3600.0  # closed paper orders are kept this long after their market's end


@dataclass
class PaperOrder:
    h: str
    market_id: str
    side: int
    outcome: int
    price: int
    size: int
    expiration: int
    end: float  # the market's end: the exchange pulls its orders then
    seq: int
    ahead: int = 0  # public size ahead of us at our price (queue position)
    filled: int = 0
    status: str = "open"

    @property
    def left(self) -> int:
        return self.size - self.filled


@dataclass
class PaperFill:
    t: float
    order_hash: str
    market_id: str
    side: int
    price: int
    size: int
    taker: bool


class PaperVenue:
    """Our paper orders, positions and USDC, and the fill model. Thread-safe under `lock`
    (the engine calls it; nothing else does while a bot runs, but reads may come from tests).
    Amounts are u6 like the API's. Only the YES book is modelled: spike_bot quotes YES."""

    def __init__(self, usdc: int, allowance: int = MAX_UINT, own_in_book: bool = False) -> None:
        self.lock = threading.Lock()
        # the books we are fed hold the recorded run's own orders (the replay of a live run's
        # recording), which cannot be told apart from others' at the same price: no queue
        # ahead of us then (a trade at our price fills us). Paper books never hold ours.
        self.own_in_book = own_in_book
        self.usdc = usdc
        self.allowance = allowance
        self.orders: dict[str, PaperOrder] = {}
        self.pos: dict[str, list[int]] = {}  # market id -> [YES, NO] shares
        self.books: dict[str, Book] = {}  # the latest public book per market
        # crossing liquidity already taken per (market, side of the resting level, price):
        # a level that stays on the book across snapshots is not taken twice
        self.used: dict[tuple[str, int, int], int] = {}
        self.fills: list[PaperFill] = []
        self.on_fill: Callable[[PaperFill], None] | None = None
        self._seq = 0

    # -- orders (the API's validation, in the simulator's words) --------------------------------
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
        if side not in (BUY, SELL) or outcome != YES:
            raise ExchangeError("rejected", "paper trading models the YES book only", 400)
        if not MIN_PRICE <= price <= MAX_PRICE:
            raise ExchangeError("rejected", "price must be between 1 and 999999", 400)
        if size <= 0:
            raise ExchangeError("rejected", "size must be positive", 400)
        if now >= market.end:
            raise ExchangeError("rejected", "market is closed", 400)
        if expiration < now + MIN_EXPIRY_S:
            raise ExchangeError(
                "rejected", "expiration must be at least 60 seconds in the future", 400
            )
        mid = market.market_id
        with self.lock:
            self._expire(now)
            book = self.books.get(mid, Book())
            opp = book.asks if side == BUY else book.bids
            crosses = bool(opp) and (opp[0][0] <= price if side == BUY else opp[0][0] >= price)
            if crosses and price * size // PRICE_SCALE < MIN_TAKER_U6:
                raise ExchangeError(
                    "rejected", "order value below the $1 minimum for taker orders", 400
                )
            need = self._needs(mid, side, price, size)
            if need > 0 and self.allowance != MAX_UINT and self.allowance < need:
                raise ExchangeError("rejected", "ERC20: transfer amount exceeds allowance", 400)
            if need > self.usdc:
                raise ExchangeError("rejected", "ERC20: transfer amount exceeds balance", 400)
            self._seq += 1
            h = f"0xpaper{self._seq:010d}"
            level = dict(book.bids if side == BUY else book.asks).get(price, 0)
            o = PaperOrder(
                h, mid, side, outcome, price, size, expiration, market.end, self._seq,
                ahead=0 if self.own_in_book else level,
            )  # fmt: skip
            self.orders[h] = o
            if crosses:
                self._cross(o, book, now, taker=True)
            return h

    def _needs(self, mid: str, side: int, price: int, size: int) -> int:
        """USDC an order needs, as the exchange checks it: a BUY its cost; a SELL the
        collateral for the part not covered by YES shares held (split at 1 USDC a share)."""
        if side == BUY:
            return price * size // PRICE_SCALE
        return max(0, size - self.pos.get(mid, [0, 0])[0])

    def cancel(self, order_hash: str, now: float) -> None:
        with self.lock:
            self._expire(now)
            o = self.orders.get(order_hash.lower())
            if o is None or o.status != "open":
                raise ExchangeError("not_found", "order not found", 404)
            o.status = "cancelled"

    def cancel_market(self, market_id: str, now: float) -> None:
        with self.lock:
            self._expire(now)
            for o in self.orders.values():
                if o.market_id == market_id and o.status == "open":
                    o.status = "cancelled"

    def _expire(self, now: float) -> None:
        """Close what expired or whose market ended; forget closed orders of markets that
        ended over FORGET_S ago (nobody reads them back), so every call stays short."""
        for h, o in list(self.orders.items()):
            if o.status == "open" and (now >= o.expiration or now >= o.end):
                o.status = "expired" if now >= o.expiration else "cancelled"
            if o.status != "open" and now >= o.end + FORGET_S:
                del self.orders[h]

    # -- reads -----------------------------------------------------------------------------------
    def order_rows(self, market_id: str | None, status: str | None, now: float) -> list[OrderInfo]:
        with self.lock:
            self._expire(now)
            return [
                OrderInfo(o.h, o.market_id, o.side, o.outcome, o.price, o.size, o.filled, o.status)
                for o in self.orders.values()
                if (market_id is None or o.market_id.lower() == market_id.lower())
                and (status is None or o.status == status)
            ]

    def position(self, market_id: str) -> tuple[int, int]:
        with self.lock:
            yes, no = self.pos.get(market_id, [0, 0])
            return yes, no

    def balances(self) -> tuple[int, int]:
        with self.lock:
            return self.usdc, self.allowance

    # -- the fill model ---------------------------------------------------------------------------
    def _book_fill(self, o: PaperOrder, qty: int, price: int, now: float, taker: bool) -> int:
        """Fill `qty` of `o` at `price` if the paper wallet can pay (else the order fails, as
        a settlement the chain refuses would); returns what filled."""
        p = self.pos.setdefault(o.market_id, [0, 0])
        if o.side == BUY:
            cost = price * qty // PRICE_SCALE
            if cost > self.usdc:
                o.status = "cancelled"
                return 0
            self.usdc -= cost
            p[0] += qty
        else:  # a SELL of YES not held splits collateral: the NO shares stay with us
            short = max(0, qty - p[0])
            if short > self.usdc:
                o.status = "cancelled"
                return 0
            self.usdc += price * qty // PRICE_SCALE - short
            p[0] -= qty - short
            p[1] += short
        o.filled += qty
        if o.filled >= o.size:
            o.status = "filled"
        f = PaperFill(now, o.h, o.market_id, o.side, price, qty, taker)
        self.fills.append(f)
        if self.on_fill is not None:
            self.on_fill(f)
        return qty

    def _cross(self, o: PaperOrder, book: Book, now: float, taker: bool) -> None:
        """Take the opposite levels that reach `o`'s price, each level's size once."""
        levels = book.asks if o.side == BUY else book.bids
        for px, size in levels:
            if o.status != "open" or (px > o.price if o.side == BUY else px < o.price):
                break
            key = (o.market_id, 1 - o.side, px)
            q = min(size - self.used.get(key, 0), o.left)
            if q > 0:
                q = self._book_fill(o, q, o.price if not taker else px, now, taker)
                self.used[key] = self.used.get(key, 0) + q

    def _open(self, market_id: str, side: int) -> list[PaperOrder]:
        mine = [
            o
            for o in self.orders.values()
            if o.market_id == market_id and o.status == "open" and o.side == side
        ]
        return sorted(mine, key=lambda o: (-o.price if side == BUY else o.price, o.seq))

    def on_book(self, market_id: str, book: Book, now: float) -> None:
        with self.lock:
            self._expire(now)
            self.books[market_id] = book
            for side, levels in ((SELL, book.asks), (BUY, book.bids)):
                present = {p for p, _ in levels}
                for k in [k for k in self.used if k[0] == market_id and k[1] == side]:
                    if k[2] not in present:
                        del self.used[k]  # the level is gone: a new one there is new size
            for side in (BUY, SELL):
                own = dict(book.bids if side == BUY else book.asks)
                for o in self._open(market_id, side):
                    # the level shrank: what was ahead of us left or traded
                    o.ahead = min(o.ahead, own.get(o.price, 0))
                    self._cross(o, book, now, taker=False)

    def on_trade(self, market_id: str, price: int, size: int, now: float) -> None:
        """A public trade: it reaches the bids at or above its price and the asks at or
        below; the size ahead of us at our price trades first."""
        with self.lock:
            self._expire(now)
            for side in (BUY, SELL):
                left = size
                for o in self._open(market_id, side):
                    if left <= 0:
                        break
                    through = price < o.price if side == BUY else price > o.price
                    if not through and price != o.price:
                        continue
                    if not through:
                        skip = min(left, o.ahead)
                        o.ahead -= skip
                        left -= skip
                    q = min(left, o.left)
                    if q > 0:
                        left -= self._book_fill(o, q, o.price, now, taker=False)

    def settle(self, market_id: str, yes_won: bool) -> int:
        """Pay the winning shares of a resolved market (1 USDC each); returns the payout."""
        with self.lock:
            yes, no = self.pos.pop(market_id, [0, 0])
            paid = yes if yes_won else no
            self.usdc += paid
            return paid

    # -- persistence: the paper wallet survives a restart as a live wallet would ----------------
    def save(self, path: str) -> None:
        with self.lock:
            data = {"usdc": self.usdc, "positions": {k: v for k, v in self.pos.items() if any(v)}}
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)

    def load(self, path: str) -> bool:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            usdc = int(data["usdc"])
            pos = {str(k): [int(v[0]), int(v[1])] for k, v in data["positions"].items()}
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise ExchangeError("invalid", f"paper wallet {path}: {type(e).__name__}") from None
        with self.lock:
            self.usdc, self.pos = usdc, pos
        return True


class PaperStream:
    """Wraps the live stream: books and trades are held until the engine's next step and
    then go to the venue (fills) and the engine's handler, in arrival order. Status, market
    hints and cancels pass straight through. A paper fill reaches the engine as a trade of
    ours, as a real fill does on the live stream (flagged `paper`: never recorded)."""

    def __init__(
        self,
        inner: Any,
        venue: PaperVenue,
        now: Callable[[], float],
        after_fills: Callable[[], None] | None = None,
    ) -> None:
        self.inner = inner
        self.venue = venue
        self.now = now
        self.after_fills = after_fills  # e.g. save the paper wallet
        self.handler: StreamHandler | None = None
        self._lock = threading.Lock()
        self._held: list[tuple[str, str, Any]] = []
        venue.on_fill = self._notify

    @property
    def connected(self) -> bool:
        return bool(self.inner.connected)

    def start(self, handler: StreamHandler) -> None:
        self.handler = handler
        self.inner.start(self)

    def subscribe(self, market_id: str) -> None:
        self.inner.subscribe(market_id)

    def unsubscribe(self, market_id: str) -> None:
        self.inner.unsubscribe(market_id)

    def reconnect(self, reason: str) -> None:
        self.inner.reconnect(reason)

    def stop(self) -> None:
        self.inner.stop()

    # -- StreamHandler for the inner stream (its thread) ----------------------------------------
    def _hold(self, kind: str, market_id: str, data: Any) -> None:
        with self._lock:
            self._held.append((kind, market_id, data))
        feed = getattr(self.handler, "feed", None)
        if feed is not None:
            feed.wake.set()  # the engine steps now, as a live book change would wake it

    def on_book(self, market_id: str, book: Book) -> None:
        self._hold("book", market_id, book)

    def on_trade(self, market_id: str, trade: dict[str, Any]) -> None:
        self._hold("trade", market_id, trade)

    def on_market(self, qm: dict[str, Any]) -> None:
        if self.handler is not None:
            self.handler.on_market(qm)

    def on_order_cancelled(self, market_id: str, data: dict[str, Any]) -> None:
        return None  # the live stream's cancels are other traders': ours are paper

    def on_status(self, connected: bool, reason: str = "") -> None:
        if self.handler is not None:
            self.handler.on_status(connected, reason)

    def on_bad_frame(self, why: str) -> None:
        if self.handler is not None:
            self.handler.on_bad_frame(why)

    def on_rejected(self, e: ExchangeError) -> None:
        if self.handler is not None:
            self.handler.on_rejected(e)

    # -- the engine's side ------------------------------------------------------------------------
    def pump(self) -> None:
        """Engine thread, first thing in a step: deliver what arrived since the last step."""
        with self._lock:
            held, self._held = self._held, []
        h = self.handler
        before = len(self.venue.fills)
        for kind, mid, data in held:
            now = self.now()
            if kind == "book":
                self.venue.on_book(mid, data, now)
                if h is not None:
                    h.on_book(mid, data)
            else:
                with contextlib.suppress(TypeError, ValueError):
                    self.venue.on_trade(
                        mid, int(data.get("price", 0)), int(data.get("size", 0)), now
                    )
                if h is not None:
                    h.on_trade(mid, data)
        if len(self.venue.fills) != before and self.after_fills is not None:
            self.after_fills()

    def _notify(self, f: PaperFill) -> None:
        if self.handler is not None:
            buyer, seller = (PAPER_ADDRESS, "") if f.side == BUY else ("", PAPER_ADDRESS)
            self.handler.on_trade(
                f.market_id,
                {"buyer": buyer, "seller": seller, "price": f.price, "size": f.size, "paper": True},
            )


def wallet_path(state_file: str) -> str:
    """The paper wallet beside the state file: spike_state.paper.json -> ...wallet.json."""
    return state_file.removesuffix(".json") + ".wallet.json"


class PaperExchange:
    """spike_bot's Exchange interface: reads from `inner` (a read-only live adapter), orders
    on a PaperVenue. Nothing is ever signed or sent for our orders."""

    address = PAPER_ADDRESS

    def __init__(
        self,
        inner: Any,
        cfg: Config,
        now: Callable[[], float],
        wallet_file: str | None = None,
    ) -> None:
        """`wallet_file`: where the paper wallet persists (None: beside the state file; "":
        nowhere)."""
        self.inner = inner
        self.cfg = cfg
        self.now = now
        self.policy = inner.policy
        self.gate = inner.gate  # the firewall holds for paper orders too
        self.venue = PaperVenue(round(cfg.paper_usdc * SIZE_SCALE))
        self.wallet_file = wallet_path(cfg.state_file) if wallet_file is None else wallet_file
        if self.wallet_file:
            self.venue.load(self.wallet_file)  # a restart keeps the paper wallet's USDC and shares
        self.recorder: Recorder | None = None  # resolutions go into --record too
        self._stream: PaperStream | None = None

    # live reads
    def quick_market(self, key: MarketKey) -> QuickMarket:
        return self.inner.quick_market(key)

    def asset_price(self, asset: str) -> float | None:
        return self.inner.asset_price(asset)

    def orderbook(self, market_id: str, now: float) -> Book:
        return self.inner.orderbook(market_id, now)

    def stream(self) -> PaperStream:
        if self._stream is None:
            self._stream = PaperStream(self.inner.stream(), self.venue, self.now, self.save)
        return self._stream

    # the paper wallet: approved, never failing at settlement
    def prepare(self, now: float) -> dict[str, str]:
        return {}

    def approve_ctf(self, now: float) -> str:
        return "paper"

    def balances(self) -> tuple[int, int]:
        return self.venue.balances()

    def failed_trades(self) -> list[FailedFill]:
        return []

    def position(self, market: QuickMarket) -> tuple[int, int]:
        return self.venue.position(market.market_id)

    def orders(
        self, market_id: str | None, status: str | None, urgent: bool = True
    ) -> list[OrderInfo]:
        return self.venue.order_rows(market_id, status, self.now())

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
        return self.venue.place(market, side, outcome, price, size, expiration, now)

    def cancel(self, order_hash: str, market_id: str, side: int) -> None:
        self.venue.cancel(order_hash, self.now())

    def cancel_market(self, market_id: str) -> None:
        self.venue.cancel_market(market_id, self.now())

    def claim(self, markets: list[tuple[str, str]], now: float) -> list[ClaimResult]:
        """Paper redemption on the market's real outcome (GET /resolution)."""
        out = []
        for mid, contract in markets:
            yes_won = self.inner.resolution(mid)
            if yes_won is None:
                out.append(ClaimResult(mid, contract, "pending"))
                continue
            if self.recorder is not None:
                self.recorder.write("resolution", {"m": mid, "yes": yes_won})
            paid = self.venue.settle(mid, yes_won)
            out.append(
                ClaimResult(mid, contract, "claimed" if paid else "lost", paid, "paper", yes_won)
            )
        if any(r.status != "pending" for r in out):
            self.save()  # the wallet changed
        return out

    def save(self) -> None:
        if self.wallet_file:
            with contextlib.suppress(OSError):
                self.venue.save(self.wallet_file)


# =============================================================================================
# REPLAY: the unchanged engine over a recording, its orders on the same paper venue and fill
#    model as --paper (spike_tools' `replay` subcommand and report call it)
# =============================================================================================
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
    """The driver pushes recorded messages into the handler the engine registered (the paper
    venue's PaperStream, which holds them for the engine's next step)."""

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

    def reconnect(self, reason: str) -> None:
        return None  # a recording has no socket

    def pump(self) -> None:
        return None

    def stop(self) -> None:
        return None


class RecordedPriceStream:
    """Stands in for the price-stream thread in a replay: the driver delivers the recorded
    updates (`price` records with `"s": "pyth"`) at their receive times."""

    connected = True
    reason = ""

    def stop(self) -> None:
        return None


class ReplayExchange(PaperExchange):
    """The Exchange interface over a recording: recorded reads (quick markets, prices, REST
    books, resolutions), and our orders on the same PaperVenue and fill model as --paper."""

    def __init__(self, cfg: Config, clock: ReplayClock) -> None:
        self.markets: list[QuickMarket] = []
        # the engine's own reads: asset -> (time, price, step), market -> (time, book, step);
        # `step` = the number of step marks before the read (the step that made it)
        self.prices: dict[str, list[tuple[float, float, int]]] = {}
        self.rest_books: dict[str, list[tuple[float, Book, int]]] = {}
        self.marks = False  # the recording marks steps: reads are matched by step, not time
        self.step_no = 0  # step marks delivered so far
        self.resolutions: dict[str, bool] = {}  # market id -> YES won (paper recordings)
        self.replay_stream = ReplayStream()
        self.clock = clock
        self.policy = CallPolicy(cfg)
        self.gate = OrderGate(cfg, None)
        super().__init__(self, cfg, clock.now, wallet_file="")
        self.venue.own_in_book = True  # a recording without a start mark: a live run's

    # recorded inputs (PaperExchange reads them from `inner`: itself)
    def quick_market(self, key: MarketKey) -> QuickMarket:
        now = self.clock.now()
        series = [
            m
            for m in self.markets
            if m.asset.upper() == key.asset and m.end - m.start == key.interval * 60
        ]
        live = [m for m in series if m.start <= now] or series[:1]
        if not live:
            raise ExchangeError("not_found", f"the recording holds no {key} market")
        return live[-1]

    def asset_price(self, asset: str) -> float | None:
        now = self.clock.now()
        past = [p for t, p, k in self.prices.get(asset, []) if self._due(t, k, now)]
        return past[-1] if past else None

    def orderbook(self, market_id: str, now: float) -> Book:
        rest = self.rest_books.get(market_id, [])
        if rest and self._due(rest[0][0], rest[0][2], now):  # what the engine read then
            b = rest.pop(0)[1]
        else:
            b = self.venue.books.get(market_id, Book())  # the latest the engine was given
        return Book(b.bids, b.asks, now)

    def _due(self, t: float, step: int, now: float) -> bool:
        """Whether a recorded read is visible now. With step marks, a read made during a step
        is what that step read (the live clock had moved on a little by then)."""
        return step <= self.step_no if self.marks else t <= now

    def stream(self) -> PaperStream:
        if self._stream is None:
            self._stream = PaperStream(self.replay_stream, self.venue, self.clock.now)
        return self._stream

    def resolution(self, market_id: str) -> bool | None:
        """The recorded outcome (a paper recording); else the last recorded price at the end
        against the strike, 30 s after the end."""
        if market_id in self.resolutions:
            return self.resolutions[market_id]
        m = next((x for x in self.markets if x.market_id == market_id), None)
        if m is None or self.clock.now() < m.end + 30:
            return None
        px = [p for t, p, _ in self.prices.get(m.asset.upper(), []) if t <= m.end]
        return px[-1] > m.strike if px else None


RECORD_KINDS = frozenset({"book", "trade", "price", "market", "step", "resolution", "start"})


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
                    if r["k"] in RECORD_KINDS:
                        recs.append(r)
                except (ValueError, KeyError, TypeError):
                    continue
    recs.sort(key=lambda r: float(r["r"]))
    return recs


def recording_markets(recs: list[dict[str, Any]]) -> list[str]:
    """The series (BTC:15, ...) of the quick markets in a recording, in order of appearance."""
    out: dict[str, None] = {}
    for r in recs:
        if r["k"] == "market":
            d = r["d"]
            with contextlib.suppress(KeyError, TypeError, ValueError):
                out[f"{str(d['asset']).upper()}:{(int(d['end']) - int(d['start'])) // 60}"] = None
    return list(out)


def replay(recs: list[dict[str, Any]], cfg: Config, log_path: str) -> None:
    """Run the engine over a recording: the driver sets the clock to each recorded receive
    time and feeds the message through the same stream path as live. A recording with step
    marks (every recording since paper trading) steps the engine exactly where it stepped;
    an older one steps on the tick and whenever the handler asks to be woken."""
    if not recs:
        raise ConfigError("the recording is empty")
    streamed = False
    clock = ReplayClock(float(recs[0]["r"]))
    ex = ReplayExchange(cfg, clock)
    step = 0
    for r in recs:
        d = r["d"]
        if r["k"] == "step":
            step += 1
        elif r["k"] == "market":
            ex.markets.append(QuickMarket(**d))
        elif r["k"] == "price":  # {"a": asset, "p": price}; a bare number: the first asset
            d = d if isinstance(d, dict) else {"a": "", "p": d}
            if d.get("s") == "pyth":
                streamed = True  # a streamed update: delivered in order, below
                continue
            ex.prices.setdefault(str(d["a"]).upper(), []).append(
                (float(r["r"]), float(d["p"]), step)
            )
        elif r["k"] == "book" and d.get("rest"):
            book = Book(tuple(map(tuple, d["b"])), tuple(map(tuple, d["a"])), float(r["r"]))
            ex.rest_books.setdefault(d["m"], []).append((float(r["r"]), book, step))
        elif r["k"] == "resolution":
            ex.resolutions[str(d["m"])] = bool(d["yes"])
        elif r["k"] == "start" and isinstance(d, dict):
            # a live run's books hold its own orders; a paper run's never do
            ex.venue.own_in_book = d.get("mode") != "paper"
    ex.marks = step > 0
    if not ex.markets:
        raise ConfigError("the recording holds no quick market")
    if "" in ex.prices:
        ex.prices.setdefault(ex.markets[0].asset.upper(), []).extend(ex.prices.pop(""))
    ex.markets.sort(key=lambda m: m.start)
    metrics = Metrics(cfg.bot_name)
    log = EventLog(log_path, cfg.bot_name)
    # never a connection to Hermes from a replay: the recording's streamed prices stand in
    recorded = streamed and cfg.price_source != "turbine"
    bot = Bot(
        cfg if recorded else dataclasses.replace(cfg, price_source="turbine"),
        ex,
        clock,
        log,
        metrics,
        mode="replay",
        price_stream=RecordedPriceStream() if recorded else None,
    )
    with contextlib.suppress(OSError):
        os.unlink(cfg.state_file)
    bot.startup()
    handler = ex.replay_stream.handler
    assert handler is not None
    marks = ex.marks
    next_tick = clock.t
    for r in recs:
        t = float(r["r"])
        while not marks and next_tick <= t:
            clock.t = next_tick
            bot.step()
            next_tick += cfg.tick_s
        clock.t = t
        d = r["d"]
        if r["k"] == "step":
            ex.step_no += 1
            bot.step()
        elif r["k"] == "book" and not d.get("rest"):
            book = Book(tuple(map(tuple, d["b"])), tuple(map(tuple, d["a"])), t)
            handler.on_book(d["m"], book)
        elif r["k"] == "trade":
            handler.on_trade(str(d.get("marketId", "")), d)
        elif r["k"] == "price" and isinstance(d, dict) and d.get("s") == "pyth":
            bot.prices.on_stream_price(str(d["a"]).upper(), float(d["p"]), float(d["t"]))
        if not marks and bot.feed.wake.is_set():
            bot.feed.wake.clear()
            bot.step()
    # let the last market resolve and be claimed
    for _ in range(int((cfg.claim_s + 60) / cfg.tick_s) + 1):
        clock.t += cfg.tick_s
        bot.step()
    bot.shutdown()
    log.close()
