#!/bin/sh
# npm's prepare step (npm install / npm ci in a checkout): builds dist/ with TypeScript, a dev
# dependency. `npm ci --omit=dev` has no TypeScript: a tree that already holds dist/ (an unpacked
# npm pack) keeps it; a bare checkout cannot be built and says what to do instead.
set -eu
cd "$(dirname "$0")/.."
if [ -x node_modules/.bin/tsc ]; then
  exec node_modules/.bin/tsc -p tsconfig.json
fi
if [ -f dist/src/main.js ]; then
  echo "maild: no TypeScript (dev dependencies omitted): using the dist/ that is here"
  exit 0
fi
cat >&2 <<'MSG'
maild: this checkout has no dist/ and no TypeScript to build it (dev dependencies omitted).
  Build it here with a full install:  npm ci && npm run build
  For a production install use a release instead (README, "Production install on Debian 12"):
    npm run release   a tarball with its own Node.js runtime, unpacked to /opt/maild
    npm pack          a package with dist/ that installs with npm install -g, no dev dependencies
MSG
exit 1
