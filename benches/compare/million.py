#!/usr/bin/env python3
"""Writes the trees of the `million` workload, the same on every run.

    million.py DIR

DIR/million/packages/<xx>/<yy>/project_<i>-1.0-py3-none-any.whl
    1,000,000 files of 200-800 bytes over 65,536 fan-out directories
    (PyPI-like paths, as in benches/release.rs)
DIR/tenk/...   the first 10,000 of those files: the small volume that the
               per-request cost of a 1M-file release is measured against
DIR/million.paths, DIR/tenk.paths   the request lists for wrk
DIR/tenk.random.paths   tenk.paths repeated to 1,000,000 lines: the list
               random.lua picks from in tenk, so that wrk picks from a table
               of the same size for both volumes

Every file's content is one of POOL distinct blobs, drawn at random. With a
million distinct contents the first release would have to create a million
objects on the origin (five minutes on the reference machine) and the cache
a million entries; with repeated contents both stay a few thousand. What the
daemon's memory and lookups depend on, the manifest (one record per path),
is the same size either way.

A tree is kept when its marker (DIR/million.done, DIR/tenk.done) matches
these parameters. Otherwise it is written again, marker last, so that an
interrupted run starts over; what was there is moved to DIR/<tree>.old for
the caller to delete. Prints one JSON line per tree: whether it was
generated, and the seconds generating it took (in this run, or in the run
that wrote the kept tree), the final sync included.
"""
import json
import os
import random
import shutil
import sys
import time

FILES = 1_000_000
SMALL = 10_000
POOL = 4096
FANOUT = 256  # <xx> and <yy>: 65,536 leaf directories
SEED = 20261124


def layout(files):
    """The blobs and, per leaf directory, its (name, blob) list."""
    rng = random.Random(SEED)
    blobs = [rng.randbytes(rng.randint(200, 800)) for _ in range(POOL)]
    dirs = {}
    order = []
    for i in range(files):
        d = rng.getrandbits(16)
        name = f"project_{i}-1.0-py3-none-any.whl"
        dirs.setdefault(d, []).append((name, rng.randrange(POOL)))
        order.append(f"packages/{d >> 8:02x}/{d & 0xff:02x}/{name}")
    return blobs, dirs, order


def generate(root, tree, files):
    params = {"files": files, "pool": POOL, "seed": SEED, "fanout": FANOUT * FANOUT}
    marker = os.path.join(root, tree + ".done")
    top = os.path.join(root, tree)
    paths_file = os.path.join(root, tree + ".paths")
    try:
        with open(marker) as f:
            done = json.load(f)
        if {k: done.get(k) for k in params} == params and os.path.exists(paths_file):
            return {**done, "tree": top, "generated": False}
    except (OSError, ValueError):
        pass

    t0 = time.monotonic()
    if os.path.exists(marker):
        os.unlink(marker)
    # A partial or outdated tree is moved aside, to DIR/<tree>.old, for the
    # caller to delete later: deleting a million files takes minutes (far
    # longer than writing them when their inodes are no longer cached), and
    # ext4 is slow to create files right after a mass deletion.
    old = top + ".old"
    if os.path.exists(old):
        shutil.rmtree(old)
    if os.path.exists(top):
        os.rename(top, old)
    blobs, dirs, order = layout(files)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    written = 0
    for d in sorted(dirs):
        leaf = os.path.join(top, "packages", f"{d >> 8:02x}", f"{d & 0xff:02x}")
        os.makedirs(leaf)
        # Files are created relative to the open directory, which spares
        # the kernel a walk of the path for each of them.
        dfd = os.open(leaf, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name, blob in dirs[d]:
                fd = os.open(name, flags, 0o644, dir_fd=dfd)
                try:
                    os.write(fd, blobs[blob])
                finally:
                    os.close(fd)
                written += len(blobs[blob])
        finally:
            os.close(dfd)
    with open(paths_file + ".tmp", "w") as f:
        f.write("\n".join(order) + "\n")
    os.rename(paths_file + ".tmp", paths_file)
    # Counted here, not in the first release: its syncfs calls would
    # otherwise wait for the write-back of this whole tree.
    os.sync()
    done = {**params, "bytes": written, "directories": len(dirs),
            "seconds": round(time.monotonic() - t0, 1),
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with open(marker + ".tmp", "w") as f:
        json.dump(done, f)
    os.rename(marker + ".tmp", marker)
    return {**done, "tree": top, "generated": True}


def repeated(root, tree, lines):
    """Writes DIR/<tree>.random.paths: DIR/<tree>.paths over and over."""
    src = os.path.join(root, tree + ".paths")
    dst = os.path.join(root, tree + ".random.paths")
    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
        return
    with open(src) as f:
        paths = f.read().splitlines()
    with open(dst + ".tmp", "w") as f:
        f.write("\n".join(paths * (lines // len(paths))) + "\n")
    os.rename(dst + ".tmp", dst)


def main():
    root = sys.argv[1]
    os.makedirs(root, exist_ok=True)
    for tree, files in (("million", FILES), ("tenk", SMALL)):
        print(json.dumps(generate(root, tree, files)), flush=True)
    repeated(root, "tenk", FILES)


if __name__ == "__main__":
    main()
