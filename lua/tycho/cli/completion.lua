--- `tycho completion bash`: a bash completion script. Commands,
-- subcommands and options come from the help topics (cli/help.lua) and the
-- C commands; model and view names are asked of the home when completing
-- (`tycho models list --json`, `tycho features list --json`), so they are
-- always current.
local help = require "tycho.cli.help"

local M = {}

local C_COMMANDS = { "run", "repl", "serve", "ui", "test", "dag", "version", "help" }

-- Flags named in a usage line ("--json", "--window"...).
local function flags_of(usage, into, seen)
  for flag in usage:gmatch("%-%-[%w%-]+") do
    if not seen[flag] then
      seen[flag] = true
      into[#into + 1] = flag
    end
  end
end

local function words()
  local commands, subs, flags = {}, {}, {}
  for _, c in ipairs(C_COMMANDS) do commands[#commands + 1] = c end
  local names = {}
  for name in pairs(help.TOPICS) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local t = help.TOPICS[name]
    commands[#commands + 1] = name
    local list, seen, fl = {}, {}, {}
    flags_of(t.usage, fl, seen)
    for sub, s in pairs(t.subs or {}) do
      list[#list + 1] = sub
      flags_of(s.usage, fl, seen)
    end
    table.sort(list)
    table.sort(fl)
    fl[#fl + 1] = "--help"
    subs[name], flags[name] = list, fl
  end
  table.sort(commands)
  return commands, subs, flags
end

--- Prints the script for shell (only "bash"); the exit code.
function M.main(shell)
  if shell ~= "bash" then
    io.stderr:write("tycho completion: only bash is supported: tycho completion bash\n")
    return 2
  end
  local commands, subs, flags = words()
  local cases = {}
  local names = {}
  for name in pairs(subs) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    cases[#cases + 1] = string.format("    %s) subs=%q; flags=%q ;;", name, table.concat(subs[name], " "),
      table.concat(flags[name], " "))
  end
  io.write(([==[
# bash completion for tycho (tycho completion bash)
_tycho_names() {
  # Model or view names from the home, through the CLI's own JSON.
  tycho "$@" 2>/dev/null | grep -o '"name":"[^"]*"' | cut -d'"' -f4
}
_tycho() {
  local cur=${COMP_WORDS[COMP_CWORD]} cmd="" sub="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --home) ((i++)) ;;
      -*) ;;
      *) if [[ -z $cmd ]]; then cmd=${COMP_WORDS[i]}; elif [[ -z $sub ]]; then sub=${COMP_WORDS[i]}; fi ;;
    esac
  done
  if [[ -z $cmd ]]; then
    COMPREPLY=($(compgen -W "@COMMANDS@ --home --help --version" -- "$cur")); return
  fi
  local subs="" flags="--help"
  case $cmd in
@CASES@
    *) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$flags" -- "$cur")); return; fi
  if [[ -z $sub && -n $subs ]]; then COMPREPLY=($(compgen -W "$subs" -- "$cur")); return; fi
  case $cmd in
    models|score|monitor) COMPREPLY=($(compgen -W "$(_tycho_names models list --json | sort -u)" -- "$cur")) ;;
    features) COMPREPLY=($(compgen -W "$(_tycho_names features list --json | sort -u)" -- "$cur")
                         $(compgen -f -- "$cur")) ;;
    *) COMPREPLY=($(compgen -f -- "$cur")) ;;
  esac
}
complete -F _tycho tycho
]==]):gsub("@COMMANDS@", table.concat(commands, " ")):gsub("@CASES@", (table.concat(cases, "\n"):gsub("%%", "%%%%"))))
  return 0
end

return M
