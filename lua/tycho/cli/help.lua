--- Help for the commands written in Lua: `tycho COMMAND --help`, `tycho
-- COMMAND SUB --help` and `tycho help COMMAND [SUB]` print usage with
-- examples on stdout and exit 0. Nothing here opens the home, so asking for
-- help never creates one.
local M = {}

-- Per command: usage, what it does, examples; per subcommand the same.
local TOPICS = {
  models = {
    usage = "tycho models list | show | promote | policy | rollback | import | export ... [--json]",
    about = "The model registry: versions with their provenance, aliases, policies and the audit history.",
    examples = { "tycho models list --json", "tycho models show diabetes@production",
                 "tycho models promote diabetes 1.0.1 production" },
    subs = {
      list = { usage = "tycho models list [--json]", about = "Every registered model: latest version, versions, aliases." },
      show = { usage = "tycho models show NAME[@ALIAS] | NAME VERSION [--json]",
               about = "One version's full record (default: the latest): hyperparameters, metrics, description,"
                 .. " owner, data and code fingerprints, input schema; the model's versions, policies and alias"
                 .. " history.",
               examples = { "tycho models show diabetes", "tycho models show diabetes@production --json",
                            "tycho models show diabetes 1.0.0" } },
      promote = { usage = "tycho models promote NAME VERSION ALIAS [--force --reason TEXT] [--approved-by NAME]",
                  about = "Points ALIAS at VERSION once the alias's stored policy passes (exit 1 listing every"
                    .. " reason when refused). --force with a reason overrides and is recorded.",
                  examples = { "tycho models promote diabetes 1.0.1 production",
                               "tycho models promote diabetes 1.0.0 production --force --reason 'incident 42'" } },
      policy = { usage = "tycho models policy NAME ALIAS [--gate METRIC=MIN ...] [--no-worse-than METRIC[:BY]]"
                   .. " [--holdout FILE] [--approval] [--no-schema] | --clear",
                 about = "Shows (no options), sets or clears the policy every promotion to ALIAS must pass.",
                 examples = { "tycho models policy diabetes production --gate auc=0.8 --no-worse-than auc",
                              "tycho models policy diabetes production" } },
      rollback = { usage = "tycho models rollback NAME ALIAS",
                   about = "Moves ALIAS back to the version it held before its latest promotion." },
      import = { usage = "tycho models import FILE --name NAME [--format xgboost] [--features A,B,...] [--label NAME]"
                   .. " [--description TEXT]",
                 about = "Registers a model trained elsewhere (an XGBoost JSON model: Booster.save_model('m.json'))"
                   .. " as the next version of NAME, with the file's sha256 in its provenance; it then serves,"
                   .. " A/B-tests, monitors and exports like any other.",
                 examples = { "tycho models import churn.json --name churn",
                              "tycho models import m.json --name churn --features tenure,plan_price,calls" } },
      export = { usage = "tycho models export NAME[@ALIAS] | NAME VERSION --format onnx -o FILE",
                 about = "Writes the whole pipeline (steps and model) as an ONNX model, inputs named after the"
                   .. " pipeline's input columns; a pipeline with a Lua step is refused, naming the step.",
                 examples = { "tycho models export churn@production -o churn.onnx",
                              "tycho models export churn 1.0.2 --format onnx -o churn.onnx" } },
    },
  },
  runs = {
    usage = "tycho runs list | show ID | compare ID ID... [--json]",
    about = "Every fit, evaluation and tuning trial, recorded with its parameters, metrics and data.",
    examples = { "tycho runs list --kind trial --sort auc --limit 5", "tycho runs compare 12 14 --json" },
    subs = {
      list = { usage = "tycho runs list [--model M] [--kind fit|trial|evaluate] [--sort METRIC] [--limit N] [--json]",
               about = "Runs, newest first (or best first by --sort METRIC)." },
      show = { usage = "tycho runs show ID [--json]", about = "One run's full record." },
      compare = { usage = "tycho runs compare ID ID... [--json]",
                  about = "Parameters and metrics side by side; rows that differ are marked with *." },
    },
  },
  features = {
    usage = "tycho features list | show | apply | ingest | materialize | drain ... [--json]",
    about = "The feature store: views as code, ingestion, materialisation and each view's statistics.",
    examples = { "tycho features apply features.lua", "tycho features ingest pima pima.csv",
                 "tycho features show pima --json" },
    subs = {
      list = { usage = "tycho features list [--owner O] [--tag T] [--search TEXT] [--json]",
               about = "Feature views with entity, owner, version and features." },
      show = { usage = "tycho features show VIEW [--json]",
               about = "One view: entity, version, ttl, owner, row counts, freshness and per-feature statistics." },
      apply = { usage = "tycho features apply FILE.lua",
                about = "Defines the entities and views FILE.lua declares (it returns { entities = {...}, views ="
                  .. " {...} }, or calls fs:entity / fs:feature_view on the fs it is given); idempotent, prints"
                  .. " what changed (like `feast apply`).",
                examples = { "tycho features apply features.lua" } },
      ingest = { usage = "tycho features ingest VIEW FILE [--to online|offline|online_and_offline] [--json]",
                 about = "Validates and lands a CSV or JSONL file; rejected rows go to the quarantine directory"
                   .. " (HOME/quarantine) with line and reason. Exit 1 when any row was rejected." },
      duplicates = { usage = "tycho features duplicates [--threshold R] [--json]",
                     about = "Features of different views (same entity) whose values agree: identical, or"
                       .. " correlated at |r| >= R (0.99) on a sample of the entities both hold; both owners named." },
      materialize = { usage = "tycho features materialize VIEW [--from TIME] [--to TIME] [--json]",
                      about = "Copies the latest offline values (as of --to, default now) into the online store." },
      drain = { usage = "tycho --cluster URL features drain VIEW [--group G] [--json]",
                about = "Applies the view's push stream on the cluster to this home's offline store once: entries"
                  .. " a dead consumer left, then new ones, each acknowledged once landed (as `serve"
                  .. " --offline-store` does continuously). Exit 1 when any row was rejected." },
    },
  },
  experiments = {
    usage = "tycho experiments list | show NAME | stop NAME [--winner VARIANT] [--json]",
    about = "A/B tests and bandits stored in the home.",
    subs = {
      list = { usage = "tycho experiments list [--json]", about = "Every experiment with its kind and status." },
      show = { usage = "tycho experiments show NAME [--json]",
               about = "Per variant: units, mean and 95% interval, lift, p-value, P(beat control), expected loss." },
      stop = { usage = "tycho experiments stop NAME [--winner VARIANT]",
               about = "Every unit gets the control (or the winner) from the next request on." },
    },
  },
  monitor = {
    usage = "tycho monitor NAME [--window 1h] [--json]",
    about = "Per version in the window (a number with a unit: 30s, 15m, 1h, 7d): volume, latency, errors,"
      .. " online metrics from joined outcomes, drift. Exit 1 for a model never served.",
    examples = { "tycho monitor diabetes --window 15m --json" },
  },
  score = {
    usage = "tycho score NAME[@ALIAS| VERSION] --input FILE (--output FILE|- | --to-view VIEW) [--missing skip|fill]",
    about = "Batch-scores a CSV or JSONL file with a registered pipeline; --output - writes CSV to stdout.",
    examples = { "tycho score diabetes@production --input new.csv --output -" },
  },
  completion = {
    usage = "tycho completion bash",
    about = "Prints a bash completion script: commands, subcommands, options, and model and view names"
      .. " from the home. Load it with: source <(tycho completion bash)",
  },
}

M.TOPICS = TOPICS

local function print_topic(t, name)
  io.write("usage: ", t.usage, "\n\n", t.about, "\n")
  if t.subs then
    local names = {}
    for sub in pairs(t.subs) do names[#names + 1] = sub end
    table.sort(names)
    io.write("\nsubcommands:\n")
    for _, sub in ipairs(names) do io.write("  ", t.subs[sub].usage, "\n") end
    io.write("\n`tycho ", name, " SUB --help` tells more.\n")
  end
  if t.examples then
    io.write("\nexamples:\n")
    for _, e in ipairs(t.examples) do io.write("  ", e, "\n") end
  end
end

--- Whether args ask for help (--help or -h anywhere).
function M.asked(args)
  for _, a in ipairs(args) do if a == "--help" or a == "-h" then return true end end
  return false
end

--- Prints the help of command (and its subcommand, when it has that one);
-- 0, or 2 for an unknown command.
function M.show(command, sub)
  local t = TOPICS[command or ""]
  if not t then
    io.stderr:write("tycho: no help for '", tostring(command), "'\n")
    return 2
  end
  local s = t.subs and sub and t.subs[sub]
  if s then print_topic(s, command .. " " .. sub) else print_topic(t, command) end
  return 0
end

--- `tycho COMMAND [SUB] --help` and `tycho help COMMAND [SUB]`.
function M.main(command, ...)
  local sub
  for _, a in ipairs({ ... }) do
    if a:sub(1, 1) ~= "-" then sub = a break end
  end
  return M.show(command, sub)
end

return M
