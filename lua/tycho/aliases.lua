--- The public module names of earlier releases, and where each module
-- lives now. The runtime's loader (core/runtime/tz_runtime.c) resolves
-- an old name here, so users' scripts keep working; Tycho's own code
-- requires the new names.
return {
  ["tycho.automl"] = "tycho.ml.automl",
  ["tycho.base"] = "tycho.core.base",
  ["tycho.cron"] = "tycho.dag.cron",
  ["tycho.dagcli"] = "tycho.dag.cli",
  ["tycho.daghistory"] = "tycho.dag.history",
  ["tycho.dagrun"] = "tycho.dag.run",
  ["tycho.dagsched"] = "tycho.dag.sched",
  ["tycho.files"] = "tycho.util.files",
  ["tycho.http"] = "tycho.serve.http",
  ["tycho.json"] = "tycho.util.json",
  ["tycho.kernels"] = "tycho.core.kernels",
  ["tycho.keys"] = "tycho.util.keys",
  ["tycho.metrics"] = "tycho.ml.metrics",
  ["tycho.models"] = "tycho.ml.models",
  ["tycho.pipeline"] = "tycho.ml.pipeline",
  ["tycho.pretty"] = "tycho.util.pretty",
  ["tycho.repl"] = "tycho.cli.repl",
  ["tycho.rowcodec"] = "tycho.features.rowcodec",
  ["tycho.runs"] = "tycho.registry.runs",
  ["tycho.sandbox"] = "tycho.util.sandbox",
  ["tycho.serving"] = "tycho.serve.hosted",
  ["tycho.stats"] = "tycho.experiments.stats",
  ["tycho.store"] = "tycho.core.store",
  ["tycho.testing"] = "tycho.cli.testing",
  ["tycho.timeutil"] = "tycho.util.timeutil",
  ["tycho.tune"] = "tycho.ml.tune",
  ["tycho.watch"] = "tycho.serve.watch",
}
