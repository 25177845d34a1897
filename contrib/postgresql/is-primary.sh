#!/bin/sh
# vipd track script for a PostgreSQL pair, with a positive weight: passes while
# the local server is a writable primary, so the primary outranks the standby
# and the VIP follows it. A standby fails it but stays eligible (a weight, not
# a fault), so it can still take over and promote (promote.sh).
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
[ "$(psql -X -q -A -t -d postgres -c "SELECT NOT pg_is_in_recovery() AND current_setting('default_transaction_read_only') = 'off'" 2>/dev/null)" = "t" ]
