"""Coverage-guided fuzzing of the payload decoder and ingest validator with atheris (libFuzzer).

Run by test_atheris.py in a child process (libFuzzer owns the process and exits it):
    python -m tests.fuzz.atheris_payload -runs=20000 -max_total_time=25 [corpus dir]
Any exception other than PayloadError is a crash: libFuzzer prints it and exits non-zero.
The seed is a valid payload, so mutations start from the shape the decoder is meant for.
"""

from __future__ import annotations

import sys
import time

import atheris

with atheris.instrument_imports():
    from cxpulse.collector.ingest.validate import check_batch
    from cxpulse.v1 import payload

NOW_US = time.time_ns() // 1000


def one_input(data: bytes) -> None:
    try:
        batch = payload.decode(data, max_samples=10_000)
    except payload.PayloadError:
        return
    problem = check_batch(batch, NOW_US)
    assert problem is None or isinstance(problem, str)


def seed() -> bytes:
    s = payload.Series(target="gw", address="10.0.0.1", method="icmp_raw")
    for i in range(5):
        s.add(NOW_US - 60_000_000 + i * 1_000_000, 800 + i if i != 2 else None)
    w = payload.Series(target="wifi", address="wlan0", method="nl80211", kind="wifi")
    w.add(NOW_US - 30_000_000, conn=1, ssid="x", rssi=-60, q=70)
    ev = payload.Event("e1", "loss_burst", "gw", NOW_US - 50_000_000, NOW_US - 48_000_000, 2, "2 lost")
    return payload.encode(payload.SampleBatch([s, w], [ev]))


def main() -> None:
    argv = list(sys.argv)
    corpus = [a for a in argv[1:] if not a.startswith("-")]
    if corpus:
        with open(f"{corpus[0]}/seed", "wb") as f:
            f.write(seed())
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
