#!/usr/bin/env bash
# `cmake --install` gives a tycho that finds its Lua modules from any
# working directory, with the console embedded. Usage: install_check.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
prefix=$(mktemp -d /tmp/tycho-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cd /
script="$prefix/check.lua"
echo 'local t = require "tycho"; print(t.version, require("tycho.internal").lua_dir)' > "$script"
out=$("$prefix/bin/tycho" run "$script")
case "$out" in
  *"$prefix/share/tycho/lua"*) echo "ok: $out" ;;
  *) echo "installed tycho used the wrong Lua tree: $out" >&2; exit 1 ;;
esac
# The console is embedded in the binary: the installed tycho holds it with
# no file beside it (when this build made one).
if [ -f "$build/console/console.js" ]; then
  echo 'print(require("tycho.serve.console_routes").built())' > "$script"
  [ "$("$prefix/bin/tycho" run "$script")" = true ] || { echo "the installed tycho holds no console" >&2; exit 1; }
  echo "ok: the installed tycho holds the console"
fi
