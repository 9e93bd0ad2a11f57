-- tycho.stats against scipy 1.10: the spec builds fixed cases (a seeded LCG
-- and hand-picked edges), runs Debian's /usr/bin/python3 once on them as
-- JSON and compares. A missing python3 or scipy fails the spec.
local stats = require "tycho.stats"
local testing = require "tycho.testing"
local cjson = require "cjson"

local huge = math.huge

-- Park-Miller minimal standard generator: products stay below 2^53.
local function rng(seed)
  local s = seed
  local r = {}
  function r.uniform()
    s = (s * 16807) % 2147483647
    return s / 2147483647
  end
  function r.normal(mu, sd)
    local u1, u2 = r.uniform(), r.uniform()
    return (mu or 0) + (sd or 1) * math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
  end
  function r.sample(n, mu, sd, digits)
    local t = {}
    for i = 1, n do
      local v = r.normal(mu, sd)
      if digits then v = math.floor(v * 10 ^ digits + 0.5) / 10 ^ digits end
      t[i] = v
    end
    return t
  end
  return r
end

local function mean_var(t)
  local s = 0
  for _, v in ipairs(t) do s = s + v end
  local m = s / #t
  local ss = 0
  for _, v in ipairs(t) do ss = ss + (v - m) ^ 2 end
  return m, ss / (#t - 1), #t
end

local cases = {
  norm = { -37, -20, -8.5, -1.96, -1, -1e-8, 0, 1e-3, 0.5, 1, 1.6448536269514722, 3, 8, 20, 37 },
  ppf = { 1e-300, 1e-100, 1e-20, 1e-10, 1e-3, 0.02, 0.02425, 0.025, 0.1, 0.3, 0.4999, 0.5, 0.6, 0.9,
    0.975, 0.98, 0.999, 1 - 1e-9, 1 - 1e-12 },
  betainc = { { 2, 3, 0.4 }, { 0.5, 0.5, 0.1 }, { 1, 1, 0.3 }, { 10, 20, 0.5 }, { 100, 200, 0.33 },
    { 1e4, 1e4, 0.499 }, { 1e5, 1e5, 0.5 }, { 1e5, 2e5, 0.334 }, { 5, 0.5, 0.999 }, { 0.1, 3, 1e-5 },
    { 50, 50, 0.01 }, { 1000, 2000, 0.2 }, { 3, 4, 0 }, { 3, 4, 1 }, { 2.5, 1e5, 1e-5 } },
  gammaincc = { { 0.5, 0.1 }, { 1, 1 }, { 3, 2 }, { 10, 30 }, { 100, 90 }, { 100, 150 }, { 0.5, 50 },
    { 1e4, 1e4 }, { 2.5, 0 }, { 7.5, 8.5 }, { 1, 700 } },
  t_sf = { { 2, 5 }, { -2, 5 }, { 0, 3 }, { 1.5, 2.5 }, { 10, 3 }, { 50, 1000 }, { 1e3, 2 },
    { 1e-3, 1e6 }, { -30, 4 }, { 3, 0.5 }, { 2.2, 123456.7 } },
  chi2_sf = { { 3, 2 }, { 0, 1 }, { 100, 1 }, { 10, 10 }, { 1e3, 900 }, { 1e-3, 5 }, { 200, 3 } },
  kolmogorov = { 0, 0.05, 0.2, 0.5, 0.8, 0.99, 1, 1.01, 1.3, 2, 3, 5, 8 },
  two_proportion = { { 100, 1000, 120, 1000 }, { 50, 1000, 50, 1000 }, { 0, 500, 10, 500 },
    { 1000, 10000, 1500, 10000 }, { 3, 17, 9, 20 }, { 500, 500, 499, 500 }, { 120, 1000, 100, 1000 },
    { 40, 1e6, 70, 1.2e6 } },
  welch = { { 10, 4, 30, 10, 4, 30 }, { 0, 1, 5, 3, 2, 7 }, { 100, 25, 10000, 100.9, 30, 12000 },
    { 5, 0.01, 2, 5.5, 100, 3 }, { 1, 2, 1e6, 1.02, 2, 1e6 } },
  srm = { { { 5000, 5100 }, { 0.5, 0.5 } }, { { 1000, 1000, 1000 }, { 1 / 3, 1 / 3, 1 / 3 } },
    { { 10000, 10700 }, { 0.5, 0.5 } }, { { 300, 700 }, { 0.3, 0.7 } },
    { { 120, 80, 200 }, { 0.25, 0.25, 0.5 } }, { { 1, 0 }, { 0.5, 0.5 } } },
  mean_ci = { { 10, 4, 100, 0.95 }, { 0, 1, 1, 0.99 }, { -5, 0.25, 1e6, 0.5 }, { 3, 2, 50 },
    { 1, 1, 10, 0.999999 }, { 2, 0, 10, 0.9 } },
  beat_beta = { { 1, 1, 1, 1 }, { 10, 20, 12, 18 }, { 1, 1, 5, 3 }, { 3, 7, 3, 7 }, { 200, 800, 260, 740 },
    { 1000, 100000, 1100, 100000 }, { 100000, 100000, 100100, 99900 }, { 1, 100000, 2, 100000 },
    { 50000, 50000, 1, 1 }, { 1, 1, 50000, 50000 }, { 100000, 2, 99990, 12 }, { 1, 30, 40, 1 },
    { 31, 970, 25, 976 }, { 5001, 95001, 5201, 94801 }, { 368, 4, 343, 3 }, { 86, 1, 88468, 3 } },
  beat_normal = { { 0, 1, 0, 1 }, { 0.1, 0.02, 0.13, 0.02 }, { 10, 1, 9, 2 }, { 0, 0.01, 1, 0.01 },
    { 5, 3, 5.001, 4 }, { 1, 0.5, 0, 0.5 } },
  psi = {},
  ks = {},
}

-- Welch from generated samples too.
do
  local r = rng(7)
  local a, b = r.sample(40, 5, 2), r.sample(25, 6, 3)
  local m1, v1, n1 = mean_var(a)
  local m2, v2, n2 = mean_var(b)
  cases.welch[#cases.welch + 1] = { m1, v1, n1, m2, v2, n2 }
end

-- Non-finite values travel as strings: JSON has no NaN or infinity.
local nonfinite = { nan = 0 / 0, inf = huge, ["-inf"] = -huge }
local function decode_values(t)
  local out = {}
  for i, v in ipairs(t) do out[i] = type(v) == "string" and nonfinite[v] or v end
  return out
end

do
  local r = rng(11)
  local ref = r.sample(2000, 0, 1)
  table.sort(ref)
  local edges = {}
  for q = 1, 9 do edges[q] = ref[q * 200] end
  local counts = {}
  for q = 1, 10 do counts[q] = 200 end
  local drift = r.sample(3000, 0.3, 1.2)
  drift[#drift + 1] = "nan"
  drift[#drift + 1] = "inf"
  drift[#drift + 1] = "-inf"
  drift[#drift + 1] = edges[3] -- on an edge: belongs to the bin below it
  drift[#drift + 1] = edges[9] + 1e-12
  local same = r.sample(1500, 0, 1)
  cases.psi = {
    { edges, counts, drift },
    { edges, counts, same },
    { { 0, 1, 2 }, { 10, 0, 30, 60 }, { 0.5, 0.5, 0.7, 1, 1, 2, 2.5, -3 } }, -- empty bins hit the floor
    { { 0, 1, 2 }, { 10, 20, 30, 40 }, { 5, 6, 7 } },                       -- all in the last bin
    { { 0, 1, 2 }, { 10, 20, 30, 40 }, { "nan", "inf" } },                  -- nothing live
  }
end

do
  local r = rng(2024)
  local below, above = {}, {}
  for i = 1, 40 do below[i] = i / 100 end
  for i = 1, 30 do above[i] = 1 + i / 100 end
  cases.ks = {
    { r.sample(1400, 0, 1), r.sample(500, 0.1, 1) },  -- the timed size
    { r.sample(60, 0, 1, 1), r.sample(45, 0.3, 1, 1) }, -- ties within and across samples
    { r.sample(200, 0, 1), r.sample(200, 0.2, 1) },   -- n1 == n2
    { r.sample(300, 0, 1), r.sample(250, 1.5, 1) },   -- p around 1e-40
    { below, above },                                 -- D = 1, p = 2 / C(70, 30) ~ 4e-20
    { r.sample(5, 0, 1), r.sample(7, 0, 1) },
    { { 1, 2, 2, 3, 3, 3 }, { 3, 2, 1, 3, 2, 3 } },   -- same data: D = 0, p = 1
    { { 1, 1, 1, 2 }, { 1, 2, 2, 2, 2 } },
    { r.sample(5000, 0, 1, 2), r.sample(2000, 0.05, 1, 2) }, -- n1 n2 = 1e7: still exact
    { r.sample(5000, 0, 1), r.sample(3000, 0.04, 1) },       -- asymptotic
    { r.sample(4000, 0, 1, 1), r.sample(2600, 0, 1.1, 1) },  -- asymptotic, ties
    { r.sample(12000, 0, 1), r.sample(900, 0.03, 1) },       -- scipy's default goes asymptotic too
  }
end

local PY = [=[
import json, math, sys, warnings
import numpy as np
from scipy import special, stats
from scipy.integrate import quad, dblquad
from scipy.stats._stats_py import _unequal_var_ttest_denom

warnings.simplefilter("error")
with open(sys.argv[1]) as f:
    cases = json.load(f)
NF = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
def arr(x):  # Lua's cjson writes an empty list as {}
    return list(x) if isinstance(x, list) else []
def fin(x):
    x = float(x)
    return x if math.isfinite(x) else None
out = {}
out["norm"] = [[fin(stats.norm.cdf(x)), fin(stats.norm.sf(x))] for x in cases["norm"]]
out["ppf"] = [fin(stats.norm.ppf(p)) for p in cases["ppf"]]
out["betainc"] = [fin(special.betainc(a, b, x)) for a, b, x in cases["betainc"]]
out["gammaincc"] = [fin(special.gammaincc(a, x)) for a, x in cases["gammaincc"]]
out["t_sf"] = [fin(stats.t.sf(t, df)) for t, df in cases["t_sf"]]
out["chi2_sf"] = [fin(stats.chi2.sf(x, k)) for x, k in cases["chi2_sf"]]
out["kolmogorov"] = [fin(special.kolmogorov(x)) for x in cases["kolmogorov"]]

res = []
for x1, n1, x2, n2 in cases["two_proportion"]:
    chi2, p, _, _ = stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False)
    res.append([fin(chi2), fin(p)])
out["two_proportion"] = res

res = []
for m1, v1, n1, m2, v2, n2 in cases["welch"]:
    r = stats.ttest_ind_from_stats(m2, math.sqrt(v2), n2, m1, math.sqrt(v1), n1, equal_var=False)
    df, _ = _unequal_var_ttest_denom(v2, n2, v1, n1)
    res.append([fin(r.statistic), fin(df), fin(r.pvalue)])
out["welch"] = res

res = []
for obs, w in cases["srm"]:
    r = stats.chisquare(obs, f_exp=sum(obs) * np.array(w, dtype=float))
    res.append([fin(r.statistic), fin(r.pvalue)])
out["srm"] = res

res = []
for c in cases["mean_ci"]:
    m, v, n = c[:3]
    level = c[3] if len(c) > 3 else 0.95
    lo, hi = stats.norm.interval(level, loc=m, scale=math.sqrt(v / n)) if v > 0 else (m, m)
    res.append([fin(lo), fin(hi)])
out["mean_ci"] = res

def opts(d1, d2, lo, hi):
    pts = set()
    for d in (d1, d2):
        for k in (-6, -3, -1, 0, 1, 3, 6):
            x = d.mean() + k * d.std()
            if lo < x < hi:
                pts.add(float(x))
    return dict(points=sorted(pts) or None, limit=2000, epsabs=1e-14, epsrel=1e-12)

res = []
for i, (a1, b1, a2, b2) in enumerate(cases["beat_beta"]):
    d1, d2 = stats.beta(a1, b1), stats.beta(a2, b2)
    lo, hi = float(d2.ppf(1e-15)), float(d2.isf(1e-15))
    o = opts(d1, d2, lo, hi)
    m1 = d1.mean()
    prob = quad(lambda x: d2.pdf(x) * d1.cdf(x), lo, hi, **o)[0]
    # E[(X1 - t)+] = m1 P'(X1 > t) - t P(X1 > t), P' under Beta(a1 + 1, b1).
    loss = quad(lambda t: d2.pdf(t) * (m1 * stats.beta.sf(t, a1 + 1, b1) - t * d1.sf(t)), lo, hi, **o)[0]
    row = [prob, loss]
    if i < 3:  # the inner identity itself, as a plain double integral
        row.append(dblquad(lambda a, t: (a - t) * d1.pdf(a) * d2.pdf(t), lo, hi, lambda t: t, lambda t: 1,
                           epsabs=1e-12, epsrel=1e-10)[0])
    res.append(row)
out["beat_beta"] = res

res = []
for m1, se1, m2, se2 in cases["beat_normal"]:
    mu, s = m2 - m1, math.hypot(se1, se2)
    d = stats.norm(mu, s)
    lo = min(mu - 40 * s, -s)
    pts = [x for x in (mu - 3 * s, mu, mu + 3 * s) if lo < x < 0]
    loss_q = quad(lambda x: -x * d.pdf(x), lo, 0, points=pts or None, limit=500, epsabs=1e-15, epsrel=1e-12)[0]
    prob_q = quad(d.pdf, 0, max(mu + 40 * s, s), points=[x for x in (mu,) if x > 0] or None,
                  limit=500, epsabs=1e-15, epsrel=1e-12)[0]
    closed = s * stats.norm.pdf(mu / s) - mu * stats.norm.sf(mu / s)
    res.append([fin(d.sf(0)), prob_q, fin(closed), loss_q])
out["beat_normal"] = res

res = []
for edges, counts, values in cases["psi"]:
    v = np.array([NF.get(x, x) if isinstance(x, str) else x for x in arr(values)], dtype=float)
    v = v[np.isfinite(v)]
    k = len(counts)
    live = np.bincount(np.searchsorted(np.array(edges, dtype=float), v, side="left"), minlength=k)
    pa = live / len(v) if len(v) else np.zeros(k)
    pr = np.array(counts, dtype=float) / np.sum(counts)
    pa, pr = np.maximum(pa, 1e-4), np.maximum(pr, 1e-4)
    res.append([float(np.sum((pa - pr) * np.log(pa / pr))), [int(c) for c in live]])
out["psi"] = res

res = []
for a, b in cases["ks"]:
    n1, n2 = len(a), len(b)
    exact = n1 * n2 <= 1e7
    auto = stats.ks_2samp(a, b)
    p_exact = stats.ks_2samp(a, b, method="exact").pvalue if exact else None
    asymp = stats.ks_2samp(a, b, method="asymp")
    en = n1 * n2 / (n1 + n2)
    kolm = special.kolmogorov(math.sqrt(en) * asymp.statistic)
    res.append([float(auto.statistic), p_exact, fin(asymp.pvalue), fin(kolm), exact])
out["ks"] = res
print(json.dumps(out))
]=]

-- cjson 2.1 writes at most 14 digits; cases need all 17 to reach scipy intact.
local function encode(v, out)
  local t = type(v)
  if t == "number" then
    out[#out + 1] = string.format("%.17g", v)
  elseif t == "string" then
    out[#out + 1] = string.format("%q", v)
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif #v > 0 or next(v) == nil then
    out[#out + 1] = "["
    for i, x in ipairs(v) do
      if i > 1 then out[#out + 1] = "," end
      encode(x, out)
    end
    out[#out + 1] = "]"
  else
    out[#out + 1] = "{"
    local first = true
    for k, x in pairs(v) do
      if not first then out[#out + 1] = "," end
      first = false
      out[#out + 1] = string.format("%q:", k)
      encode(x, out)
    end
    out[#out + 1] = "}"
  end
  return out
end

local ref
local function reference()
  if ref then return ref end
  local dir = testing.tmpdir()
  local ok, out = pcall(function()
    testing.write(dir .. "/cases.json", table.concat(encode(cases, {})))
    testing.write(dir .. "/ref.py", PY)
    local f = assert(io.popen("/usr/bin/python3 " .. dir .. "/ref.py " .. dir .. "/cases.json 2>&1"))
    local text = f:read("*a")
    f:close()
    return text
  end)
  testing.rmrf(dir)
  assert(ok, out)
  local decoded_ok, decoded = pcall(cjson.decode, out)
  assert(decoded_ok and type(decoded) == "table", "python3 with scipy is needed for this spec:\n" .. tostring(out))
  ref = decoded
  return ref
end

-- |got - want| <= rel * |want| + abs. A JSON null (scipy gave a non-finite value) never matches.
local function close(got, want, rel, abs, what)
  if want == cjson.null then want = 0 / 0 end
  local ok = got == want or math.abs(got - want) <= rel * math.abs(want) + (abs or 0)
  assert(ok, string.format("%s: got %.17g, scipy %.17g (diff %.3g)", what or "", got, want, got - want))
end

local REL = 1e-9

describe("tycho.stats", function()
  setup(reference)

  it("normal cdf, sf and ppf", function()
    for i, x in ipairs(cases.norm) do
      close(stats.norm_cdf(x), ref.norm[i][1], REL, 0, "norm_cdf " .. x)
      close(stats.norm_sf(x), ref.norm[i][2], REL, 0, "norm_sf " .. x)
    end
    for i, p in ipairs(cases.ppf) do
      close(stats.norm_ppf(p), ref.ppf[i], 1e-12, 1e-15, "norm_ppf " .. p)
    end
    assert.equal(-huge, stats.norm_ppf(0))
    assert.equal(huge, stats.norm_ppf(1))
    local nan = stats.norm_ppf(1.5)
    assert.is_true(nan ~= nan)
  end)

  it("incomplete beta and gamma", function()
    for i, c in ipairs(cases.betainc) do
      close(stats.betainc(c[1], c[2], c[3]), ref.betainc[i], REL, 1e-300, "betainc " .. table.concat(c, " "))
    end
    -- scipy is 6e-10 off here; the symmetric case is exactly 1/2.
    close(stats.betainc(1e5, 1e5, 0.5), 0.5, 1e-11, 0, "betainc 1e5 1e5 0.5")
    for i, c in ipairs(cases.gammaincc) do
      close(stats.gammaincc(c[1], c[2]), ref.gammaincc[i], REL, 1e-300, "gammaincc " .. table.concat(c, " "))
    end
  end)

  it("t, chi-square and Kolmogorov tails", function()
    for i, c in ipairs(cases.t_sf) do
      close(stats.t_sf(c[1], c[2]), ref.t_sf[i], REL, 1e-300, "t_sf " .. table.concat(c, " "))
    end
    for i, c in ipairs(cases.chi2_sf) do
      close(stats.chi2_sf(c[1], c[2]), ref.chi2_sf[i], REL, 1e-300, "chi2_sf " .. table.concat(c, " "))
    end
    for i, x in ipairs(cases.kolmogorov) do
      close(stats.kolmogorov_sf(x), ref.kolmogorov[i], 1e-12, 1e-300, "kolmogorov_sf " .. x)
    end
  end)

  it("two-proportion z-test matches the uncorrected chi-square on the 2x2 table", function()
    for i, c in ipairs(cases.two_proportion) do
      local r = stats.two_proportion(c[1], c[2], c[3], c[4])
      local what = "two_proportion " .. table.concat(c, " ")
      close(r.z * r.z, ref.two_proportion[i][1], REL, 1e-12, what .. " z^2")
      close(r.p_value, ref.two_proportion[i][2], REL, 1e-300, what .. " p")
      assert.is_true((r.z > 0) == (c[3] / c[4] > c[1] / c[2]), what .. " sign")
    end
    assert.same({ z = 0, p_value = 1 }, stats.two_proportion(0, 100, 0, 200))
    assert.same({ z = 0, p_value = 1 }, stats.two_proportion(100, 100, 200, 200))
  end)

  it("Welch t-test", function()
    for i, c in ipairs(cases.welch) do
      local r = stats.welch(unpack(c))
      local what = "welch " .. table.concat(c, " ")
      close(r.t, ref.welch[i][1], REL, 1e-12, what .. " t")
      close(r.df, ref.welch[i][2], REL, 0, what .. " df")
      close(r.p_value, ref.welch[i][3], REL, 1e-300, what .. " p")
    end
  end)

  it("sample ratio mismatch", function()
    for i, c in ipairs(cases.srm) do
      local r = stats.srm(c[1], c[2])
      local what = "srm " .. table.concat(c[1], " ")
      close(r.chi2, ref.srm[i][1], REL, 1e-12, what .. " chi2")
      close(r.p_value, ref.srm[i][2], REL, 1e-300, what .. " p")
    end
  end)

  it("normal confidence interval of a mean", function()
    for i, c in ipairs(cases.mean_ci) do
      local lo, hi = stats.mean_ci(c[1], c[2], c[3], c[4])
      local what = "mean_ci " .. table.concat(c, " ")
      close(lo, ref.mean_ci[i][1], REL, 1e-14, what .. " lo")
      close(hi, ref.mean_ci[i][2], REL, 1e-14, what .. " hi")
    end
  end)

  it("Bayesian beta comparison to 1e-6 from 1 to 1e5 counts", function()
    for i, c in ipairs(cases.beat_beta) do
      local prob, loss = stats.beat_beta(c[1], c[2], c[3], c[4])
      local want = ref.beat_beta[i]
      local what = "beat_beta " .. table.concat(c, " ")
      close(prob, want[1], 0, 1e-6, what .. " prob")
      close(loss, want[2], 0, 1e-6, what .. " loss")
      if want[3] then close(want[2], want[3], 0, 1e-9, what .. " loss identity") end
    end
    local p, l = stats.beat_beta(7, 9, 7, 9)
    close(p, 0.5, 0, 1e-9, "equal groups")
    assert.is_true(l > 0)
  end)

  it("Bayesian normal comparison", function()
    for i, c in ipairs(cases.beat_normal) do
      local prob, loss = stats.beat_normal(c[1], c[2], c[3], c[4])
      local want = ref.beat_normal[i]
      local what = "beat_normal " .. table.concat(c, " ")
      close(prob, want[1], REL, 1e-300, what .. " prob")
      close(prob, want[2], 0, 1e-9, what .. " prob (quad)")
      close(loss, want[3], REL, 1e-15, what .. " loss")
      close(loss, want[4], 0, 1e-9, what .. " loss (quad)")
    end
    assert.same({ 1, 0 }, { stats.beat_normal(1, 0, 2, 0) })
    assert.same({ 0, 1 }, { stats.beat_normal(2, 0, 1, 0) })
  end)

  it("population stability index", function()
    for i, c in ipairs(cases.psi) do
      local psi, live = stats.psi(c[1], c[2], decode_values(c[3]))
      close(psi, ref.psi[i][1], REL, 1e-15, "psi case " .. i)
      assert.same(ref.psi[i][2], live)
    end
  end)

  it("two-sample Kolmogorov-Smirnov", function()
    for i, c in ipairs(cases.ks) do
      local r = stats.ks_2samp(c[1], c[2])
      local want = ref.ks[i]
      local what = string.format("ks %d (n1 = %d, n2 = %d)", i, #c[1], #c[2])
      assert.equal(want[1], r.statistic, what .. " statistic")
      if want[5] then
        assert.equal("exact", r.method, what)
        close(r.p_value, want[2], 1e-6, 1e-300, what .. " exact p")
      else
        assert.equal("asymp", r.method, what)
        close(r.p_value, want[4], REL, 1e-300, what .. " kolmogorov p")
        close(r.p_value, want[3], 0.25, 0.01, what .. " scipy asymp p")
      end
    end
    local p = stats.ks_2samp(cases.ks[5][1], cases.ks[5][2]).p_value
    assert.is_true(p > 1e-21 and p < 1e-18)
  end)

  it("ks_2samp(1400, 500) takes well under 0.1 s", function()
    local a, b = cases.ks[1][1], cases.ks[1][2]
    stats.ks_2samp(a, b)
    local t0 = os.clock()
    for _ = 1, 5 do stats.ks_2samp(a, b) end
    local per = (os.clock() - t0) / 5
    assert.is_true(per < 0.05, string.format("%.4f s per call", per))
  end)
end)
