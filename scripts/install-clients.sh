#!/usr/bin/env bash
# Install the official Losant REST clients into target/clients (a local folder, nothing global):
#   target/clients/venv            Python virtualenv with losant-rest (PyPI)
#   target/clients/js/node_modules losant-rest (npm registry)
# Idempotent: does nothing when both are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/clients
mkdir -p "$dest/js"
if [ ! -x "$dest/venv/bin/python" ] || ! "$dest/venv/bin/python" -c 'import losant_rest' 2>/dev/null; then
  python3 -m venv "$dest/venv"
  "$dest/venv/bin/pip" install --quiet --disable-pip-version-check 'losant-rest==2.3.0'
fi
if [ ! -d "$dest/js/node_modules/losant-rest" ]; then
  (cd "$dest/js" && [ -f package.json ] || echo '{"name":"tollgate-client-tests","private":true}' > package.json
   cd "$OLDPWD/$dest/js" && npm install --silent --no-audit --no-fund 'losant-rest@2' >/dev/null)
fi
"$dest/venv/bin/python" -c 'import losant_rest, sys; print("python losant-rest ok")'
node -e 'require(process.argv[1]); console.log("js losant-rest ok")' "$PWD/$dest/js/node_modules/losant-rest"
