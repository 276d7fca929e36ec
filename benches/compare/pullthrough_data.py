#!/usr/bin/env python3
"""The upstream of the pull-through benchmark: a PyPI-layout tree.

    pullthrough_data.py DIR FILE_HOST_URL

- DIR/simple/p0000/ .. p1999/index.html: 2,000 project pages of ten links
  each (about 3 KB, like a small project's page), linking FILE_HOST_URL;
- DIR/packages/<2>/<2>/<60>/<name>: eight 32 MiB files and one of 200 MiB,
  each at the path its BLAKE2b-256 names (as on files.pythonhosted.org),
  linked with their sha256 from the pages simple/large/ and simple/herd/
  (a client asks for a project's page before its files);
- DIR/simple/index.html: the root page listing every project (proxpi
  reads it to know which projects exist);
- DIR/pages.paths, DIR/large.paths, DIR/herd.path: the paths to ask for.

Deterministic (fixed seed); an existing tree is kept.
"""
import hashlib
import os
import random
import sys

root, files_url = sys.argv[1], sys.argv[2].rstrip("/") + "/"
if os.path.exists(os.path.join(root, "herd.path")):
    sys.exit(0)
rng = random.Random(20)


def store(name, data):
    h = hashlib.blake2b(data, digest_size=32).hexdigest()
    rel = f"packages/{h[:2]}/{h[2:4]}/{h[4:]}/{name}"
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return rel, hashlib.sha256(data).hexdigest()


def page(project, files):
    d = os.path.join(root, "simple", project)
    os.makedirs(d, exist_ok=True)
    links = [
        f'<a href="{files_url}{rel}#sha256={sha}">{rel.rsplit("/", 1)[1]}</a><br>'
        for rel, sha in files
    ]
    with open(os.path.join(d, "index.html"), "w") as f:
        f.write("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")


large = [store(f"large{i}-1.0.tar.gz", rng.randbytes(32 << 20)) for i in range(8)]
page("large", large)
herd = store("herd-1.0.tar.gz", rng.randbytes(200 << 20))
page("herd", [herd])
large = [rel for rel, _ in large]
herd = herd[0]
pages = []
for i in range(2000):
    project = f"p{i:04d}"
    links = []
    for v in range(10):
        h = "%064x" % rng.getrandbits(256)
        name = f"{project}-{v}.0-py3-none-any.whl"
        sha = "%064x" % rng.getrandbits(256)
        links.append(
            f'<a href="{files_url}packages/{h[:2]}/{h[2:4]}/{h[4:]}/{name}#sha256={sha}" '
            f'data-requires-python="&gt;=3.8">{name}</a><br>'
        )
    d = os.path.join(root, "simple", project)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "index.html"), "w") as f:
        f.write("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    pages.append(f"simple/{project}/")
names = [p.split("/")[1] for p in pages] + ["large", "herd"]
with open(os.path.join(root, "simple", "index.html"), "w") as f:
    f.write("<!DOCTYPE html><html><body>\n")
    f.write("".join(f'<a href="{n}/">{n}</a><br>\n' for n in names))
    f.write("</body></html>\n")
for name, lines in [("pages.paths", pages), ("large.paths", large), ("herd.path", [herd])]:
    with open(os.path.join(root, name), "w") as f:
        f.write("\n".join(lines) + "\n")
