#!/usr/bin/env bash
# Builds the demo volume from the bundled fixtures and serves it on
# 127.0.0.1:8080 until Ctrl-C. Run it again: the release finds nothing changed.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --quiet --bins
update() { target/release/unimirror-update --config config/demo.toml "$@"; }
target/release/unimirror check-config --config config/demo.toml
update release pypi --from tests/fixtures/demo/pypi
update status
cat <<'TXT'

The volume lives in target/demo/origin/pypi (see docs/volume-format.md).
In another shell, try:
  curl http://127.0.0.1:8080/pypi/simple/
  pip install --index-url http://127.0.0.1:8080/pypi/simple/ --target /tmp/hello hello-unimirror
Ctrl-C stops the daemon.

TXT
exec target/release/unimirror serve --config config/demo.toml
