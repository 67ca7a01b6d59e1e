#!/usr/bin/env python3
"""Signing speed: spike_bot's signer against the official SDK's for the same orders, in the same
process (coincurve installed for both), and against the floor: a bare coincurve recoverable
signature of a 32-byte digest. Permits likewise, against eth-account's sign_typed_data (what
the SDK's HEAD uses; 0.1.0 has no permit call).

    python bench/bench_sign.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from coincurve import PrivateKey
from eth_account import Account

import spike_bot as sb

MAX = 2**256 - 1


def rate(fn: Callable[[int], Any], n: int, repeats: int = 3) -> float:
    """Best of `repeats` runs of n calls: operations per second."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - t)
    return n / best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    n_fast, n_slow = (2000, 200) if a.quick else (20000, 1000)

    from turbine_client.signer import Signer as SdkSigner
    from turbine_client.types import OrderArgs, Outcome, Side

    key = "0x" + Account.create().key.hex().removeprefix("0x")
    mine = sb.Signer(key, 137)
    sdk = SdkSigner(key, 137)
    raw = PrivateKey(bytes.fromhex(key[2:]))
    mid = "0x" + "5a" * 32
    digests = [bytes([i % 256]) * 32 for i in range(256)]

    def ours(i: int) -> Any:
        return mine.sign_order(
            sb.OrderFields(
                mid, mine.address, i & 1, 0, 100_000 + i, 5_000_000, i + 1, 1_800_000_000
            )
        )

    def theirs(i: int) -> Any:
        return sdk.sign_order(
            OrderArgs(
                market_id=mid,
                side=Side(i & 1),
                outcome=Outcome.YES,
                price=100_000 + i,
                size=5_000_000,
                expiration=1_800_000_000,
                nonce=i + 1,
            )
        )

    def floor(i: int) -> Any:
        return raw.sign_recoverable(digests[i & 255], hasher=None)

    # same order, same signature, same hash (the tests prove it too)
    assert ours(7).signature == "0x" + theirs(7).signature.removeprefix("0x")
    assert ours(7).order_hash == theirs(7).order_hash

    permit_td = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
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
            "verifyingContract": sb.CHAINS[137]["usdc"],
        },
        "message": {
            "owner": mine.address,
            "spender": sb.CHAINS[137]["settlement"],
            "value": 3_410_000,
            "nonce": 0,
            "deadline": 1_800_000_000,
        },
    }

    def permit_ours(i: int) -> Any:
        return mine.sign_permit(3_410_000 + i, i, 1_800_000_000)

    def permit_eth(i: int) -> Any:
        m = dict(permit_td["message"], value=3_410_000 + i, nonce=i)
        return Account.sign_typed_data(key, full_message={**permit_td, "message": m})

    p_o, p_e = permit_ours(3), permit_eth(3)
    assert (p_o["r"], p_o["s"], p_o["v"]) == (
        "0x" + p_e.r.to_bytes(32, "big").hex(),
        "0x" + p_e.s.to_bytes(32, "big").hex(),
        p_e.v,
    )

    r_floor = rate(floor, n_fast)
    r_ours = rate(ours, n_fast)
    r_sdk = rate(theirs, n_slow)
    r_permit = rate(permit_ours, n_fast)
    r_permit_eth = rate(permit_eth, n_slow)
    res = {
        "orders_per_s_spike": round(r_ours),
        "orders_per_s_sdk": round(r_sdk),
        "orders_per_s_floor": round(r_floor),
        "sign_speedup_vs_sdk": round(r_ours / r_sdk, 2),
        "sign_ratio_to_floor": round(r_floor / r_ours, 3),
        "permits_per_s_spike": round(r_permit),
        "permits_per_s_eth_account": round(r_permit_eth),
        "permit_speedup": round(r_permit / r_permit_eth, 2),
    }
    print(f"{'signer':44} {'per second':>12}")
    print(f"{'coincurve sign_recoverable(32 bytes): floor':44} {r_floor:12.0f}")
    print(f"{'spike_bot Signer.sign_order':44} {r_ours:12.0f}   {r_floor / r_ours:.2f}x the floor")
    print(
        f"{'turbine-py-client Signer.sign_order':44} {r_sdk:12.0f}   "
        f"spike_bot is {r_ours / r_sdk:.1f}x faster (goal >= 10x)"
    )
    print(f"{'spike_bot Signer.sign_permit':44} {r_permit:12.0f}")
    print(
        f"{'eth-account sign_typed_data (Permit)':44} {r_permit_eth:12.0f}   "
        f"spike_bot is {r_permit / r_permit_eth:.1f}x faster"
    )
    if a.json:
        print(json.dumps({"bench": "sign", **res}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
