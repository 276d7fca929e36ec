#!/usr/bin/env bash
# Builds the demo volume from the bundled fixtures and shows its status.
# Run it twice: the second release finds nothing changed.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --quiet --bins
update() { target/release/unimirror-update --config config/demo.toml "$@"; }
target/release/unimirror check-config --config config/demo.toml
update release pypi --from tests/fixtures/demo/pypi
update status
cat <<'TXT'

The volume lives in target/demo/origin/pypi (see docs/volume-format.md).
Try: target/release/unimirror-update --config config/demo.toml status --json
The daemon that serves it over HTTP is not built yet (see docs/architecture.md).
TXT
