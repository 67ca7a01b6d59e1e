#!/usr/bin/env python3
"""Simulator speed: order posts per second (signature and bearer checks on), stream fan-out to
10 subscribers, and a simulated 24 hours with participants at full speed.

Each figure is also given against a baseline measured in the same run on the same machine:
posts against a trivial GET /health with the same load generator, so noise cancels out.

    python bench/bench_sim.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import pathlib
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from coincurve import PrivateKey
from eth_account import Account

import turbine_sim as ts

SETTLEMENT = ts.CHAINS[137]["settlement"]


def _bearer(kid: str, secret: str) -> str:
    import base64
    import secrets

    from nacl.signing import SigningKey

    payload = json.dumps(
        {"kid": kid, "ts": int(time.time()), "n": secrets.token_hex(16)},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    sig = SigningKey(bytes.fromhex(secret)[:32]).sign(payload).signature

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    return f"Bearer {b64(payload)}.{b64(sig)}"


def _signed_orders(key: str, market_id: str, n: int, now: int) -> list[dict[str, Any]]:
    acct = Account.from_key(key)
    pk = PrivateKey(bytes.fromhex(key[2:]))
    ds = ts.domain_separator("Turbine", "1", 137, SETTLEMENT)
    out = []
    for i in range(n):
        o = {
            "marketId": market_id,
            "trader": acct.address,
            "side": 0,
            "outcome": 0,
            "price": 1_000 + (i % 500) * 100,  # far below the market: orders rest
            "size": 1_000_000,
            "nonce": i + 1,
            "expiration": now + 3600,
            "makerFeeRecipient": ts.ZERO_ADDRESS,
        }
        sig = pk.sign_recoverable(ts.eip712_digest(ds, ts.order_struct_hash(o)), hasher=None)
        out.append({"order": o, "signature": "0x" + sig[:64].hex() + f"{sig[64] + 27:02x}"})
    return out


def _load(url: str, method: str, bodies: list[Any], headers: list[str], conc: int, q: Any) -> None:
    """Child process: send every request with `conc` in flight; report (seconds, non-2xx)."""
    import aiohttp

    async def run() -> tuple[float, int]:
        bad = 0
        it = iter(range(len(bodies)))
        async with aiohttp.ClientSession() as s:

            async def worker() -> None:
                nonlocal bad
                for i in it:
                    h = {"Authorization": headers[i]} if headers else {}
                    async with s.request(method, url, json=bodies[i], headers=h) as r:
                        await r.read()
                        bad += r.status >= 300

            t = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(conc)))
            return time.perf_counter() - t, bad

    q.put(asyncio.run(run()))


def _run_load(
    url: str, method: str, bodies: list[Any], headers: list[str], conc: int = 16
) -> tuple[float, int]:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_load, args=(url, method, bodies, headers, conc, q))
    p.start()
    res = q.get(timeout=600)
    p.join()
    return res


def bench_posts(n: int) -> dict[str, float]:
    sim = ts.start_sim(ts.SimConfig(manual_clock=True, participants=False))
    try:
        key = "0x" + Account.create().key.hex().removeprefix("0x")
        kid, secret = ts.new_api_credentials_for_tests(sim, key)
        sim.call(
            lambda: sim.app.ex.ledger.allowance.__setitem__(
                Account.from_key(key).address.lower(), ts.MAX_UINT
            )
        )
        sim.mint(Account.from_key(key).address, 10**6)
        mid = sim.state()["markets"]["BTC:15"]["marketId"]
        bodies = _signed_orders(key, mid, n, int(sim.clock.now()))
        # tokens are made before timing (the client's cost, not the server's)
        hdrs = [_bearer(kid, secret) for _ in range(n)]
        base_s, _ = _run_load(sim.base_url + "/health", "GET", [None] * n, [])
        post_s, bad = _run_load(sim.base_url + "/api/v1/orders", "POST", bodies, hdrs)
        st = sim.state()
        return {
            "orders": n,
            "order_posts_per_s": n / post_s,
            "health_gets_per_s": n / base_s,
            "post_to_health_ratio": base_s / post_s,
            "rejected": bad,
            "resting_after": len(st["open_orders"]),
        }
    finally:
        sim.stop()


def _readers(ws_url: str, mid: str, n: int, want: int, ready: Any, q: Any) -> None:
    """Child process: n subscribers on one loop; report (seconds to receive `want` each, counts)."""
    import aiohttp

    async def run() -> tuple[float, list[int]]:
        counts = [0] * n
        first: list[float] = []
        async with aiohttp.ClientSession() as s:
            wss = [await s.ws_connect(ws_url) for _ in range(n)]
            for ws in wss:
                await ws.send_str(json.dumps({"type": "subscribe", "marketId": mid}))
            await asyncio.sleep(0.3)

            async def drain(i: int, ws: Any) -> None:
                async for msg in ws:
                    c = msg.data.count('"orderbook"')
                    if c and not first:
                        first.append(time.perf_counter())
                    counts[i] += c
                    if counts[i] >= want:
                        return

            tasks = [asyncio.ensure_future(drain(i, ws)) for i, ws in enumerate(wss)]
            await asyncio.sleep(0.2)
            for i in range(n):
                counts[i] = 0
            first.clear()
            ready.set()
            await asyncio.wait(tasks, timeout=60)
            return time.perf_counter() - (first[0] if first else time.perf_counter()), counts

    q.put(asyncio.run(run()))


def bench_fanout(updates: int, subscribers: int = 10) -> dict[str, float]:
    sim = ts.start_sim(ts.SimConfig(manual_clock=True, participants=False))
    try:
        key = "0x" + Account.create().key.hex().removeprefix("0x")
        kid, secret = ts.new_api_credentials_for_tests(sim, key)
        addr = Account.from_key(key).address.lower()
        sim.call(lambda: sim.app.ex.ledger.allowance.__setitem__(addr, ts.MAX_UINT))
        sim.mint(addr, 10**6)
        mid = sim.state()["markets"]["BTC:15"]["marketId"]
        bodies = _signed_orders(key, mid, updates, int(sim.clock.now()))
        hdrs = [_bearer(kid, secret) for _ in range(updates)]
        ctx = mp.get_context("fork")
        q, ready = ctx.Queue(), ctx.Event()
        rp = ctx.Process(target=_readers, args=(sim.ws_url, mid, subscribers, updates, ready, q))
        rp.start()
        ready.wait(30)
        post_s, _ = _run_load(sim.base_url + "/api/v1/orders", "POST", bodies, hdrs)
        el, counts = q.get(timeout=120)
        rp.join()
        delivered = sum(counts)
        return {
            "subscribers": subscribers,
            "book_changes": updates,
            "snapshots_delivered": delivered,
            "snapshots_per_s_total": delivered / max(el, 1e-9),
            "posts_per_s_with_fanout": updates / post_s,
        }
    finally:
        sim.stop()


def bench_day(hours: float) -> dict[str, float]:
    sim = ts.start_sim(ts.SimConfig(manual_clock=True, start_time=1_767_225_600, seed=11))
    try:
        t = time.perf_counter()
        sim.advance(hours * 3600)
        el = time.perf_counter() - t
        st = sim.state()
        return {
            "sim_hours": hours,
            "wall_s": el,
            "wall_s_per_24h": el * 24 / hours,
            "markets": st["counters"].get("rollovers", 0),
            "trades": st["counters"].get("trades", 0),
            "invariants_ok": st["invariants_ok"],
        }
    finally:
        sim.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, under 30 s")
    ap.add_argument("--json", action="store_true", help="print one JSON line of results last")
    a = ap.parse_args()
    n = 1000 if a.quick else 5000
    res = {
        "posts": bench_posts(n),
        "fanout": bench_fanout(300 if a.quick else 1500),
        "day": bench_day(6 if a.quick else 24),
    }
    p, f, d = res["posts"], res["fanout"], res["day"]
    print(f"{'figure':38} {'value':>12}  goal")
    print(f"{'order posts/s (sig + token checks)':38} {p['order_posts_per_s']:12.0f}  >= 500")
    print(f"{'  baseline GET /health/s':38} {p['health_gets_per_s']:12.0f}")
    print(f"{'  post cost vs baseline (x)':38} {1 / p['post_to_health_ratio']:12.2f}")
    print(f"{'book snapshots/s to 10 subscribers':38} {f['snapshots_per_s_total']:12.0f}")
    print(f"{'posts/s while fanning out to 10':38} {f['posts_per_s_with_fanout']:12.0f}")
    print(f"{'simulated 24 h, wall seconds':38} {d['wall_s_per_24h']:12.1f}  < 120")
    print(f"{'invariants over the run':38} {d['invariants_ok']!s:>12}")
    if a.json:
        print(
            json.dumps(
                {
                    "bench": "sim",
                    **{f"{k}_{kk}": vv for k, v in res.items() for kk, vv in v.items()},
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
