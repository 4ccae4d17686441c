#!/bin/bash
# `make run`: start hypeman-api in the foreground with a data dir under the
# repo, then print a token and a first command to try. Ctrl-C stops it.
set -euo pipefail

BIN=${1:?bin dir}
DATA_DIR=${2:?data dir}
PORT=${3:-8080}
ADDR=${LISTEN_ADDR:-127.0.0.1}

mkdir -p "$DATA_DIR"

# Instances get a network (bridge vmbr0, 10.100.0.0/16, NAT) when this runs as
# root; that needs IP forwarding, which a fresh machine has off.
if [ "${NETWORK_ENABLED:-true}" = true ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "run: not root, so instances get no network (NETWORK_ENABLED=false)" >&2
		export NETWORK_ENABLED=false
	elif [ "$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null)" != 1 ]; then
		echo "run: turning on IP forwarding for the instances' network (sysctl net.ipv4.ip_forward=1)" >&2
		sysctl -qw net.ipv4.ip_forward=1
	fi
fi
DATA_DIR="$(cd "$DATA_DIR" && pwd)"
export DATA_DIR PORT LISTEN_ADDR="$ADDR"

"$BIN/hypeman-api" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' INT TERM

for _ in $(seq 1 100); do
	if curl -fsS "http://$ADDR:$PORT/health" >/dev/null 2>&1; then
		break
	fi
	if ! kill -0 $pid 2>/dev/null; then
		wait $pid || exit $?
	fi
	sleep 0.1
done

token=$("$BIN/hypeman-token" --data-dir "$DATA_DIR" --sub "${USER:-$(id -un)}@make-run" --duration 7d)
cat <<MSG

hypeman-api is listening on http://$ADDR:$PORT (data in $DATA_DIR)

  export HYPEMAN_BASE_URL=http://$ADDR:$PORT
  export HYPEMAN_API_KEY=$token
  $BIN/hypeman resources
  $BIN/hypeman run busybox echo hello from a microVM
  curl -H "Authorization: Bearer \$HYPEMAN_API_KEY" http://$ADDR:$PORT/resources

Press Ctrl-C to stop.
MSG
wait $pid || true
wait $pid 2>/dev/null || true
