#!/usr/bin/env bash
# Run the suite against the installed package (env.sh sourced). Each run gets its own DDS domain
# and localhost-only discovery so two runs on one machine never see each other: the domain id is
# claimed with a lock file held for the whole run (a second run takes the next free id).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VLMAD_TEST_DOMAIN_ID:-}" ]; then
  lock_dir=${TMPDIR:-/tmp}
  start=$(( $$ % 90 ))
  for i in $(seq 0 89); do
    id=$(( (start + i) % 90 + 5 ))   # 5..94: clear of the default 0 and of Fast DDS port limits
    exec 8>"$lock_dir/vlmad_ros-test-domain-$id.lock"
    if flock -n 8; then VLMAD_TEST_DOMAIN_ID=$id; break; fi
    exec 8>&-
  done
  [ -n "${VLMAD_TEST_DOMAIN_ID:-}" ] || { echo "[test] no free ROS_DOMAIN_ID" >&2; exit 1; }
fi
export ROS_DOMAIN_ID=$VLMAD_TEST_DOMAIN_ID
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST   # Jazzy and later
export ROS_LOCALHOST_ONLY=1                      # Humble (ignores the line above)
export PYTHONDONTWRITEBYTECODE=1
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID (localhost only)"
# A whole-run limit on top of pytest-timeout's per-test one (pytest.ini): a hang that no Python
# signal reaches still ends, SIGINT first (pytest prints its summary), SIGKILL 60 s later.
limit=${VLMAD_TEST_TIME_LIMIT:-3600}
exec timeout -s INT -k 60 "$limit" python -m pytest -p no:cacheprovider --import-mode=importlib "$@"
