#!/usr/bin/env bash
# Builds the demo volumes from the bundled fixtures and serves them on
# 127.0.0.1:8080 until Ctrl-C. Run it again: the releases find nothing
# changed.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --quiet --bins
update() { target/release/unimirror-update --config config/demo.toml "$@"; }
target/release/unimirror check-config --config config/demo.toml
update release pypi --from tests/fixtures/demo/pypi
update release ubuntu --from tests/fixtures/demo/ubuntu
update status
keyring=$PWD/tests/fixtures/demo/demo-archive-keyring.gpg
cat <<TXT

Serving on http://127.0.0.1:8080/ (the volumes, their releases, client settings)
  http://127.0.0.1:8080/pypi/simple/     a PyPI simple index
  http://127.0.0.1:8080/ubuntu/          a signed apt archive (suite "demo")
  http://127.0.0.1:8080/metrics          Prometheus metrics

In another shell, try pip:
  pip install --index-url http://127.0.0.1:8080/pypi/simple/ --target /tmp/hello hello-unimirror

and apt (signature checked against the demo key; no trusted=yes):
  echo "deb [signed-by=$keyring] http://127.0.0.1:8080/ubuntu demo main" | sudo tee /etc/apt/sources.list.d/unimirror-demo.list
  sudo apt-get update && apt-get download hello-unimirror

Ctrl-C stops the daemon.

TXT
exec target/release/unimirror serve --config config/demo.toml
