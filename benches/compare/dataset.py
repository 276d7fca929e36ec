#!/usr/bin/env python3
"""Writes the comparison dataset, the same bytes on every run (fixed seed).

    dataset.py DIR [--small N]

DIR/small/<xx>/<name>.bin   N files (default 10,000) of 2-8 KiB
DIR/large/large-<i>.bin     ten files of 100 MiB
DIR/huge/huge.bin           one file of 1 GiB
DIR/cold/cold.bin           one file of 200 MiB (the 50-client cold fill)

It also writes the request lists the load generator reads:
DIR/small.paths, DIR/large.paths. Files already present with the right
size are kept, so a rerun costs nothing.
"""
import os
import random
import sys

MIB = 1 << 20


def write(path, size, rng):
    seed = rng.random()  # drawn either way: later files never depend on
    # which earlier ones were already there
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        left = size
        block = random.Random(seed)
        while left:
            n = min(left, 4 * MIB)
            f.write(block.randbytes(n))
            left -= n
    os.rename(tmp, path)


def main():
    root = sys.argv[1]
    small = int(sys.argv[sys.argv.index("--small") + 1]) if "--small" in sys.argv else 10_000
    rng = random.Random(20261122)
    paths = []
    for i in range(small):
        size = rng.randint(2048, 8192)
        rel = f"small/{i % 256:02x}/file-{i:06d}.bin"
        write(os.path.join(root, rel), size, rng)
        paths.append(rel)
    with open(os.path.join(root, "small.paths"), "w") as f:
        f.write("\n".join(paths) + "\n")
    large = []
    for i in range(10):
        rel = f"large/large-{i}.bin"
        write(os.path.join(root, rel), 100 * MIB, rng)
        large.append(rel)
    with open(os.path.join(root, "large.paths"), "w") as f:
        f.write("\n".join(large) + "\n")
    write(os.path.join(root, "huge/huge.bin"), 1024 * MIB, rng)
    write(os.path.join(root, "cold/cold.bin"), 200 * MIB, rng)


if __name__ == "__main__":
    main()
