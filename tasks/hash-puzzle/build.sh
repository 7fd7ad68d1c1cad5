#!/usr/bin/env sh
# Rebuilds hash-puzzle.wasm (checked in) from src/lib.rs.
set -eu
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/ww-sched-hash-puzzle-target}"
rustup target add wasm32-wasip1 >/dev/null 2>&1 || true
cargo build --release --target wasm32-wasip1
cp "$CARGO_TARGET_DIR/wasm32-wasip1/release/hash_puzzle.wasm" hash-puzzle.wasm
ls -l hash-puzzle.wasm
