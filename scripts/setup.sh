#!/usr/bin/env bash
# Installs what Aegis needs on a fresh Debian machine, then builds it. Idempotent and
# quick when everything is already there. Usage: scripts/setup.sh [--test] [--bench]
#   --test   also the packages the test suite uses (rsync, acl and attr for extended attributes,
#            a Ceph RADOS gateway for S3 tests)
#   --bench  also restic and borg (with pyfuse3, which borg mount needs), the peers `npm run bench` compares against
set -euo pipefail
cd "$(dirname "$0")/.."

# libfuse 3 and its headers for the mount's FUSE binding (native/aegis_fuse.c); fuse3
# also provides the fusermount commands (it replaces Debian's libfuse 2 "fuse").
want_debs=(fuse3 libfuse3-3 libfuse3-dev pkg-config)
for arg in "$@"; do
  case "$arg" in
    --test) want_debs+=(rsync acl attr radosgw ceph-mon ceph-osd ceph-common bc curl psmisc) ;;
    --bench) want_debs+=(rsync restic borgbackup python3-pyfuse3) ;;
  esac
done

missing=()
for p in "${want_debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
for tool in g++ make python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "aegis setup: missing Debian packages: ${missing[*]}" >&2
    echo "install them as root:  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "aegis setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages: reinstall when package.json or the lockfile changed since the last install.
stamp=node_modules/.aegis-setup-stamp
if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || { [ -f package-lock.json ] && [ package-lock.json -nt "$stamp" ]; }; then
  echo "aegis setup: installing npm packages (better-sqlite3 and zstd build from source, about a minute)" >&2
  # npm ci rejects lockfiles written here (optional per-platform packages are not recorded), so install.
  npm install --no-audit --no-fund >&2
  touch "$stamp"
fi

# The native addons: aegis_native (syscalls, AES-GCM, chunking) and aegis_fuse (the mount).
addon=native/build/Release/aegis_native.node
fuse_addon=native/build/Release/aegis_fuse.node
if [ ! -f "$addon" ] || [ ! -f "$fuse_addon" ] || [ native/aegis_native.c -nt "$addon" ] || [ native/aegis_fuse.c -nt "$fuse_addon" ] || [ native/binding.gyp -nt "$addon" ]; then
  npm run --silent build:native >&2
fi

# Compile when any source is newer than the last build.
if [ ! -f dist/.build-stamp ] || [ -n "$(find src mount scripts bin tsconfig.json -newer dist/.build-stamp -name '*.ts' -o -newer dist/.build-stamp -name 'tsconfig.json' 2>/dev/null | head -1)" ]; then
  npx --no-install tsc -p tsconfig.json
  touch dist/.build-stamp
fi
