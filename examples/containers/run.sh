#!/usr/bin/env bash
# A colony in containers, in one command: the server in a container (SQLite on a volume), two executor
# containers built FROM the project's executor image with mywork.py on top, real work submitted from the
# host, shown done; then everything it started is removed (also on Ctrl-C or an error).
#
#   ./examples/containers/run.sh          (from a checkout with .venv made: README "Run it")
#
# Env: COLONIES_EXAMPLE_PORT (default: a free port), COLONIES_EXAMPLE_KEEP=1 (leave it running until
# Ctrl-C, to look around with the `colonies` CLI; the variables to use are printed).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
COLONIES=("$PY" -m colonies)
# podman settings these machines need (runc, lowered rlimits, host networking): deploy/podman/containers.conf
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
RUN=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
LABEL=colonies.example=$RUN
USER_IMAGE=localhost/colonies-example-mywork:$RUN
say() { printf '\n== %s\n' "$*"; }

[ -x "$PY" ] || { echo "no $PY: make the venv first (python3 -m venv .venv && .venv/bin/pip install -e .)" >&2; exit 1; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "${SLEEPER:-}" ]; then kill "$SLEEPER" 2>/dev/null || true; fi
  say "cleaning up"
  podman ps -aq --filter "label=$LABEL" | xargs -r podman rm -f -t 5 >/dev/null 2>&1 || true
  podman secret rm "colonies-example-$RUN" >/dev/null 2>&1 || true
  podman volume rm -f "colonies-example-$RUN" >/dev/null 2>&1 || true
  podman rmi -f "$USER_IMAGE" >/dev/null 2>&1 || true
  echo "removed the containers, volume, secret and image of run $RUN"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "images (scripts/containers: the Debian base; scripts/build-images: server and executor, cached)"
"$ROOT/scripts/containers" >/dev/null
"$ROOT/scripts/build-images" >/dev/null
podman build -q --format docker --pull=never --label "$LABEL" -t "$USER_IMAGE" "$HERE" >/dev/null
podman images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E 'colonies-(server|executor):dev|example' || true

key() { "$PY" -c 'from colonies.protocol.crypto import generate_prvkey; print(generate_prvkey())'; }
idof() { "${COLONIES[@]}" security id --prvkey "$1"; }
PORT=${COLONIES_EXAMPLE_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
SERVER_KEY=$(key); COLONY_KEY=$(key); USER_KEY=$(key); EXEC1_KEY=$(key); EXEC2_KEY=$(key)
export COLONIES_SERVER_HOST=127.0.0.1 COLONIES_SERVER_PORT=$PORT COLONIES_COLONY_NAME=example
export COLONIES_SERVER_PRVKEY=$SERVER_KEY COLONIES_COLONY_PRVKEY=$COLONY_KEY COLONIES_PRVKEY=$USER_KEY

say "server container on 127.0.0.1:$PORT (SQLite in the volume colonies-example-$RUN)"
podman volume create --label "$LABEL" "colonies-example-$RUN" >/dev/null
podman run -d --name "colonies-example-server-$RUN" --label "$LABEL" \
  -e COLONIES_SERVER_ID="$(idof "$SERVER_KEY")" -e COLONIES_SERVER_PORT="$PORT" -e COLONIES_SERVER_BIND=127.0.0.1 \
  -v "colonies-example-$RUN:/var/lib/colonies" localhost/colonies-server:dev >/dev/null 2>&1
"$PY" - "$PORT" <<'PYEOF' || { podman logs "colonies-example-server-$RUN" 2>&1 | tail -20; exit 1; }
import sys, time, httpx
deadline = time.monotonic() + 30
while True:
    try:
        if httpx.get(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the server did not answer /health within 30 s")
    time.sleep(0.1)
PYEOF
"${COLONIES[@]}" server alive

say "colony 'example' and a user, from the host"
"${COLONIES[@]}" colony add --name example --colonyid "$(idof "$COLONY_KEY")" >/dev/null
"${COLONIES[@]}" user add --name alice --userid "$(idof "$USER_KEY")" >/dev/null

say "executor 1: keys in its environment, adds and approves itself with the colony owner's key"
podman run -d --name "colonies-example-exec1-$RUN" --label "$LABEL" \
  -e COLONIES_SERVER_HOST=127.0.0.1 -e COLONIES_SERVER_PORT="$PORT" -e COLONIES_COLONY_NAME=example \
  -e COLONIES_EXECUTOR_NAME=exec1 -e COLONIES_EXECUTOR_PRVKEY="$EXEC1_KEY" -e COLONIES_COLONY_PRVKEY="$COLONY_KEY" \
  "$USER_IMAGE" >/dev/null 2>&1

say "executor 2: added and approved from the host, only its own key in a podman secret"
"${COLONIES[@]}" executor add --name exec2 --type mywork --executorid "$(idof "$EXEC2_KEY")" --approve >/dev/null
printf '%s' "$EXEC2_KEY" | podman secret create "colonies-example-$RUN" - >/dev/null
podman run -d --name "colonies-example-exec2-$RUN" --label "$LABEL" \
  --secret "colonies-example-$RUN,type=mount,target=executor-key,uid=10001,gid=10001,mode=0400" \
  -e COLONIES_SERVER_HOST=127.0.0.1 -e COLONIES_SERVER_PORT="$PORT" -e COLONIES_COLONY_NAME=example \
  -e COLONIES_EXECUTOR_PRVKEY_FILE=/run/secrets/executor-key "$USER_IMAGE" >/dev/null 2>&1

# both executors have announced their functions (bounded: 60 s)
"$PY" - <<'PYEOF' || { for c in exec1 exec2; do podman logs "colonies-example-$c-$RUN" 2>&1 | tail -10; done; exit 1; }
import os, sys, time
from colonies import Client
with Client("127.0.0.1", int(os.environ["COLONIES_SERVER_PORT"]), prvkey=os.environ["COLONIES_PRVKEY"]) as c:
    deadline = time.monotonic() + 60
    while {f.executorname for f in c.get_functions("example") or []} != {"exec1", "exec2"}:
        if time.monotonic() > deadline:
            sys.exit("the executors did not announce themselves within 60 s")
        time.sleep(0.2)
PYEOF
COLUMNS=${COLUMNS:-120} "${COLONIES[@]}" executor ls

say "nine processes submitted from the host (examples/containers/submit.py)"
"$PY" "$HERE/submit.py"

say "the same, seen with the CLI"
COLUMNS=${COLUMNS:-120} "${COLONIES[@]}" process pss --count 9

for c in exec1 exec2; do
  podman healthcheck run "colonies-example-$c-$RUN" >/dev/null && echo "executor $c: healthy"
done
if [ "${COLONIES_EXAMPLE_KEEP:-0}" = 1 ]; then
  say "running; in another shell:"
  echo "export COLONIES_SERVER_HOST=127.0.0.1 COLONIES_SERVER_PORT=$PORT COLONIES_COLONY_NAME=example COLONIES_PRVKEY=$USER_KEY"
  echo "Ctrl-C here stops and removes it all."
  sleep infinity &
  SLEEPER=$!
  wait "$SLEEPER"
fi
say "podman stop: the executors drain (finish what runs, take no more) and exit 0"
podman stop -t 30 "colonies-example-exec1-$RUN" "colonies-example-exec2-$RUN" >/dev/null 2>&1
for c in exec1 exec2; do
  echo "executor $c exited with $(podman inspect --format '{{.State.ExitCode}}' "colonies-example-$c-$RUN")"
done
