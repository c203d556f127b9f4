#!/usr/bin/env bash
# Our gateway and LiteLLM proxy, side by side in one interleaved run of the shared harness.
#   bash bench/run_peer.sh                       # full run (~30+ min)
#   N=200 N_C1=30 ROUNDS=1 QUIET_WAIT=0 bash bench/run_peer.sh   # smoke (~8 min)
#   BASELINE_REPO=/path/to/other/checkout bash bench/run_peer.sh
#       also runs that checkout's gateway (port 8001, targets `base-*`) in the same run, with
#       this checkout's venv: before/after of a change, side by side.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p /tmp/peerbench/ray /tmp/peerbench/ray-base
CONFIG=/tmp/peerbench/peer-gateway.json
"$REPO/.venv/bin/python" - "$REPO" "${BASELINE_REPO:-}" > "$CONFIG" <<'PYEOF'
import json, sys
repo, baseline = sys.argv[1], sys.argv[2]
text = open(f"{repo}/bench/peer-gateway.json").read()
config = json.loads(text.replace("__REPO__", repo))
if baseline:
    base = json.loads(text.replace("__REPO__", baseline).replace("127.0.0.1:8000", "127.0.0.1:8001"))
    service = base["services"][0]
    service["name"] = "gateway-base"
    service["cmd"] = ["bash", "-c", f"exec {repo}/.venv/bin/python -m serve_app.runtime.launch configs/bench.yaml"]
    service["env"].update(PORT="8001", PYTHONPATH=baseline, RAY_TMPDIR="/tmp/peerbench/ray-base",
                          LEDGER_URL="sqlite:////tmp/peerbench/gateway-base-usage.db",
                          RAY_SERVE_HAPROXY_STATS_PORT="18404", RAY_SERVE_HAPROXY_METRICS_PORT="19101")
    for target in base["targets"]:
        target["name"] = target["name"].replace("gateway-", "base-")
        target["service"] = "gateway-base"
    config["services"] += base["services"]
    config["targets"] += base["targets"]
json.dump(config, sys.stdout, indent=1)
PYEOF
EXTRA_CONFIG="$CONFIG" exec bash "$REPO/../shared/bench/run_peer.sh"
