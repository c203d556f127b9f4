#!/usr/bin/env bash
# Our gateway and LiteLLM proxy, side by side in one interleaved run of the shared harness.
#   bash bench/run_peer.sh                       # full run (~30+ min)
#   N=200 N_C1=30 ROUNDS=1 QUIET_WAIT=0 bash bench/run_peer.sh   # smoke (~8 min)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p /tmp/peerbench/ray
CONFIG=/tmp/peerbench/peer-gateway.json
sed "s#__REPO__#$REPO#" "$REPO/bench/peer-gateway.json" > "$CONFIG"
EXTRA_CONFIG="$CONFIG" exec bash "$REPO/../shared/bench/run_peer.sh"
