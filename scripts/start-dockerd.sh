#!/usr/bin/env bash
# Makes sure a docker engine answers: does nothing if `docker info` already works, otherwise starts
# dockerd in the background (log: /var/log/ztp-dockerd.log) and waits up to 60 s for it.
# dockerd is started directly, not through systemd/service, because this machine may have neither.
set -euo pipefail
LOG=/var/log/ztp-dockerd.log
WAIT=${ZTP_DOCKERD_WAIT:-60}

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "start-dockerd.sh: docker is not running and starting dockerd needs root: run with sudo" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "start-dockerd.sh: dockerd not found: run scripts/setup-debian.sh --docker" >&2
  exit 1
fi

echo "start-dockerd.sh: starting dockerd (log: $LOG)" >&2
# setsid + nohup: the daemon must outlive this script and the shell or CI step that ran it.
setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
DOCKERD_PID=$!

for _ in $(seq 1 "$WAIT"); do
  if docker info >/dev/null 2>&1; then
    echo "start-dockerd.sh: dockerd ready (pid $DOCKERD_PID)" >&2
    exit 0
  fi
  if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
    echo "start-dockerd.sh: dockerd exited during start-up; last log lines:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  sleep 1
done
echo "start-dockerd.sh: dockerd not ready after ${WAIT}s; last log lines:" >&2
tail -n 20 "$LOG" >&2
exit 1
