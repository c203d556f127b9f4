#!/usr/bin/env bash
# Profile the commercial hot path with py-spy: the gateway (configs/bench.yaml through
# serve_app.runtime.launch, so the fast path applies) in front of the shared harness's fake upstream,
# under closed-loop load on /v1/chat/completions; py-spy samples the ingress (which holds the
# provider proxies with the default `placement: ingress`), the openai proxy replica (with
# `placement: deployment`) and the rate limiter replicas. Needs `pip install py-spy` and `bash bench/run_peer.sh`
# run once (for /tmp/peerbench/venv-harness).
#   bash bench/profile_path.sh            # results in /tmp/profile-path/*.txt
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT=${OUT:-/tmp/profile-path}
SECONDS_PROFILED=${SECONDS_PROFILED:-20}
HARNESS=/work/shared/bench
[ -d "$REPO/../shared/bench" ] && HARNESS="$(cd "$REPO/../shared/bench" && pwd)"
PY=/tmp/peerbench/venv-harness/bin/python
mkdir -p "$OUT/ray"
cd "$REPO"

setsid "$PY" "$HARNESS/fake_upstream.py" --port 18000 > "$OUT/upstream.log" 2>&1 &
UPSTREAM=$!
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 RAY_TMPDIR="$OUT/ray" \
  OPENAI_API_KEY=sk-fake ANTHROPIC_API_KEY=sk-fake GATEWAY_ADMIN_KEY=sk-bench-master
setsid taskset -c 1 .venv/bin/python -m serve_app.runtime.launch configs/bench.yaml > "$OUT/gateway.log" 2>&1 &
GATEWAY=$!
trap 'kill -TERM -- -$GATEWAY -$UPSTREAM 2>/dev/null || true; sleep 8; kill -KILL -- -$GATEWAY 2>/dev/null || true' EXIT
for _ in $(seq 240); do
  curl -sf http://127.0.0.1:8000/api/v1/health > /dev/null && break
  sleep 1
done
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":32}'
load() {
  "$PY" "$HARNESS/load.py" --url http://127.0.0.1:8000/v1/chat/completions -n "$1" -c 16 \
    --warmup 50 --cpus 0 --body "$BODY" -H 'Authorization: Bearer sk-bench-master'
}
load 200 > "$OUT/warmup.json"
load 20000 > "$OUT/load.json" &
LOAD=$!
sleep 3
SPIES=()
for name in Gateway openai RateLimiter; do
  pid=$(pgrep -f "ServeReplica:gateway:$name" | head -1) || continue  # openai: placement deployment only
  .venv/bin/py-spy record -r 200 -d "$SECONDS_PROFILED" -p "$pid" --format raw \
    -o "$OUT/$name.raw" > /dev/null 2>&1 &
  SPIES+=($!)
done
wait "${SPIES[@]}" || true
kill "$LOAD" 2>/dev/null || true
for name in Gateway openai RateLimiter; do
  [ -f "$OUT/$name.raw" ] || continue
  "$PY" - "$OUT/$name.raw" > "$OUT/$name.txt" <<'EOF'
import collections, sys
own, total, samples = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    frames = stack.split(";")
    n = int(count)
    samples += n
    own[frames[-1]] += n
    for frame in set(frames):
        total[frame] += n
print(f"{samples} samples\n\n-- self --")
for frame, n in own.most_common(25):
    print(f"{100 * n / samples:5.1f}%  {frame}")
print("\n-- inclusive --")
for frame, n in total.most_common(40):
    print(f"{100 * n / samples:5.1f}%  {frame}")
EOF
done
echo "profiles in $OUT"
