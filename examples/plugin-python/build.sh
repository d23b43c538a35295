#!/bin/sh
# Builds bin/totp.pyz (or $1): one executable file holding this plugin and
# the Python SDK, so the sha256 pin in handoff's config covers all of the
# plugin's own code. Needs only Debian's python3 (zipapp is in the
# standard library); the archive runs on /usr/bin/python3 with Debian's
# python3-grpcio, python3-protobuf and python3-cryptography.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/bin/totp.pyz}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$here/totp.py" "$stage/"
printf 'import totp\ntotp.main()\n' >"$stage/__main__.py"
cp -R "$here/../../sdk/python/handoff_plugin" "$stage/"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
# Fixed timestamps, so the same sources always give the same archive and pin.
find "$stage" -exec touch -d 1980-01-02T00:00:00Z {} +
# Bytecode beside each module (Python reads it from the archive, which it
# cannot write to), so a start does not compile the SDK again.
(cd "$stage" && /usr/bin/python3 -m compileall -q -b . >/dev/null) # relative paths: the same bytes from any stage dir
find "$stage" -exec touch -d 1980-01-02T00:00:00Z {} +
mkdir -p "$(dirname "$out")"
/usr/bin/python3 -m zipapp "$stage" -o "$out" -p "/usr/bin/python3 -sB"
echo "$out"
