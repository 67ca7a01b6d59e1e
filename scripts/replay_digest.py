#!/usr/bin/env python3
"""The engine's decisions over a recording, as one digest: replay FILE through the engine of
the checkout this script runs from and hash every order placed, order cancelled, fill, claim
and rollover (their fields, without wall-clock stamps). Two checkouts that print the same
digest for the same recording made the same orders and fills: a refactor that claims to leave
behaviour unchanged shows it this way (issue 22).

    python spike_bot.py --sim --speed 60 --duration 100 --record /tmp/rec.jsonl
    python scripts/replay_digest.py /tmp/rec.jsonl            # here
    (cd ../other-checkout && python scripts/replay_digest.py /tmp/rec.jsonl)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import spike_bot as sb
import spike_tools

DECISIONS = ("order_placed", "order_cancelled", "order_rejected", "fill", "claim", "rollover")
# differ run to run (ts, seconds, ms), or were added to the lines for the report (fair, yes_won):
# neither is a decision, so a digest stays comparable across those changes
WALL_CLOCK = ("ts", "seconds", "ms", "fair", "yes_won")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help="a recording made with --record")
    ap.add_argument("--show", action="store_true", help="print every decision, not only the digest")
    a = ap.parse_args(argv)
    recs = spike_tools.read_recording(a.file)
    cfg, _ = sb.load_config({"markets": ",".join(spike_tools.recording_markets(recs))}, {})
    tmp = tempfile.mkdtemp(prefix="replay-digest-")
    cfg = dataclasses.replace(
        cfg, status_every_s=0, state_file=os.path.join(tmp, "state.json")
    )
    log = os.path.join(tmp, "replay.log")
    spike_tools.replay_run(recs, cfg, log)
    digest, counts = hashlib.sha256(), dict.fromkeys(DECISIONS, 0)
    for line in pathlib.Path(log).read_text().splitlines():
        e = json.loads(line)
        if e["event"] not in DECISIONS:
            continue
        counts[e["event"]] += 1
        kept = {k: v for k, v in e.items() if k not in WALL_CLOCK}
        text = json.dumps(kept, sort_keys=True)
        digest.update(text.encode())
        if a.show:
            print(text)
    print(" ".join(f"{k}={v}" for k, v in counts.items()), f"sha256={digest.hexdigest()[:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
