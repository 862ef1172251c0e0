# Helpers the benchmark scripts share; sourced after the script defines die() and the
# `namespaces` array its cleanup deletes.

# Stops a child: TERM, up to 5 s for it to go, then KILL; reaps it.
stop_child() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    # a reaped child fails kill -0; an unreaped exited one is a zombie
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Creates namespace $1 with lo up, remembered for cleanup.
addns() {
  ip netns add "$1"
  namespaces+=("$1")
  ip -n "$1" link set lo up
}

# wait_for WHAT CMD...: runs CMD every 0.1 s until it succeeds, for up to
# ${WAIT_TENTHS:-100} tries; dies naming WHAT if it never does.
wait_for() {
  local what=$1 i
  shift
  for ((i = 0; i < ${WAIT_TENTHS:-100}; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "timed out waiting for $what"
}
