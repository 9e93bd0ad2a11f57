-- bench/serve/score_stages.lua — batch scoring through a whole frame, a
-- stage at a time: read the CSV, score the frame (ml/dense.lua
-- score_frame, as `tycho score` runs a file it cannot stream), write the
-- scored CSV. Prints "stages READ SCORE WRITE" in seconds, so the scoring
-- step can be set beside scikit-learn's predict_proba on a frame already
-- in memory (the command itself streams the file: ml/dense.lua score_csv).
--
--   tycho --home H run bench/serve/score_stages.lua MODEL@ALIAS IN.csv OUT.csv
local frame = require "tycho.core.frame"
local hosted = require "tycho.serve.hosted"
local uv = require "luv"

local target, input_path, output_path = arg[1], arg[2], arg[3]
local name, ref = assert(target, "usage: score_stages.lua MODEL@ALIAS IN.csv OUT.csv"):match("^([^@]+)@(.+)$")
local version = assert(hosted.load_version(name, ref))

local function seconds(since) return tonumber(uv.hrtime() - since) / 1e9 end

local t = uv.hrtime()
local input = assert(frame.read_csv(input_path))
local read_s = seconds(t)
t = uv.hrtime()
local scored = hosted.score_frame(version, input, false)
local score_s = seconds(t)
assert(scored, "the pipeline needs the row path: no scoring step to time")
t = uv.hrtime()
assert(scored:write_csv(output_path))
print(string.format("stages %.6f %.6f %.6f", read_s, score_s, seconds(t)))
