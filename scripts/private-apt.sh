# Sourced by the install scripts that fetch Debian packages without
# installing them: `private_apt SUITE` sets up an apt state of our own (its
# own source list with the machine's Debian mirror and SUITE, package lists
# and cache in a temporary directory removed on exit), so the system's
# packages and apt state are never touched. It sets:
#   mirror       the Debian mirror used
#   state        the temporary directory ($state/download is for .debs)
#   apt_private  the options to give apt-get and apt-cache
# The caller defines `die`.

private_apt() {
  local suite=$1 keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  command -v apt-get >/dev/null 2>&1 || die "apt-get is missing (this script expects Debian)"
  command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is missing (this script expects Debian)"
  # The machine's own Debian mirror, from its deb822 or one-line sources.
  mirror=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) {print $i; exit}}' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  fi
  mirror=${mirror:-http://deb.debian.org/debian}
  [ -r "$keyring" ] || die "$keyring is missing (package debian-archive-keyring)"

  state=$(mktemp -d -t comet-apt-XXXXXX)
  # shellcheck disable=SC2064 # expanded now, on purpose
  trap "rm -rf '$state'" EXIT
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/download"
  echo "deb [signed-by=$keyring] $mirror $suite main" >"$state/sources.list"
  apt_private=(-o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
    # Kept even where docker-clean turns it off: otherwise every apt-cache
    # call rebuilds it (about 1 s each).
    -o Dir::Cache::pkgcache=pkgcache.bin -o Dir::Cache::srcpkgcache=srcpkgcache.bin)
  # As root, apt would hand the downloads to its `_apt` user, which cannot
  # write into our private directories.
  if [ "$(id -u)" -eq 0 ]; then
    apt_private+=(-o APT::Sandbox::User=root)
  fi
}
