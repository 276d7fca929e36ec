#!/usr/bin/env python3
"""Times a release switch as clients see it.

    switch.py URL BEFORE_ID POINTER COMMAND...

Polls URL over one keep-alive connection while COMMAND (a release) runs and
prints JSON: the milliseconds from the pointer flip (the pointer file's
mtime: it is written just before the rename) to the first response whose
X-Unimirror-Release is newer than BEFORE_ID.
"""
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse

url, before, pointer, command = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
u = urllib.parse.urlsplit(url)
seen = {}
stop = threading.Event()


def poll():
    conn = http.client.HTTPConnection(u.hostname, u.port)
    while not stop.is_set():
        conn.request("GET", u.path)
        r = conn.getresponse()
        r.read()
        release = int(r.getheader("x-unimirror-release", "0"))
        if release > before:
            seen["at_ns"] = time.time_ns()
            seen["release"] = release
            return


t = threading.Thread(target=poll)
t.start()
subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
t.join(timeout=30)
stop.set()
if "at_ns" not in seen:
    print(json.dumps({"error": "no response from a new release within 30 s"}))
    sys.exit(1)
flip_ns = os.stat(pointer).st_mtime_ns
print(json.dumps({
    "release": seen["release"],
    "flip_to_first_ms": round(max(0, seen["at_ns"] - flip_ns) / 1e6, 3),
}))
