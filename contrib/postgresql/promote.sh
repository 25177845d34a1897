#!/bin/sh
# vipd's before_claim gate for a PostgreSQL pair: make this node's server the
# only writable primary before the VIP points at it. vipd claims the VIP only
# once this exits 0; a failure is a fault and the VIP goes to the peer (or,
# when a drain handed it here, back to the node it came from).
#
#   before_claim = ["/etc/vipd/promote.sh", "PEER"]
#
# PEER is the other node's address (vipd appends its own four arguments
# after it). Cases:
# - this server is a standby: the peer's server is fenced first if it still
#   answers as a writable primary (read-only, sessions ended: what fence.sh
#   does there once its VIP is gone; the peer's own fence has not run yet,
#   or never will if its vipd died), so the old primary has stopped taking
#   writes before this one starts. A peer that does not answer within 1 s is
#   taken for down. But if this node took over because the peer's vipd went
#   silent (VIPD_REASON "master down ...") while its server still takes
#   writes, this refuses: that is two daemons that did not hear each other
#   (or a vipd killed outside its unit), not a dead primary. Then this server is promoted (waiting until it is done)
#   and synchronous_standby_names cleared: a two-node pair has no standby
#   left, and with it set every commit would wait for one forever.
# - a writable primary (the first start, a restart, a resume): nothing to do.
# - an old primary fenced by fence.sh: if the peer answers and is still a
#   standby (its promotion failed and the drain was rolled back), nothing was
#   written anywhere else, so this server takes writes again. Otherwise this
#   refuses: the peer may have been promoted and acknowledged writes this
#   server lacks. Rebuild it as a standby of the new primary first.
# Talks to both servers over TCP as the postgres user (no file access: it
# works under vipd's unit unchanged); pg_hba.conf must let each node's
# scripts in from 127.0.0.1 and from the peer.
set -eu
peer="${1:?usage: promote.sh PEER_ADDRESS}"
export PGHOST=127.0.0.1 PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
here() { psql -X -q -A -t -d postgres -v ON_ERROR_STOP=1 "$@"; }
# The peer's answer to one query, or nothing if it does not answer in 1 s.
there() { timeout 1 env PGHOST="$peer" psql -X -q -A -t -d postgres -v ON_ERROR_STOP=1 "$@" 2>/dev/null || true; }

# Assigned first: with `set -e`, a server that does not answer fails the gate.
in_recovery=$(here -c 'SELECT pg_is_in_recovery()')
read_only=$(here -c "SELECT current_setting('default_transaction_read_only')")
if [ "$in_recovery" = "t" ]; then
    if [ "$(there -c 'SELECT pg_is_in_recovery()')" = "f" ]; then
        case "${VIPD_REASON:-}" in
        "master down"*)
            # The peer's vipd is silent but its server takes writes: a node
            # started without hearing the other, or a vipd killed without
            # its unit's clean-up. Promoting would make two primaries.
            echo "promote.sh: the primary at $peer still takes writes but its vipd is silent; not promoting" >&2
            exit 1 ;;
        esac
        timeout 5 env PGHOST="$peer" "$(dirname "$0")/fence.sh" \
            || echo "promote.sh: could not fence the old primary at $peer; promoting anyway (synchronous replication keeps its commits unacknowledged)" >&2
    fi
    [ "$(here -c 'SELECT pg_promote(true, 60)')" = "t" ]
    here -c "ALTER SYSTEM SET synchronous_standby_names = ''" -c "SELECT pg_reload_conf()" >/dev/null
elif [ "$read_only" = "on" ]; then
    if [ "$(there -c 'SELECT pg_is_in_recovery()')" = "t" ]; then
        here -c "ALTER SYSTEM RESET default_transaction_read_only" -c "SELECT pg_reload_conf()" >/dev/null
        echo "promote.sh: the peer never became primary; this server takes writes again" >&2
    else
        echo "promote.sh: this server is a fenced old primary and the peer at $peer is not a standby (or does not answer); rebuild this one as its standby first" >&2
        exit 1
    fi
fi
