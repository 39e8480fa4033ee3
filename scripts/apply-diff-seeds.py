#!/usr/bin/env python3
"""Writes the seed corpus of the apply_diff fuzz target (fuzz/seeds/apply_diff/) from
tests/data/hostile-requests.jsonl, in the byte layout the target reads with
arbitrary::Unstructured: one byte per choice (a choice among N takes byte % N), six bytes
(big-endian) for an entry's clock, eight (little-endian) for its seed.

  hostile-NN              request NN; B restarts; NN again (budget 200,000); B installs a
                          snapshot of A; NN in a transaction (budget 5,000); both are rebuilt
                          from A's dump; NN with the smallest budget; B installs its own copy
  all-hostile-in-sequence every request in turn, B restarting after every fifth and
                          installing A's snapshot after every eleventh

Run from the repository root after changing the list: python3 scripts/apply-diff-seeds.py
"""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIST = os.path.join(ROOT, "tests", "data", "hostile-requests.jsonl")
OUT = os.path.join(ROOT, "fuzz", "seeds", "apply_diff")

ENTRY, RESTART, SNAPSHOT, DUMP = 0x00, 0x06, 0x07, 0x08
BUDGETS = {500: 0, 5_000: 1, 50_000: 2, 200_000: 3}


def entry(k, budget=50_000, transaction=False):
    data = bytes([
        ENTRY,
        0x00,                          # one in six: 0 -> a hostile request
        k,                             # which one
        0x00 if transaction else 0x01, # one in four: 0 -> `transaction`
        0x00,                          # rows policy: all queries
    ])
    data += (1_700_000_000_000).to_bytes(6, "big")
    data += (k * 7919 + 1).to_bytes(8, "little")
    return data + bytes([BUDGETS[budget]])


def main():
    with open(LIST) as f:
        requests = [l for l in f if l.strip() and not l.startswith("#")]
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        if name.startswith("hostile-") or name == "all-hostile-in-sequence":
            os.remove(os.path.join(OUT, name))
    for k in range(len(requests)):
        data = (entry(k) + bytes([RESTART]) + entry(k, 200_000)
                + bytes([SNAPSHOT, 0x01]) + entry(k, 5_000, True) + bytes([DUMP])
                + entry(k, 500) + bytes([SNAPSHOT, 0x00]))
        with open(os.path.join(OUT, f"hostile-{k:02d}"), "wb") as f:
            f.write(data)
    data = b""
    for k in range(len(requests)):
        data += entry(k)
        if k % 5 == 4:
            data += bytes([RESTART])
        if k % 11 == 10:
            data += bytes([SNAPSHOT, 0x01])
    with open(os.path.join(OUT, "all-hostile-in-sequence"), "wb") as f:
        f.write(data)
    print(f"{len(requests) + 1} seeds in {OUT}")


if __name__ == "__main__":
    main()
