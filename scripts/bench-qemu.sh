#!/usr/bin/env bash
# Side by side: guest -> guest throughput between two QEMU guests (TCG) over vnet's stream,
# dgram and tap attachments and over a Linux bridge, in one run (tests/qemu_bench.rs, an
# ignored test). Runs as root; namespaces, TAPs and QEMU processes are removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== QEMU guest->guest, $(date -u +%FT%TZ), $(qemu-system-x86_64 --version | head -1), git $(git rev-parse --short HEAD)"
exec cargo test --release --test qemu_bench -- --ignored --nocapture --test-threads 1
