# Sourced by bench/serve/experiment_run and experiment_instructions: the
# home both start from.
#
# experiment_home TYCHO HOME MODEL DATA LOG: trains MODEL ("spam": the GBT
# of examples/spam/train.lua; "spam_logistic": bench/serve/train_logistic.lua)
# into HOME and points its staging alias at the production version, so an
# experiment between MODEL@production and MODEL@staging compares equal
# model costs. Prints the version; on failure prints LOG to stderr and
# returns 1.
experiment_home() {
  local tycho=$1 home=$2 model=$3 data=$4 log=$5 script=examples/spam/train.lua version
  [ "$model" = spam ] || script=bench/serve/train_logistic.lua
  "$tycho" --home "$home" run "$script" "$data" >"$log" 2>&1 || { cat "$log" >&2; return 1; }
  version=$("$tycho" --home "$home" models list | awk -v m="$model" '$1 == m {
    for (i = 1; i <= NF; i++) if ($i ~ /^production=/) { sub(/^production=/, "", $i); print $i } }')
  [ -n "$version" ] || { echo "bench/serve: $model has no production version" >&2; return 1; }
  "$tycho" --home "$home" models promote "$model" "$version" staging >/dev/null || return 1
  echo "$version"
}
