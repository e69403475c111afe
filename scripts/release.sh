#!/usr/bin/env bash
# `npm run release`: builds and writes maild-<version>-linux-x64.tar.gz, which unpacks to maild/ with
#   node/bin/node   the pinned Node.js runtime (package.json config.node_runtime)
#   bin/maild       runs the bundled node on dist/src/cli/index.js
#   dist/src, node_modules (production dependencies only), migrations, config, README.md
# Installed as /opt/maild (README: "Production install on Debian 12"). --no-build packs the dist/ that
# is there (the install test, right after `npm test` built it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
version="$(node -p 'require("./package.json").version')"
out="$root/maild-$version-linux-x64.tar.gz"
node_dir="$(bash scripts/node-runtime.sh)"

[ "${1:-}" = --no-build ] || npx tsc -p tsconfig.json

staging="$(mktemp -d "${TMPDIR:-/tmp}/maild-release.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
dest="$staging/maild"
mkdir -p "$dest/dist" "$dest/bin" "$dest/node/bin"
cp -a dist/src "$dest/dist/src"
cp -a migrations config README.md package.json package-lock.json "$dest/"
[ -f LICENSE ] && cp LICENSE "$dest/"
# argon2 ships prebuilt binaries in its package: no install scripts, no compiler.
(cd "$dest" && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error)
cp "$node_dir/bin/node" "$dest/node/bin/node"
cp "$node_dir/LICENSE" "$dest/node/LICENSE"
cat >"$dest/bin/maild" <<'WRAPPER'
#!/bin/sh
# Runs maild with the Node.js runtime bundled next to it, wherever the tree was unpacked.
here="$(dirname "$(readlink -f "$0")")/.."
exec "$here/node/bin/node" "$here/dist/src/cli/index.js" "$@"
WRAPPER
chmod 0755 "$dest/bin/maild"

# Written aside and renamed: two builds at once (the install tests) each leave a whole tarball.
tar -czf "$out.tmp.$$" -C "$staging" --owner=0 --group=0 maild
mv "$out.tmp.$$" "$out"
echo "$out"
