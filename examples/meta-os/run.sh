#!/usr/bin/env bash
# The meta-OS example in one command, from a fresh clone (as root on Debian; see README.md here):
#
#   ./examples/meta-os/run.sh [--keep] [--dir DIR] [--port N] [--screenshot PNG]
#
# 1. the virtualenv (.venv with the project and its test extra, which has numpy), when it is missing;
# 2. a single-node Slurm cluster on loopback (scripts/slurm), podman with the base image
#    (scripts/containers), Debian's chromium and playwright-core (scripts/browser-deps): each installs
#    only what is missing and starts only what does not answer;
# 3. metaos.py: a server, the colony, its three locations and executors, the workflow, the report.
#
# On exit (done, failed or Ctrl-C) it stops what it started: metaos.py its server and executors, and this
# script the Slurm daemons that its own call of scripts/slurm started (a cluster already running is left
# as it was). --keep keeps the server up (until Ctrl-C) to look around the dashboard.
set -euo pipefail
cd "$(dirname "$0")/../.."
log() { echo "meta-os: $*" >&2; }
slurm_started=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$slurm_started" ]; then
    # shellcheck disable=SC2086  # the pids, one word each (validated below)
    ./scripts/slurm stop $slurm_started || log "could not stop slurm $slurm_started"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
start=$(date +%s)

# -- 1. the virtualenv ---------------------------------------------------------------------------------
if ! .venv/bin/python -c 'import colonies, numpy' >/dev/null 2>&1; then
  if [ ! -x .venv/bin/python ]; then
    if ! python3 -c 'import ensurepip' >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      log "installing python3-venv"
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq python3-venv >/dev/null
    fi
    log "creating .venv"
    python3 -m venv .venv
  fi
  log "installing the project with its test extra into .venv"
  .venv/bin/python -m pip install -q -e '.[test]'
fi

# -- 2. Slurm, podman, chromium --------------------------------------------------------------------------
out=$(./scripts/slurm start) || { log "Slurm could not be started (see above)"; exit 1; }
slurm_started=$(printf '%s\n' "$out" | grep -E '^# started slurm [0-9]+( [0-9]+)*$' | sed 's/^# started slurm //' || true)
SLURM_CONF=$(printf '%s\n' "$out" | sed -n 's/^export COLONIES_TEST_SLURM_CONF=\([^[:space:];&|`$()]*\)$/\1/p')
[ -n "$SLURM_CONF" ] || { log "scripts/slurm named no slurm.conf"; exit 1; }
out=$(./scripts/containers) || { log "podman could not be provisioned (see above)"; exit 1; }
CONTAINERS_CONF=$(printf '%s\n' "$out" | sed -n 's/^export COLONIES_TEST_PODMAN_CONF=\([^[:space:];&|`$()]*\)$/\1/p')
[ -n "$CONTAINERS_CONF" ] || { log "scripts/containers named no containers.conf"; exit 1; }
./scripts/browser-deps
command -v node >/dev/null && [ -d clients/js/node_modules/playwright-core ] \
  || { log "the edge step needs node (>= 20) and playwright-core (scripts/browser-deps)"; exit 1; }
export SLURM_CONF CONTAINERS_CONF
log "ready in $(( $(date +%s) - start ))s${slurm_started:+ (started slurm $slurm_started; stopped on exit)}"

# -- 3. the example --------------------------------------------------------------------------------------
status=0
.venv/bin/python examples/meta-os/metaos.py "$@" || status=$?
log "finished in $(( $(date +%s) - start ))s (exit $status)"
exit $status
