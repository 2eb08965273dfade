#!/usr/bin/env bash
# Installs the ZooKeeper the replicated-ClickHouse tests use as coordinator:
# ZooKeeper 3.8, from Debian bookworm's `zookeeper` package and the Java
# libraries it loads, unpacked into .tools/zookeeper (or
# $COMET_TEST_ZOOKEEPER_ROOT) and never installed: a private apt state (its
# own source list, package lists and cache) fetches the .debs, so the
# system's packages and apt state are not touched and no service is started.
# It writes a launcher that runs the server in the foreground:
#   $ROOT/bin/comet-zookeeper ZOO_CFG
# which logs to stderr at $COMET_ZOOKEEPER_LOG_LEVEL (WARN by default).
# Needs `java` (11 or later) on PATH, as the tests do.
# Safe to run again: it does nothing when ZooKeeper is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

WANT=3.8.
ROOT=${COMET_TEST_ZOOKEEPER_ROOT:-.tools/zookeeper}
LAUNCHER="$ROOT/bin/comet-zookeeper"
JAR="$ROOT/usr/share/java/zookeeper.jar"

die() { echo "install-zookeeper: $*" >&2; exit 1; }
zk_version() { java -cp "$JAR" org.apache.zookeeper.version.VersionInfoMain 2>/dev/null | head -n1; }

command -v java >/dev/null 2>&1 || die "java is missing (ZooKeeper needs a Java runtime, e.g. openjdk-17-jre-headless)"
if [ -x "$LAUNCHER" ] && zk_version | grep -q "version $WANT"; then
  echo "install-zookeeper: $(zk_version) already in $ROOT (run $LAUNCHER ZOO_CFG)"
  exit 0
fi
started=$(date +%s)
# shellcheck source=scripts/private-apt.sh
. scripts/private-apt.sh
private_apt bookworm

echo "install-zookeeper: fetching Debian bookworm's zookeeper and its Java libraries from $mirror (private apt state)"
apt-get "${apt_private[@]}" -q update >"$state/update.log" 2>&1 || {
  tail -n 20 "$state/update.log" >&2
  die "apt-get update of bookworm failed"
}
version=$(apt-cache "${apt_private[@]}" policy zookeeper | awk '/Candidate:/ {print $2}')
case "$version" in
  "$WANT"*) ;;
  *) die "Debian bookworm's zookeeper is ${version:-missing}, not $WANT*" ;;
esac
# The Depends closure, followed only through Debian's Java library packages
# (lib*-java, and junit4, which libzookeeper-java names): following all of
# it would pull a JRE, X11 and systemd. The native -jni parts are left out
# too: snappy-java and netty-tcnative only need them when ZooKeeper is
# configured for snappy snapshots or OpenSSL, which the tests do not do.
packages=() frontier=(zookeeper)
while [ "${#frontier[@]}" -gt 0 ]; do
  packages+=("${frontier[@]}")
  deps=$(apt-cache "${apt_private[@]}" depends "${frontier[@]}" |
    awk '$1 ~ /Depends:$/ && $2 ~ /^(lib.*-java|junit4)$/ {print $2}' | sort -u)
  frontier=()
  for dep in $deps; do
    case " ${packages[*]} " in *" $dep "*) ;; *) frontier+=("$dep") ;; esac
  done
done
(cd "$state/download" && apt-get "${apt_private[@]}" -q download "${packages[@]}" >"$state/download.log" 2>&1) || {
  tail -n 20 "$state/download.log" >&2
  die "apt-get download ${packages[*]} failed"
}
rm -rf "$ROOT"
mkdir -p "$ROOT/bin" "$ROOT/etc/comet-zookeeper"
for deb in "$state"/download/*.deb; do
  dpkg-deb -x "$deb" "$ROOT"
done
# dpkg-deb keeps absolute links (to /etc/zookeeper/conf, ...): point them
# into $ROOT, so nothing here reads the host's files.
find "$ROOT" -type l -lname '/*' -exec sh -c 'for l; do ln -sfnr "$0$(readlink "$l")" "$l"; done' "$ROOT" {} +

cat >"$ROOT/etc/comet-zookeeper/log4j.properties" <<'EOF'
# Written by scripts/install-zookeeper.sh: everything to stderr, no files.
log4j.rootLogger=${zookeeper.log.level}, STDERR
log4j.appender.STDERR=org.apache.log4j.ConsoleAppender
log4j.appender.STDERR.Target=System.err
log4j.appender.STDERR.layout=org.apache.log4j.PatternLayout
log4j.appender.STDERR.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1}: %m%n
EOF
cat >"$LAUNCHER" <<'EOF'
#!/bin/sh
# Written by scripts/install-zookeeper.sh. Runs ZooKeeper in the foreground
# with the given zoo.cfg (standalone, or an ensemble member with its myid):
#   comet-zookeeper ZOO_CFG
# Logs to stderr at $COMET_ZOOKEEPER_LOG_LEVEL (WARN by default).
set -eu
[ "$#" -eq 1 ] || { echo "usage: comet-zookeeper ZOO_CFG" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
cfg=$1
case $cfg in /*) ;; *) cfg=$PWD/$cfg ;; esac
jars=$root/usr/share/java
# Every jar unpacked here (regular files only: the links are version
# aliases), with log4j 1.2 as the one SLF4J binding and none of the bridges
# that would loop back into it. zookeeper.jar goes last: its manifest's
# Class-Path names the host's /usr/share/java, which must not shadow these.
cp=$(find "$jars" -maxdepth 1 -type f -name '*.jar' ! -name zookeeper.jar ! -name '*slf4j*' | sort | tr '\n' :)
exec java -XX:+UseSerialGC -Xmx512m \
  -Dlog4j.configuration="file:$root/etc/comet-zookeeper/log4j.properties" \
  -Dzookeeper.log.level="${COMET_ZOOKEEPER_LOG_LEVEL:-WARN}" \
  -cp "$cp$jars/slf4j-api.jar:$jars/slf4j-log4j12.jar:$jars/zookeeper.jar" \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$cfg"
EOF
chmod +x "$LAUNCHER"

zk_version | grep -q "version $WANT" || die "$JAR does not run or is not $WANT*"
echo "install-zookeeper: ready ($(zk_version), ${#packages[@]} packages; run $LAUNCHER ZOO_CFG; $(($(date +%s) - started)) s)"
