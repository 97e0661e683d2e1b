#!/usr/bin/env bash
# Installs what vdbak's tests, demo and benchmarks need on a fresh Debian machine:
# the Debian tools we test against (only when missing) and the npm packages (npm ci).
# Usage: scripts/ensure-deps.sh [--no-npm]
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package
declare -A NEED=(
  [qemu-img]=qemu-utils [qemu-io]=qemu-utils
  [fls]=sleuthkit [icat]=sleuthkit [istat]=sleuthkit
  [mkfs.ext4]=e2fsprogs [debugfs]=e2fsprogs
  [mkntfs]=ntfs-3g [ntfs-3g]=ntfs-3g [ntfsls]=ntfs-3g
  [sfdisk]=fdisk [setfattr]=attr [jq]=jq [sha256sum]=coreutils
  # npm ci builds the better-sqlite3 and zstd-napi addons from source when no prebuilt binary can be fetched
  [g++]=g++ [make]=make [python3]=python3
)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "ensure-deps: installing Debian packages: $pkgs" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

if [ "${1:-}" != "--no-npm" ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
