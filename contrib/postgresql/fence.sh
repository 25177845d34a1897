#!/bin/sh
# vipd's after_release hook for a PostgreSQL pair: fence the old primary once
# this node no longer holds the VIP (vipd runs it after the address is gone,
# so no client reaches this server through the VIP any more). New
# transactions are read-only and every client session is ended, so nothing
# written here after the switchover
# can be acknowledged and then lost; clients reconnect through the VIP to the
# new primary. With synchronous_standby_names set, commits in flight here were
# already waiting for the standby that is being promoted, and never complete.
# On a standby it changes nothing that matters (it is read-only anyway).
# To rejoin the pair, rebuild this server as a standby of the new primary
# (pg_basebackup, or pg_rewind); then `vipd undrain` if it was drained.
set -eu
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
psql -X -q -A -t -d postgres -v ON_ERROR_STOP=1 \
    -c "SELECT pg_is_in_recovery()" >/dev/null || exit 0   # not running: nothing to fence
if [ "$(psql -X -q -A -t -d postgres -c 'SELECT pg_is_in_recovery()')" = "f" ]; then
    psql -X -q -A -t -d postgres -v ON_ERROR_STOP=1 \
        -c "ALTER SYSTEM SET default_transaction_read_only = on" \
        -c "SELECT pg_reload_conf()" \
        -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()" >/dev/null
fi
