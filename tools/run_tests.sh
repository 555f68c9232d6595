#!/usr/bin/env bash
# Run the suite against the installed package (env.sh sourced). Each run gets its own DDS domain
# and localhost-only discovery so two runs on one machine never see each other.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_DOMAIN_ID=${VLMAD_TEST_DOMAIN_ID:-$(( ($$ % 90) + 5 ))}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export PYTHONDONTWRITEBYTECODE=1
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID (localhost only)"
exec python -m pytest -p no:cacheprovider --import-mode=importlib "$@"
