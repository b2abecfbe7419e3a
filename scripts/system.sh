#!/usr/bin/env bash
# System packages the test suite needs, from Debian's archive (as root): Chromium (the web page and the HTML
# report are checked in headless Chromium) and SLURM with munge (the cluster test runs a single-node SLURM,
# see scripts/slurm.sh). Idempotent: installs only what is missing, and does nothing when all is there.
set -euo pipefail

need=()
command -v chromium >/dev/null || need+=(chromium)
for pkg in slurmctld slurmd slurm-client munge; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
fc-list 2>/dev/null | grep -qi dejavu || need+=(fonts-dejavu-core)  # text in screenshots and figures

if [ ${#need[@]} -eq 0 ]; then
  echo "system: chromium, slurm and munge present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "system: missing ${need[*]}; run this script as root (apt-get install)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "system: installing ${need[*]}"
# a fresh machine may have no package lists yet: update only when the install cannot find the packages
apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
echo "system: installed ${need[*]}"
