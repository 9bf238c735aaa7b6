# Sourced by bench/stores.sh and bench/profiles.sh: start_pg STATE_DIR starts a throwaway
# PostgreSQL server (target/release/pg-server: Debian's postgresql, database `gocoffee`) that lives
# as long as the calling script holds its input open (fd 7), and sets DATABASE_URL, PG_PORT and
# PG_PID; stop_pg (for the caller's EXIT trap, after its hosts) closes that input and waits.
start_pg() {
  local state=$1
  tests/tools.sh apt   # Debian's postgresql, once
  rm -f "$state/pg.in"; mkfifo "$state/pg.in"
  target/release/pg-server <"$state/pg.in" >"$state/pg.url" &
  PG_PID=$!
  exec 7>"$state/pg.in"
  for _ in $(seq 1 300); do [ -s "$state/pg.url" ] && break; sleep 0.1; done
  DATABASE_URL=$(cat "$state/pg.url")
  [ -n "$DATABASE_URL" ] || { echo "pg-server did not start"; return 1; }
  PG_PORT=$(sed -E 's|.*:([0-9]+)/.*|\1|' <<<"$DATABASE_URL")
}
stop_pg() {
  exec 7>&-
  wait "$PG_PID" 2>/dev/null || true
}
