#!/usr/bin/env bash
# The standalone lab, end to end, on this host (run as root):
#   1. install what is needed (setup.sh) and build a real OCI image from Debian's
#      busybox-static binary;
#   2. start `gstacks-agent standalone` (control plane, registry and agent);
#   3. push the image into the embedded registry with skopeo, create and activate a
#      blueprint from it, create a sandbox from the blueprint, and run a command in it
#      through a terminal session, printing what it printed;
#   4. keep the lab running until Ctrl-C or SIGTERM, then stop it cleanly.
# Environment: GSTACKS_STATE_DIR (default /var/lib/gstacks), GSTACKS_PORT (7480).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

state_dir=${GSTACKS_STATE_DIR:-/var/lib/gstacks}
port=${GSTACKS_PORT:-7480}
work=var/lab
mkdir -p "$work"
export GSTACKS_URL="http://127.0.0.1:$port"
gstacks=(.venv/bin/gstacks --url "$GSTACKS_URL")

echo "lab: building the busybox OCI image" >&2
.venv/bin/python scripts/build_busybox_image.py "$work/busybox-oci" --tag latest >/dev/null

echo "lab: starting gstacks-agent standalone (log: $work/standalone.log)" >&2
# Appended to, so that what an earlier run said stays readable.
log_start=$(stat -c %s "$work/standalone.log" 2>/dev/null || echo 0)
.venv/bin/gstacks-agent standalone --state-dir "$state_dir" --port "$port" \
  >>"$work/standalone.log" 2>&1 &
lab_pid=$!
stop_lab() {
  trap - INT TERM EXIT
  if kill -0 "$lab_pid" 2>/dev/null; then
    echo "lab: stopping" >&2
    kill -TERM "$lab_pid"
    wait "$lab_pid" || true
  fi
}
trap stop_lab INT TERM EXIT

this_run() { tail -c +"$((log_start + 1))" "$work/standalone.log"; }
for _ in $(seq 1 100); do
  if [ -s "$state_dir/admin-api-key" ] && this_run | grep -q "lab ready"; then break; fi
  kill -0 "$lab_pid" 2>/dev/null || { this_run >&2; exit 1; }
  sleep 0.2
done
this_run | grep -q "lab ready" || { echo "lab: did not start" >&2; exit 1; }
key=$(cat "$state_dir/admin-api-key")
export GSTACKS_API_KEY=$key

echo "lab: pushing the image with skopeo" >&2
skopeo copy --quiet --dest-tls-verify=false --dest-creds "admin:$key" \
  "oci:$work/busybox-oci:latest" "docker://127.0.0.1:$port/lab/busybox:latest"

find_blueprint() {
  "${gstacks[@]}" --json blueprint list | .venv/bin/python -c \
    'import json,sys; print(next((b["id"] for b in json.load(sys.stdin)["items"] if b["name"]=="busybox"), ""))'
}
blueprint_id=$(find_blueprint)
if [ -z "$blueprint_id" ]; then
  "${gstacks[@]}" blueprint create --name busybox --image lab/busybox:latest \
    --description "busybox-static from Debian" >/dev/null
  blueprint_id=$(find_blueprint)
fi
"${gstacks[@]}" blueprint activate "$blueprint_id" >/dev/null

# One sandbox named "lab": a second run of this script finds it again (or replaces
# it when it is no longer running).
read -r sandbox_id sandbox_status < <("${gstacks[@]}" --json sandbox list | .venv/bin/python -c \
  'import json,sys; print(next((s["id"]+" "+s["status"] for s in json.load(sys.stdin)["items"] if s["name"]=="lab"), "- -"))')
if [ "$sandbox_id" != "-" ] && [ "$sandbox_status" != "running" ]; then
  echo "lab: sandbox 'lab' ($sandbox_id) is $sandbox_status; replacing it" >&2
  "${gstacks[@]}" sandbox delete "$sandbox_id" >/dev/null
  sandbox_id="-"
fi
if [ "$sandbox_id" = "-" ]; then
  echo "lab: creating sandbox 'lab' from blueprint busybox ($blueprint_id)" >&2
  sandbox_id=$("${gstacks[@]}" --json sandbox create --blueprint busybox --name lab | \
    .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["id"])')
else
  echo "lab: sandbox 'lab' ($sandbox_id) is already running" >&2
fi

echo "lab: running a command in sandbox $sandbox_id through a terminal session:" >&2
"${gstacks[@]}" sandbox exec "$sandbox_id" -- \
  sh -c 'echo "hello from $(hostname)"; echo "processes:"; ps; echo "root:"; ls /'

cat >&2 <<TEXT

lab: ready. The lab keeps running until Ctrl-C. Try:
  export GSTACKS_URL=$GSTACKS_URL GSTACKS_API_KEY=\$(cat $state_dir/admin-api-key)
  .venv/bin/gstacks sandbox list
  .venv/bin/gstacks sandbox shell $sandbox_id
TEXT
wait "$lab_pid"
