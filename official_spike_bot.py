#!/usr/bin/env python3
"""official_spike_bot: spike_bot's engine on the official SDK, for the side-by-side run.

    python official_spike_bot.py --sim --speed 60
    python official_spike_bot.py            # live, same .env settings as spike_bot

Only the exchange layer differs. The strategy, the loop, the logs (same schema, `bot` field
"official_spike_bot"), the metrics (same names, `bot` label) and the settings are spike_bot's;
this file is the second implementation of spike_bot's `Exchange` interface plus a main.

Every exchange call goes through turbine-py-client (PyPI 0.1.0, pinned): quick market, market
(settlement and contract address), order book, order creation and EIP-712 signing
(`TurbineClient.create_order`), posting, cancelling, cancel-by-market, orders, positions, and
the WebSocket stream (`TurbineWSClient`, asyncio, in its own thread, feeding spike_bot's shared
book). Retries, pacing, error classes and the stale-feed firewall are spike_bot's CallPolicy and
OrderGate, wrapped around the SDK's calls, so both bots are held to the same rules.

What the PyPI SDK lacks, and this bot therefore does with spike_bot's own implementation:
  * API-key registration (`POST /api/v1/api-keys`): spike_bot's run_cli registers and saves it.
  * The asset price (`/quick-markets/{asset}/price`) for the model fair value.
  * USDC permits: the per-order `permitSignature` is signed by spike_bot's Signer and posted with
    the SDK's own HTTP client (the SDK's SignedOrder.to_dict() has no permit field); the permit
    nonce read and the one-time max permit (`/relayer/usdc-permit`) are spike_bot's.
  * Claims: claim-data and the signed CTF redemption (0.1.0's request_ctf_redemption posts
    `{marketId, amount}`, which is not the relayer's signed body).
  * The quick market's `interval` parameter (0.1.0's get_quick_market sends none): intervals
    other than 15 minutes are read with the SDK's HTTP client and the interval parameter.
  * Multi-message frames: the SDK's stream parser runs json.loads on a whole frame, which fails
    on the newline-separated frames the spec allows; frames are split into lines first and each
    line goes through the SDK's own parser (WSStream._parse_message).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import spike_bot as sb

BOT = "official_spike_bot"


def _translate(fn: Callable[[], Any]) -> Any:
    """Run an SDK call; SDK exceptions become spike_bot's ExchangeError classes."""
    from turbine_client.exceptions import TurbineApiError, TurbineError

    try:
        return fn()
    except TurbineApiError as e:
        if e.status_code:
            raise sb.ExchangeError(
                sb.classify(e.status_code), str(e.message)[:200], e.status_code
            ) from None
        raise sb.ExchangeError("network", str(e.message)[:200]) from None
    except TurbineError as e:
        raise sb.ExchangeError("invalid", str(e)[:200]) from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # its parsers, bad answer
        raise sb.ExchangeError("invalid", f"{type(e).__name__}: {e}"[:200]) from None


def _refuse_redirect(response: Any) -> None:
    """httpx response hook: a 3xx is a failing reply, raised as the SDK's own error class."""
    from turbine_client.exceptions import TurbineApiError

    if 300 <= response.status_code < 400:
        msg = sb.redirect_message(response.status_code, response.headers)
        raise TurbineApiError(message=msg, status_code=response.status_code)


def sdk_book(ob: Any, now: float, endpoint: str = "orderbook") -> sb.Book:
    """The SDK's OrderBookSnapshot as spike_bot's Book, through spike_bot's checks."""
    return sb.parse_book(
        {
            "bids": [{"price": x.price, "size": x.size} for x in ob.bids],
            "asks": [{"price": x.price, "size": x.size} for x in ob.asks],
        },
        now,
        endpoint,
    )


class OfficialExchange:
    """spike_bot's Exchange interface on turbine_client.TurbineClient."""

    def __init__(
        self,
        cfg: sb.Config,
        key: str | None,
        kid: str | None,
        secret: str | None,
        metrics: sb.Metrics,
    ) -> None:
        from turbine_client import TurbineClient

        self.cfg = cfg
        self.client = TurbineClient(
            cfg.host,
            cfg.chain_id,
            private_key=key,
            api_key_id=kid,
            api_private_key=secret,
            timeout=cfg.http_timeout_s,
        )
        # httpx follows no redirect, but the SDK then reads the 3xx body as a success: a
        # redirect is refused here, before the SDK parses it (spike_bot.classify: invalid)
        self.client._http._client.event_hooks["response"].append(_refuse_redirect)
        # spike_bot's adapter, for what the SDK lacks; it shares this adapter's policy and gate
        self.own = sb.spike_exchange(cfg, key, kid, secret, metrics)
        self.policy = self.own.policy
        self.gate = self.own.gate
        self.address = self.client.address or ""
        self._market: dict[str, tuple[str, str]] = {}  # market id -> (contract, settlement)
        self._stream: OfficialStream | None = None

    def _sdk(self, endpoint: str, fn: Callable[[], Any], retries: int | None = None) -> Any:
        return self.policy.call(endpoint, lambda: _translate(fn), retries)

    # -- reads ----------------------------------------------------------------------------------
    def quick_market(self, key: sb.MarketKey) -> sb.QuickMarket:
        from turbine_client.constants import ENDPOINTS
        from turbine_client.types import QuickMarket

        asset, iv = key.asset, key.interval
        if iv == 15:
            q = self._sdk("quick_market", lambda: self.client.get_quick_market(asset))
        else:
            path = ENDPOINTS["quick_market"].format(asset=asset)
            d = self._sdk(
                "quick_market", lambda: self.client._http.get(path, params={"interval": iv})
            )
            q = QuickMarket.from_dict(d.get("quickMarket", d))
        if q.market_id not in self._market:
            m = self._sdk("market", lambda: self.client.get_market(q.market_id), retries=1)
            settlement = m.settlement_address or sb.CHAINS[self.cfg.chain_id]["settlement"]
            sb.remember(self._market, q.market_id, (m.contract_address, settlement))
        contract, settlement = self._market[q.market_id]
        # startPrice is USD x 1e6 per the spec (the SDK's comment says 8 decimals: spec wins)
        return sb.QuickMarket(
            market_id=q.market_id,
            contract=contract,
            asset=q.asset,
            strike=q.start_price / 1e6,
            start=q.end_time - iv * 60,
            end=q.end_time,
            resolved=q.resolved,
            settlement=settlement,
        )

    def asset_price(self, asset: str) -> float | None:
        return self.own.asset_price(asset)  # not in the PyPI SDK

    def balances(self) -> tuple[int, int]:
        return self.own.balances()  # not in the PyPI SDK

    def failed_trades(self) -> list[sb.FailedFill]:
        return self.own.failed_trades()  # not in the PyPI SDK

    def resolution(self, market_id: str) -> bool | None:
        return self.own.resolution(market_id)  # not in the PyPI SDK (paper payouts)

    def orderbook(self, market_id: str, now: float) -> sb.Book:
        # the SDK's reply through spike_bot's checks, inside the call: a bad book is a failure
        return self._sdk("orderbook", lambda: sdk_book(self.client.get_orderbook(market_id), now))

    def orders(
        self, market_id: str | None, status: str | None, urgent: bool = True
    ) -> list[sb.OrderInfo]:
        endpoint = "orders" if urgent else "orders_sync"

        def read() -> list[sb.OrderInfo]:
            rows = self.client.get_orders(trader=self.address, market_id=market_id, status=status)
            got = [
                sb.OrderInfo(
                    o.order_hash.lower(),
                    o.market_id,
                    o.side,
                    o.outcome,
                    o.price,
                    o.size,
                    o.filled_size,
                    o.status,
                    (o.trader or "").lower(),
                )
                for o in rows
            ]
            return sb.check_order_rows(got, self.address, market_id, endpoint)  # spike's checks

        return self._sdk(endpoint, read)

    def position(self, market: sb.QuickMarket) -> tuple[int, int]:
        ref = market.contract or market.market_id

        def read() -> tuple[int, int]:
            rows = self.client.get_positions(ref, self.address)
            got = [(p.market_id, p.user_address, p.yes_shares, p.no_shares) for p in rows]
            return sb.check_position_rows(got, market.market_id, self.address)

        return self._sdk("positions", read)

    # -- writes ---------------------------------------------------------------------------------
    def prepare(self, now: float) -> dict[str, str]:
        return self.own.prepare(now)  # the one-time max permit: not in the PyPI SDK

    def approve_ctf(self, now: float) -> str:
        # 0.1.0's request_ctf_approval posts another body and signs nothing: spike_bot's code
        return self.own.approve_ctf(now)

    def place(
        self,
        market: sb.QuickMarket,
        side: int,
        outcome: int,
        price: int,
        size: int,
        expiration: int,
        now: float,
    ) -> str:
        from turbine_client.constants import ENDPOINTS
        from turbine_client.types import OrderArgs, Outcome, Side

        self.gate.check(market.market_id)
        args = OrderArgs(
            market_id=market.market_id,
            side=Side(side),
            outcome=Outcome(outcome),
            price=price,
            size=size,
            expiration=expiration,
            nonce=sb.new_nonce(now),
        )
        so = _translate(
            lambda: self.client.create_order(
                args,
                settlement_address=(
                    market.settlement or sb.CHAINS[self.cfg.chain_id]["settlement"]
                ),
            )
        )
        permit = self.gate.permit_for(side, price, size, now, self.own._permit_nonce)
        body = {**so.to_dict(), "permitSignature": permit} if permit else None

        def post() -> Any:
            if body is None:
                return self._sdk("place", lambda: self.client.post_order(so))
            return self._sdk(
                "place",
                lambda: self.client._http.post(ENDPOINTS["orders"], data=body, authenticated=True),
            )

        return self.gate.submit(post, permit, so.order_hash)

    def cancel(self, order_hash: str, market_id: str, side: int) -> None:
        from turbine_client.types import Side

        self._sdk("cancel", lambda: self.client.cancel_order(order_hash, market_id, Side(side)))

    def cancel_market(self, market_id: str) -> None:
        self._sdk("cancel_market", lambda: self.client.cancel_market_orders(market_id))

    def claim(self, markets: list[tuple[str, str]], now: float) -> list[sb.ClaimResult]:
        return self.own.claim(markets, now)  # claim-data and signed redemption: not in 0.1.0

    def stream(self) -> OfficialStream:
        if self._stream is None:
            self._stream = OfficialStream(self.cfg)
        return self._stream


class OfficialStream:
    """The book feed on the SDK's asyncio TurbineWSClient, in its own thread and event loop.
    Same duties as spike_bot's TurbineStream: reconnect with backoff, resubscribe, ping when
    quiet and reconnect when no frame and no pong came for `ws_silence_s`, and report to the
    same handler."""

    live = True  # delivers from its own thread as frames arrive

    def __init__(self, cfg: sb.Config) -> None:
        self.cfg = cfg
        self._subs: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws: Any = None  # the SDK's WSStream while connected
        self._thread: threading.Thread | None = None
        self._connected = False
        self._reconnect = ""  # set by the engine: drop the socket and resubscribe

    @property
    def connected(self) -> bool:
        return self._connected

    def reconnect(self, reason: str) -> None:
        self._reconnect = reason

    def start(self, handler: sb.StreamHandler) -> None:
        self._thread = threading.Thread(
            target=self._main, args=(handler,), daemon=True, name="book-feed-sdk"
        )
        self._thread.start()

    def _main(self, handler: sb.StreamHandler) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._run(handler))
        finally:
            self._loop.close()

    def _call(self, coro_fn: Callable[[Any], Any]) -> None:
        with self._lock:
            ws, loop = self._ws, self._loop
        if ws is not None and loop is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(coro_fn(ws), loop)
            fut.add_done_callback(lambda f: f.exception())  # a dead socket: reader reconnects

    def subscribe(self, market_id: str) -> None:
        with self._lock:
            self._subs.add(market_id)
        self._call(lambda ws: ws.subscribe_orderbook(market_id))

    def unsubscribe(self, market_id: str) -> None:
        with self._lock:
            self._subs.discard(market_id)
        self._call(lambda ws: ws.unsubscribe(market_id, channel="orderbook"))

    def pump(self) -> None:
        return None  # delivered on the stream thread as each message arrives

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    async def _run(self, handler: sb.StreamHandler) -> None:
        from turbine_client import TurbineWSClient

        client = TurbineWSClient(self.cfg.host, reconnect=False)
        backoff = 0.25
        while not self._stop.is_set():
            reason = ""
            try:
                async with client.connect() as ws:
                    with self._lock:
                        self._ws = ws
                        subs = list(self._subs)
                    for mid in subs:
                        await ws.subscribe_orderbook(mid)
                    self._connected = True
                    handler.on_status(True)
                    backoff = 0.25
                    await self._read(ws, handler)
            except Exception as e:  # noqa: BLE001 -- any failure: reconnect, never die
                reason = f"{type(e).__name__}: {str(e)[:80]}"
            finally:
                with self._lock:
                    self._ws = None
                if self._connected:
                    self._connected = False
                    handler.on_status(False, reason)
            if self._stop.is_set():
                break
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 10.0)

    async def _read(self, ws: Any, handler: sb.StreamHandler) -> None:
        last = time.monotonic()
        self._reconnect = ""
        while not self._stop.is_set():
            if self._reconnect:
                raise ConnectionError(f"reconnect: {self._reconnect}")
            try:
                raw = await asyncio.wait_for(ws._connection.recv(), timeout=0.25)
            except TimeoutError:
                if time.monotonic() - last > self.cfg.ws_silence_s / 4:
                    # quiet is not dead (spec 5.1): a pong proves the socket
                    waiter = await ws._connection.ping()
                    try:
                        await asyncio.wait_for(waiter, timeout=self.cfg.ws_silence_s)
                    except TimeoutError:
                        raise ConnectionError("stream silent: no frame, no pong") from None
                    last = time.monotonic()
                continue
            last = time.monotonic()
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8", "replace")
            for line in raw.split("\n"):
                if line.strip():
                    self._dispatch(ws, line, handler)

    @staticmethod
    def _dispatch(ws: Any, line: str, handler: sb.StreamHandler) -> None:
        """One message through the SDK's parser, then into spike_bot's handler."""
        try:
            msg = ws._parse_message(line)
            data = msg.data if isinstance(msg.data, dict) else None
            if msg.type == "orderbook":
                ob = msg.orderbook
                if ob is None or not msg.market_id:
                    raise ValueError("orderbook without marketId or data")
                book = sdk_book(ob, 0.0, "stream")
                handler.on_book(msg.market_id, book)
            elif msg.type == "trade":
                t = msg.trade
                if t is None:
                    raise ValueError("trade without data")
                handler.on_trade(
                    msg.market_id or t.market_id, {**dataclasses.asdict(t), **(data or {})}
                )
            elif msg.type == "quick_market":
                if data is None:
                    raise ValueError("quick_market without data")
                handler.on_market(data)
            elif msg.type == "order_cancelled":
                handler.on_order_cancelled(msg.market_id or "", data or {})
            elif not msg.type:
                raise ValueError("message without type")
        except sb.ReplyRejected as e:  # parsed, but cannot be true (a crossed book)
            handler.on_rejected(e)
        except Exception as e:  # noqa: BLE001 -- the SDK raises its own types on bad input
            handler.on_bad_frame(f"{type(e).__name__}: {str(e)[:80]}")


def official_exchange(
    cfg: sb.Config, key: str | None, kid: str | None, secret: str | None, metrics: sb.Metrics
) -> OfficialExchange:
    return OfficialExchange(cfg, key, kid, secret, metrics)


DEFAULTS = sb.Config(
    bot_name=BOT, log_file="official_spike_bot.log", state_file="official_spike_state.json"
)


def main(argv: list[str] | None = None) -> int:
    with contextlib.suppress(ImportError):
        import turbine_client  # noqa: F401 -- fail early and clearly if the SDK is missing
    if "turbine_client" not in sys.modules:
        print(
            f"{BOT}: config error: turbine-py-client is not installed "
            "(pip install -r requirements.txt)",
            file=sys.stderr,
        )
        return 2
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("preflight", "report"):
        import spike_tools  # not the bot: loaded only for these subcommands

        if args[0] == "report":
            return spike_tools.report_cli(args[1:])
        return spike_tools.preflight_cli(args[1:], DEFAULTS, official_exchange)  # SDK canary
    return sb.run_cli(args, official_exchange, DEFAULTS)


if __name__ == "__main__":
    raise SystemExit(main())
