#!/bin/sh
# vipd's before_claim gate for a PostgreSQL pair: make this node's server the
# primary before the VIP points at it. vipd claims the VIP only once this exits
# 0; a failure is a fault and the VIP goes to the peer (or nowhere).
# - a standby: promoted (waiting until it is done), then
#   synchronous_standby_names cleared: a two-node pair has no standby left,
#   and with it set every commit would wait for one forever;
# - a writable primary (the first start, a restart): nothing to do;
# - an old primary fenced by fence.sh: refused. It may lack what the new
#   primary acknowledged since; rebuild it as a standby of the new primary.
# Talks to the local server over TCP (no file access: it works under vipd's
# unit unchanged). Set PGHOST/PGPORT/PGUSER to taste.
set -eu
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
psql_() { psql -X -q -A -t -d postgres -v ON_ERROR_STOP=1 "$@"; }

if [ "$(psql_ -c 'SELECT pg_is_in_recovery()')" = "t" ]; then
    [ "$(psql_ -c 'SELECT pg_promote(true, 60)')" = "t" ]
    psql_ -c "ALTER SYSTEM SET synchronous_standby_names = ''" -c "SELECT pg_reload_conf()" >/dev/null
elif [ "$(psql_ -c "SELECT current_setting('default_transaction_read_only')")" = "on" ]; then
    echo "promote.sh: this server is a fenced old primary; rebuild it as a standby first" >&2
    exit 1
fi
