#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ and runs each for a short time against its committed
# seed corpus (fuzz/corpus/<target>). New inputs go to a temporary directory, so the
# committed corpus is not changed. Fails if any target crashes; the crashing input is
# left in fuzz/artifacts/<target>/ (reproduce with the command the run prints).
#
#   FUZZ_SECONDS  seconds per target (default 20)
#   FUZZ_TARGETS  targets to run, space-separated (default: all of `cargo fuzz list`)
#
# Needs the nightly toolchain (rustup toolchain install nightly): skipped without it.
# Installs cargo-fuzz (cargo install --locked) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${FUZZ_SECONDS:-20}
start=$SECONDS

if ! command -v rustup >/dev/null 2>&1 || ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: SKIPPED: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

echo "== cargo fuzz build"
nice -n 19 cargo +nightly fuzz build

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo +nightly fuzz list | tr '\n' ' ')}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "corpus/$t"
  args=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)
  [ -f "dict/$t.dict" ] && args+=(-dict="dict/$t.dict")
  echo "== fuzz $t (${seconds}s)"
  log="$work/$t.log"
  if nice -n 19 cargo +nightly fuzz run "$t" "$work/$t" "corpus/$t" -- "${args[@]}" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
    echo "   ok: ${execs:-?} execs, ${cov:-no coverage line}"
  else
    failed+=("$t")
    echo "   CRASH in $t:"
    # the panic message (or the sanitizer's report), and how to reproduce
    grep -E -A1 'panicked at' "$log" | head -4 | sed 's/^/   /' || true
    grep -E -A2 '^==[0-9]+==ERROR' "$log" | head -3 | sed 's/^/   /' || true
    grep -E '^SUMMARY:' "$log" | head -1 | sed 's/^/   /' || true
    grep -E '^[[:space:]]*cargo fuzz run ' "$log" | tail -1 | sed 's/^[[:space:]]*/   reproduce (from fuzz\/): /' || true
  fi
done

echo "== fuzz: ${#targets[@]} targets, ${seconds}s each, $((SECONDS - start))s in all"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no crashes"
