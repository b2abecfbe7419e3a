#!/usr/bin/env bash
# A single-node SLURM on this machine for the cluster tests: `slurm.sh start | stop | status`.
#
# start: installs the packages if needed (scripts/system.sh), writes a minimal slurm.conf (no cgroups, no
# accounting) unless a site's own is there, starts munged, slurmctld and slurmd in the background and waits
# until the node is idle. Idempotent: a running daemon is left alone. stop: stops the daemons this script
# started (by their recorded PIDs), nothing else. Needs root, as slurmd does.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${CYTOATLAS_SLURM_DIR:-/tmp/cytoatlas-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by cytoatlas scripts/slurm.sh"

running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

write_conf() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    echo "slurm: using the existing $CONF (not written by this script)"
    return
  fi
  local cpus mem
  cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mkdir -p /etc/slurm "$STATE/spool" "$STATE/ctld"
  cat > "$CONF" <<CONF
$MARK
ClusterName=cytoatlas
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.daemon.pid
SlurmdPidFile=$STATE/slurmd.daemon.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
  echo started > "$STATE/munged.started"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.1; done
  echo "slurm: munged did not come up" >&2; exit 1
}

start() {
  bash scripts/system.sh >/dev/null
  mkdir -p "$STATE"
  write_conf
  start_munge
  if ! running slurmctld; then
    nohup slurmctld -D > "$STATE/slurmctld.out" 2>&1 & echo $! > "$STATE/slurmctld.pid"
  fi
  if ! running slurmd; then
    nohup slurmd -D -N localhost > "$STATE/slurmd.out" 2>&1 & echo $! > "$STATE/slurmd.pid"
  fi
  for _ in $(seq 150); do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
    case "$state" in idle*|mix*|alloc*) echo "slurm: up (node localhost $state)"; return;; esac
    sleep 0.2
  done
  echo "slurm: the node did not become idle (state '${state:-none}'); see $STATE/*.log" >&2
  exit 1
}

stop() {
  for d in slurmd slurmctld; do
    if running "$d"; then kill "$(cat "$STATE/$d.pid")"; fi
  done
  for d in slurmd slurmctld; do
    for _ in $(seq 50); do running "$d" || break; sleep 0.1; done
    rm -f "$STATE/$d.pid"
  done
  if [ -f "$STATE/munged.started" ]; then
    pkill -u munge -x munged || true
    rm -f "$STATE/munged.started"
  fi
  echo "slurm: stopped"
}

status() {
  for d in slurmctld slurmd; do
    if running "$d"; then echo "$d: running (pid $(cat "$STATE/$d.pid"))"; else echo "$d: not running"; fi
  done
  sinfo 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
