"""Stream throughput of the Python client beside the TypeScript SDK's, on one daemon, one session, one mapping
and the same batches (a 1M section on the tiny profile's dev0; batches of 4096 iovas, 8 in flight).

    /usr/bin/python3 clients/python/bench/stream_throughput.py [--batches 200] [--rounds 3] [--url URL]

Starts a daemon from the checkout unless --url is given; prints one line per client and round, then the medians.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))

from iommud import Client  # noqa: E402
from iommud.daemon import IommudDaemon, find_repo  # noqa: E402
from test_stream import measure_throughput  # noqa: E402  (the figure the test suite prints)

IOVA = 0x10000000


def typescript(repo: Path, url: str, sid: str, token: str, batch: int, batches: int, in_flight: int) -> float:
    out = subprocess.run(
        ["node", "--import", "tsx", "bench/stream-sdk.ts", url, sid, token, "dev0", hex(IOVA), str(batch), str(batches), str(in_flight)],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["translationsPerSecond"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--in-flight", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    repo = find_repo(HERE)
    daemon = None if a.url else IommudDaemon(repo=repo)
    url = a.url or daemon.start()
    try:
        s = Client(url).create_session(profile="tiny", name="stream-throughput")
        d = s.alloc_domain()
        s.attach(d["id"], "dev0")
        s.map(d["id"], iova=IOVA, paddr=0x80000000, size=0x100000, prot=["read", "write"])
        py, ts = [], []
        for r in range(a.rounds):
            # Alternate which goes first so neither always runs on the warmer daemon.
            order = ("py", "ts") if r % 2 == 0 else ("ts", "py")
            for who in order:
                if who == "py":
                    py.append(asyncio.run(measure_throughput(s, "dev0", IOVA, a.batch, a.batches, a.in_flight)))
                    print(f"round {r + 1}: Python client     {py[-1]:>14,.0f} translations/s", flush=True)
                else:
                    ts.append(typescript(repo, url, s.id, s.token, a.batch, a.batches, a.in_flight))
                    print(f"round {r + 1}: TypeScript SDK    {ts[-1]:>14,.0f} translations/s", flush=True)
        s.delete()
        print(f"median over {a.rounds} rounds ({a.batches} x {a.batch} iovas, {a.in_flight} in flight, one connection each):")
        print(f"  Python client  {statistics.median(py):>14,.0f} translations/s")
        print(f"  TypeScript SDK {statistics.median(ts):>14,.0f} translations/s  ({statistics.median(ts) / statistics.median(py):.1f}x)")
    finally:
        if daemon:
            daemon.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
