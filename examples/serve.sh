#!/usr/bin/env bash
# Builds one example handler for wasm32-wasip2 and serves it with Outpost.
#
#   examples/serve.sh [EXAMPLE] [outpost serve flags...]
#   examples/serve.sh                       # hello on http://127.0.0.1:8080
#   examples/serve.sh echo --listen 127.0.0.1:9000
#
# Installs the wasm32-wasip2 target if it is missing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
example=${1:-hello}
shift || true

if [ ! -f "$root/examples/$example/Cargo.toml" ]; then
  echo "error: no example named '$example' in examples/ (try: hello, echo, raw-wasi-http)" >&2
  exit 2
fi
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

cargo build --release --target wasm32-wasip2 --manifest-path "$root/examples/Cargo.toml" -p "$example"
wasm="$root/examples/target/wasm32-wasip2/release/${example//-/_}.wasm"
exec cargo run --release --manifest-path "$root/Cargo.toml" -p outpost -- serve "$wasm" "$@"
