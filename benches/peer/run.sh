#!/usr/bin/env bash
# Peer benchmark (issue 7): renmian's generated event log appended and replayed with Python's
# `eventsourcing` library on SQLite and PostgreSQL. See README.md beside this file.
#
#   NOTICES=2000 benches/peer/run.sh [eventsourcing_peer.py options: --only sqlite|postgres,
#       --postgres URL, --application, --baseline, --replicate K, --page N, --no-verify]
#
# Environment: NOTICES (2000), SEED (7), RENMIAN (target/release/renmian), PEER_VENV
# (target/peer-venv), PYTHON (python3), DUMP=FILE (reuse that dump if it exists, else keep
# the new dump there), PEER_POSTGRES_URL (postgres://postgres@127.0.0.1:5432/peer_bench).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
NOTICES=${NOTICES:-2000}
SEED=${SEED:-7}
RENMIAN=${RENMIAN:-$root/target/release/renmian}
VENV=${PEER_VENV:-$root/target/peer-venv}
PYTHON=${PYTHON:-python3}
DUMP=${DUMP:-}
# Absolute paths: the ingest step runs inside the notices directory.
RENMIAN=$(realpath -m "$RENMIAN")
[[ -n "$DUMP" ]] && DUMP=$(realpath -m "$DUMP")

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "[run] creating venv $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

work=$(mktemp -d "${TMPDIR:-/tmp}/renmian-peer.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [[ -n "$DUMP" && -s "$DUMP" ]]; then
    echo "[run] reusing dump $DUMP" >&2
    dump=$DUMP
else
    if [[ ! -x "$RENMIAN" ]]; then
        echo "[run] no renmian binary at $RENMIAN: cargo build --release first" >&2
        exit 1
    fi
    "$RENMIAN" gen-notices --seed "$SEED" --notices "$NOTICES" --out "$work/notices"
    db="sqlite://$work/renmian.db"
    start=$(date +%s.%N)
    # Files sort in date order; batches keep the argument list under ARG_MAX.
    (cd "$work/notices" && find . -maxdepth 1 -type f -name '*.txt' -print0 | sort -z \
        | xargs -0 -n 1000 "$RENMIAN" --database "$db" ingest >/dev/null)
    end=$(date +%s.%N)
    dump=${DUMP:-$work/events.jsonl}
    count=$("$RENMIAN" --database "$db" dump-events --out "$dump" 2>&1 | tail -1 || true)
    events=$(wc -l <"$dump")
    awk -v n="$events" -v s="$start" -v e="$end" -v k="$NOTICES" 'BEGIN {
        printf "[run] renmian CLI ingest (SQLite): %d notices, %d events in %.1f s = %.0f events/s\n",
            k, n, e - s, n / (e - s) }' >&2
    echo "[run] dump: $dump ($events events; $count)" >&2
    rm -rf "$work/notices"
fi

"$VENV/bin/python" "$here/eventsourcing_peer.py" "$dump" "$@"
