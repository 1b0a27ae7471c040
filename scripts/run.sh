#!/usr/bin/env bash
# Build and run the server on its embedded default: SQLite in ./data, listening on
# 127.0.0.1:8080. Extra arguments go to `tollgate serve` (see `tollgate serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "Rust is needed: install it from https://rustup.rs" >&2; exit 1; }
if ! command -v cc >/dev/null; then
  as_root=(); [ "$(id -u)" = 0 ] || as_root=(sudo)
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
fi
exec cargo run --release --bin tollgate -- serve "$@"
