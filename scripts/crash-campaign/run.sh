#!/usr/bin/env bash
# Random SIGKILLs during runs. After each kill the next command (`lineage list`) recovers, and
# the Parquet outputs must be exactly the set of one `succeeded` run (SHA-256 as recorded), or
# none, with no temporary file left. WORK holds pipe.toml, its data, and the state folder.
# Usage: run.sh BIN WORK N
set -u
BIN=$1; WORK=$2; N=$3
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$WORK"
export PRIVPREP_STATE_DIR=$WORK/state
bad=0
for i in $(seq 1 "$N"); do
  ms=$(( (RANDOM % 900) + 20 ))
  # --foreground: timeout waits for the killed run to be gone before the next command.
  timeout --foreground -s KILL "$(printf '0.%03d' $ms)" "$BIN" run pipe.toml -q --no-progress >/dev/null 2>&1
  "$BIN" lineage list >/dev/null 2>&1
  r=$(python3 "$HERE/check.py" "$WORK")
  case "$r" in ok*) ;; *) bad=$((bad+1)); echo "kill $i at ${ms}ms: $r";; esac
done
echo "random kills: $N, inconsistent: $bad"
