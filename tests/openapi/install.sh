#!/bin/sh
# Installs the pinned OpenAPI tools of tests/openapi/package-lock.json
# (@redocly/cli and @stoplight/prism-cli, exact versions) into build/openapi/, outside the source tree.
# Idempotent: does nothing when the installed lock file is the committed one.
# `make openapi-deps` and tests/integration/test_openapi.py run it.
# Exit 0 ok, 3 npm is not installed, other codes npm's.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest=${OPENAPI_TOOLS_DIR:-$here/../../build/openapi}
if [ -x "$dest/node_modules/.bin/redocly" ] && [ -x "$dest/node_modules/.bin/prism" ] &&
    cmp -s "$here/package-lock.json" "$dest/package-lock.json"; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "openapi-deps: npm is not installed; cannot install @redocly/cli and @stoplight/prism-cli" >&2
    exit 3
fi
mkdir -p "$dest"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
cd "$dest"
echo "openapi-deps: npm ci in $dest" >&2
npm ci --no-audit --no-fund --loglevel=error >&2
