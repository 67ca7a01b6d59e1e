"""preflight against the simulator, passing and failing; the one-bot-per-file lock."""

from __future__ import annotations

import pathlib
import socket
from typing import Any

import pytest
from eth_account import Account

import spike_bot as sb
import spike_tools
import turbine_sim as ts
from harness import BotHarness


def run_preflight(
    sim_url: str, tmp: pathlib.Path, env: str, *extra: str, capsys: Any
) -> tuple[int, str]:
    (tmp / ".env").write_text(env)
    code = sb.main(
        [
            "preflight",
            "--env-file",
            str(tmp / ".env"),
            "--host",
            sim_url,
            "--log-file",
            str(tmp / "bot.log"),
            "--state-file",
            str(tmp / "s.json"),
            *extra,
        ]
    )
    return code, capsys.readouterr().out


def verdict(out: str, name: str) -> str:
    line = next(x for x in out.splitlines() if x[5:].startswith(name))
    return line[:4]


@pytest.fixture
def rsim() -> Any:
    s = ts.start_sim(ts.SimConfig(seed=3, participants=True, market_age_s=5))
    yield s
    s.stop()


def test_preflight_passes_on_the_simulator(
    rsim: ts.Sim, tmp_path: pathlib.Path, capsys: Any
) -> None:
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    code, out = run_preflight(
        rsim.base_url, tmp_path, f"TURBINE_PRIVATE_KEY={key}\n", capsys=capsys
    )
    assert code == 0, out
    for name in (
        "key",
        "host",
        "clock",
        "credentials",
        "wallet",
        "ctf approval",
        "contracts",
        "market",
        "price",
        "balance",
        "allowance",
        "log file",
        "state file",
    ):
        assert verdict(out, name) == "PASS", (name, out)
    assert (
        "registered and saved" in out and "TURBINE_API_KEY_ID=" in (tmp_path / ".env").read_text()
    )
    addr = next(x for x in out.splitlines() if x[5:].startswith("key")).split()[-1].lower()
    assert addr in rsim.state()["ctf_approved"]  # the approval really went through
    assert key[2:] not in out
    # a second run reuses the saved credentials
    code, out = run_preflight(
        rsim.base_url, tmp_path, (tmp_path / ".env").read_text(), capsys=capsys
    )
    assert code == 0 and "authenticated read ok" in out


def test_preflight_failures(rsim: ts.Sim, tmp_path: pathlib.Path, capsys: Any) -> None:
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    code, out = run_preflight(
        rsim.base_url, tmp_path, "TURBINE_PRIVATE_KEY=0x1234\n", capsys=capsys
    )
    assert code == 1 and verdict(out, "key") == "FAIL" and "32-byte" in out
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    code, out = run_preflight(dead, tmp_path, f"TURBINE_PRIVATE_KEY={key}\n", capsys=capsys)
    assert code == 1 and verdict(out, "host") == "FAIL" and "unreachable" in out
    rsim.fault("clock_skew", seconds=400)
    code, out = run_preflight(
        rsim.base_url, tmp_path, f"TURBINE_PRIVATE_KEY={key}\n", capsys=capsys
    )
    assert code == 1 and verdict(out, "clock") == "FAIL" and "sync the clock" in out
    rsim.clear_fault("clock_skew")
    env = (tmp_path / ".env").read_text()
    code, out = run_preflight(rsim.base_url, tmp_path, env, "--permit-mode", "max", capsys=capsys)
    assert code == 1 and verdict(out, "allowance") == "FAIL" and "permit-mode max" in out
    lock = sb.hold_file_lock(str(tmp_path / "s.json"))  # another bot holds the state file
    try:
        code, out = run_preflight(rsim.base_url, tmp_path, env, capsys=capsys)
        assert code == 1 and verdict(out, "state file") == "FAIL" and "in use" in out
    finally:
        lock.close()
    code, out = run_preflight(rsim.base_url, tmp_path, env, capsys=capsys)
    assert code == 0, out


def test_second_bot_on_the_same_files_stops_without_touching_orders(tmp_path: pathlib.Path) -> None:
    from harness import quiet_sim_cfg

    sim = ts.start_sim(quiet_sim_cfg())
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    h = BotHarness(sim, tmp_path, key=key).start()
    try:
        before = {o["orderHash"] for o in h.open_orders()}
        h2 = BotHarness(sim, tmp_path, key=key)
        sb2 = h2.sb
        bot2 = sb2.Bot(
            h2.cfg,
            h2.make_exchange(),
            sim.clock,
            sb2.EventLog(str(tmp_path / "other.log"), "spike_bot"),
            h2.metrics,
        )
        with pytest.raises(sb.ConfigError, match="in use by another running bot"):
            bot2.run()
        assert {o["orderHash"] for o in h.open_orders()} == before
    finally:
        h.stop()
        sim.stop()


# -- the canary ------------------------------------------------------------------------------------
def mine(sim: ts.Sim, key: str) -> list[dict[str, Any]]:
    a = Account.from_key(key).address.lower()
    return [o for o in sim.state()["open_orders"] if o["trader"] == a]


@pytest.mark.parametrize("bot", ["spike", "official"])
def test_canary_places_reads_cancels_and_leaves_nothing(
    rsim: ts.Sim, tmp_path: pathlib.Path, capsys: Any, bot: str
) -> None:
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    if bot == "official":
        import official_spike_bot as ob

        main = ob.main
    else:
        main = sb.main
    (tmp_path / ".env").write_text(f"TURBINE_PRIVATE_KEY={key}\n")
    args = ["--env-file", str(tmp_path / ".env"), "--host", rsim.base_url]
    args += ["--log-file", str(tmp_path / "b.log"), "--state-file", str(tmp_path / "s.json")]
    assert main(["preflight", *args]) == 0  # registers the credentials
    capsys.readouterr()
    before = rsim.state()["counters"]
    code = main(["preflight", "--canary", *args])
    out = capsys.readouterr().out
    after = rsim.state()["counters"]
    assert code == 0, out
    for name in ("canary place", "canary read", "canary cancel", "canary gone"):
        assert verdict(out, name) == "PASS", (name, out)
    assert mine(rsim, key) == []
    assert after["orders_placed"] - before.get("orders_placed", 0) == 1
    assert after["orders_cancelled"] - before.get("orders_cancelled", 0) == 1


def test_canary_fault_on_the_cancel_still_leaves_nothing(
    rsim: ts.Sim, tmp_path: pathlib.Path, capsys: Any
) -> None:
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    env = f"TURBINE_PRIVATE_KEY={key}\n"
    code, out = run_preflight(rsim.base_url, tmp_path, env, capsys=capsys)
    assert code == 0, out
    rsim.fault("cancel_404", count=1)
    env = (tmp_path / ".env").read_text()
    code, out = run_preflight(rsim.base_url, tmp_path, env, "--canary", capsys=capsys)
    assert code == 1
    assert verdict(out, "canary cancel") == "FAIL" and "order not found" in out
    assert verdict(out, "canary gone") == "PASS"
    assert mine(rsim, key) == []


def test_canary_interrupted_leaves_nothing(rsim: ts.Sim, tmp_path: pathlib.Path) -> None:
    """Ctrl-C between the placement and the cancel: the cleanup still runs."""
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    kid, secret = ts.new_api_credentials_for_tests(rsim, key)
    cfg = sb.validate(sb.Config(host=rsim.base_url, status_every_s=0))
    ex = sb.spike_exchange(cfg, key, kid, secret, sb.Metrics("t"))
    real, calls = ex.orders, []

    def orders(*a: Any, **k: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*a, **k)

    ex.orders = orders
    qm = ex.quick_market(cfg.market_keys()[0])
    with pytest.raises(KeyboardInterrupt):
        spike_tools.canary(ex, qm, cfg)
    assert rsim.state()["counters"]["orders_placed"] >= 1
    assert mine(rsim, key) == []


def test_preflight_checks_hermes_when_the_price_is_streamed(
    tmp_path: pathlib.Path, capsys: Any
) -> None:
    sim = ts.start_sim(ts.SimConfig(seed=3, market_age_s=5, hermes_api_key="pk-1"))
    try:
        key = "0x" + Account.create().key.hex().removeprefix("0x")
        env = f"TURBINE_PRIVATE_KEY={key}\nPYTH_API_KEY=pk-1\nSPIKE_HERMES_URL={sim.base_url}\n"
        code, out = run_preflight(sim.base_url, tmp_path, env, capsys=capsys)
        assert code == 0 and verdict(out, "hermes") == "PASS", out
        assert "pk-1" not in out
        env = env.replace("pk-1", "wrong")
        code, out = run_preflight(sim.base_url, tmp_path, env, capsys=capsys)
        assert code == 1 and verdict(out, "hermes") == "FAIL" and "refused the key" in out
    finally:
        sim.stop()


def test_preflight_names_the_replies_the_bot_would_refuse(
    rsim: ts.Sim, tmp_path: pathlib.Path, capsys: Any
) -> None:
    """The boundary's checks, once per endpoint, before a run: a positions reply of another
    wallet and order rows of another market are each a FAIL line naming the field."""
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    env = f"TURBINE_PRIVATE_KEY={key}\n"
    code, out = run_preflight(rsim.base_url, tmp_path, env, capsys=capsys)
    assert code == 0, out
    for name in ("reply quick_market", "reply orders", "reply positions", "reply claim_data"):
        assert verdict(out, name) == "PASS", out
    env = (tmp_path / ".env").read_text()
    rsim.fault("corrupt", path="/api/v1/positions", at="positions",
               set={"userAddress": "0x" + "77" * 20})
    code, out = run_preflight(rsim.base_url, tmp_path, env, capsys=capsys)
    assert code == 1 and verdict(out, "reply positions") == "FAIL" and "userAddress" in out
    rsim.clear_fault("corrupt")
    row = {"orderHash": "0x" + "ab" * 32, "marketId": "0x" + "cd" * 32, "price": 500_000}
    row |= {"size": 10**6, "status": "open"}
    rsim.fault("corrupt", path="/api/v1/orders", at="orders", add=row)
    code, out = run_preflight(rsim.base_url, tmp_path, env, capsys=capsys)
    assert verdict(out, "reply orders") == "FAIL" and "marketId" in out


def test_the_key_at_rest_in_an_encrypted_keystore(
    rsim: ts.Sim, tmp_path: pathlib.Path, capsys: Any
) -> None:
    """`keystore` encrypts the env file's key (file mode 600, the key never printed); the bot
    then reads TURBINE_KEYSTORE with the passphrase from a file; a wrong passphrase, or none
    without a terminal, is one clear line; preflight warns of a plaintext or loose key."""
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    plain = f"TURBINE_PRIVATE_KEY={key}\n"
    code, out = run_preflight(rsim.base_url, tmp_path, plain, capsys=capsys)
    assert verdict(out, "secrets") == "WARN" and "chmod 600" in out  # a 644 env file
    (tmp_path / ".env").chmod(0o600)
    creds = [x for x in (tmp_path / ".env").read_text().splitlines() if "API" in x]
    code, out = run_preflight(rsim.base_url, tmp_path, plain + "\n".join(creds), capsys=capsys)
    assert verdict(out, "secrets") == "WARN" and "plaintext" in out
    pw = tmp_path / "pass"
    pw.write_text("correct horse battery\n")
    pw.chmod(0o600)
    store = tmp_path / "key.json"
    assert sb.main(["keystore", "--env-file", str(tmp_path / ".env"), "--out", str(store),
                    "--passphrase-file", str(pw)]) == 0
    said = capsys.readouterr().out
    assert key[2:] not in said and "TURBINE_KEYSTORE=" in said
    assert store.stat().st_mode & 0o777 == 0o600
    env = "\n".join(creds) + f"\nTURBINE_KEYSTORE={store}\nTURBINE_KEYSTORE_PASSPHRASE_FILE={pw}\n"
    (tmp_path / ".env").write_text(env)
    (tmp_path / ".env").chmod(0o600)
    code, out = run_preflight(rsim.base_url, tmp_path, env, capsys=capsys)
    assert code == 0, out
    assert verdict(out, "secrets") == "PASS"
    assert Account.from_key(key).address in out and key[2:] not in out
    pw.write_text("wrong horse\n")
    code, out = run_preflight(rsim.base_url, tmp_path, env, capsys=capsys)
    assert code == 2 and "wrong passphrase" in out and "wrong horse" not in out
    nopass = "\n".join(creds) + f"\nTURBINE_KEYSTORE={store}\n"
    code, out = run_preflight(rsim.base_url, tmp_path, nopass, capsys=capsys)
    assert code == 2 and "TURBINE_KEYSTORE_PASSPHRASE_FILE" in out


def test_preflight_reports_every_drift_from_the_spec_as_a_line(
    rsim: ts.Sim, tmp_path: pathlib.Path, capsys: Any
) -> None:
    """Each reply preflight reads is compared with the spec's wire rules (spike_wire, the
    rules test_sim_schema holds the simulator to): on the simulator every read is `as the
    spec says`; where the API differs (a strike sent as a string, a field the spec does not
    name), one WARN line names the field, what the spec expects and what came."""
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    env = f"TURBINE_PRIVATE_KEY={key}\n"
    code, out = run_preflight(rsim.base_url, tmp_path, env, capsys=capsys)
    drift = [x for x in out.splitlines() if x[5:].startswith("drift")]
    assert code == 0 and len(drift) >= 10, out
    assert all(x.startswith("PASS") and "as the spec says" in x for x in drift), drift
    for read in ("quick_market", "orderbook", "orders", "positions", "claim_data", "balances"):
        assert any(f" {read}: as the spec says" in x for x in drift), (read, drift)
    rsim.fault(
        "corrupt", path="/api/v1/quick-markets/BTC", at="quickMarket",
        set={"startPrice": "9500000000000", "feeTier": 3},
    )
    code, out = run_preflight(rsim.base_url, tmp_path, env, capsys=capsys)
    drift = [x for x in out.splitlines() if x[5:].startswith("drift")]
    assert (
        "WARN drift        quick_market QuickMarket.startPrice: expected integer, "
        "seen '9500000000000'" in drift
    ), drift
    assert any("QuickMarket.feeTier: expected not in the spec, seen 3" in x for x in drift)
