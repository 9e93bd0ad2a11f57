#!/usr/bin/env bash
# Runs one recipe end to end on a fresh home: bash recipes/run.sh NAME [--quick]
# Installs what is missing (Debian packages), builds Tycho, then runs the
# recipe's main.lua. The home is $TYCHO_HOME or /tmp/tycho-recipe-NAME.
set -euo pipefail
name=${1:?usage: bash recipes/run.sh NAME [--quick]}
shift
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash .ci/deps
[ -x build/tycho ] || bash .ci/build
home="${TYCHO_HOME:-/tmp/tycho-recipe-$name}"
rm -rf "$home"
exec build/tycho --home "$home" run "recipes/$name/main.lua" "$@"
