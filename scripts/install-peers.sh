#!/usr/bin/env bash
# Installs the real peer programs the integration tests run against, from
# Debian's packages: Prometheus (with promtool), node_exporter, Alertmanager
# and VictoriaMetrics. The packages' services are NOT started (a temporary
# policy-rc.d forbids it) and anything they started anyway is stopped, so
# the tests start their own instances on free ports.
# Safe to run again: it does nothing when the programs are already there.
set -euo pipefail

PACKAGES=(prometheus prometheus-node-exporter prometheus-alertmanager victoria-metrics)
# What those packages install in /usr/bin, and what the tests run.
BINARIES=(prometheus promtool prometheus-node-exporter prometheus-alertmanager victoria-metrics)

die() { echo "install-peers: $*" >&2; exit 1; }

all_present() {
  local b
  for b in "${BINARIES[@]}"; do
    command -v "$b" >/dev/null 2>&1 || return 1
  done
}

print_versions() {
  echo "install-peers: $(prometheus --version 2>&1 | head -n1)"
  echo "install-peers: $(promtool --version 2>&1 | head -n1)"
  echo "install-peers: $(prometheus-node-exporter --version 2>&1 | head -n1)"
  echo "install-peers: $(prometheus-alertmanager --version 2>&1 | head -n1)"
  # Debian's victoria-metrics build prints an empty -version: ask dpkg.
  echo "install-peers: victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null || echo '(not from a Debian package)')"
}

if all_present; then
  echo "install-peers: peers already installed"
  print_versions
  exit 0
fi

command -v apt-get >/dev/null 2>&1 ||
  die "apt-get is missing; install ${PACKAGES[*]} with your package manager (this script expects Debian 12 or newer)"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 ||
    die "must run as root (or with sudo available) to apt-get install ${PACKAGES[*]}"
  SUDO=(sudo)
fi
run() { "${SUDO[@]}" "$@"; }

started=$(date +%s)

# The exact processes (by pid) the packages may start: whatever runs one of
# their programs as their service accounts after the install and did not
# before it. (By executable, as the kernel cuts process names to 15
# characters; by owner, so a test's own peers are never touched.)
peer_pids() {
  local exe pid
  for exe in /proc/[0-9]*/exe; do
    pid=${exe#/proc/}
    pid=${pid%/exe}
    case "$(stat -c %U "/proc/$pid" 2>/dev/null || true)" in
      prometheus | _victoria-metrics) ;;
      *) continue ;;
    esac
    case "$(run readlink "$exe" 2>/dev/null || true)" in
      /usr/bin/prometheus | /usr/bin/prometheus-node-exporter | \
        /usr/bin/prometheus-alertmanager | /usr/bin/victoria-metrics)
        echo "$pid" ;;
    esac
  done | sort
}
before_pids=$(peer_pids)
newly_installed=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
    newly_installed+=("$p")
done

# Forbid the maintainer scripts from starting services (invoke-rc.d and
# deb-systemd-invoke both honour policy-rc.d); remove it only if it is ours.
POLICY=/usr/sbin/policy-rc.d
created_policy=false
cleanup() {
  if [ "$created_policy" = true ]; then
    run rm -f "$POLICY"
  fi
}
trap cleanup EXIT
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# install-peers.sh: no service starts during the install\nexit 101\n' |
    run tee "$POLICY" >/dev/null
  run chmod 755 "$POLICY"
  created_policy=true
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# apt-get update only when the package lists do not know every package.
candidates_known() {
  local p cand
  for p in "${PACKAGES[@]}"; do
    cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [ -n "$cand" ] && [ "$cand" != "(none)" ] || return 1
  done
}
if ! candidates_known; then
  echo "install-peers: apt-get update"
  run env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
fi

echo "install-peers: apt-get install ${PACKAGES[*]}"
if ! run env DEBIAN_FRONTEND=noninteractive apt-get install "${APT_OPTS[@]}" "${PACKAGES[@]}" >/tmp/install-peers.$$.log 2>&1; then
  # A stale list can name files the mirror no longer has: refresh once, retry.
  echo "install-peers: install failed; apt-get update and retrying"
  run env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  run env DEBIAN_FRONTEND=noninteractive apt-get install "${APT_OPTS[@]}" "${PACKAGES[@]}" >/tmp/install-peers.$$.log 2>&1 || {
    tail -n 30 /tmp/install-peers.$$.log >&2
    die "apt-get install ${PACKAGES[*]} failed (full log: /tmp/install-peers.$$.log)"
  }
fi
rm -f /tmp/install-peers.$$.log

# Under systemd the packages enable their units: turn those off for the
# packages this run installed, so nothing takes ports 9090, 9093, 9100 and
# 8428 now or at the next boot.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  units=()
  for p in "${newly_installed[@]}"; do
    units+=("$p.service")
  done
  if [ "${#units[@]}" -gt 0 ]; then
    run systemctl disable --now "${units[@]}" >/dev/null 2>&1 || true
  fi
fi

# Stop, by pid, whatever the packages started despite policy-rc.d (the
# tests want the default ports free and no stray writers).
after_pids=$(peer_pids)
new_pids=$(comm -13 <(echo "$before_pids") <(echo "$after_pids") | grep . || true)
if [ -n "$new_pids" ]; then
  for pid in $new_pids; do
    run kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do
    alive=false
    for pid in $new_pids; do
      run kill -0 "$pid" 2>/dev/null && alive=true
    done
    [ "$alive" = false ] && break
    sleep 0.1
  done
  for pid in $new_pids; do
    run kill -KILL "$pid" 2>/dev/null || true
  done
  echo "install-peers: stopped the services the packages started (pids: $(echo $new_pids))"
fi

all_present || die "installed ${PACKAGES[*]} but a program is still missing from PATH: ${BINARIES[*]}"
echo "install-peers: installed in $(($(date +%s) - started)) s"
print_versions
