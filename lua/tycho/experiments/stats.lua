--- Statistical tests and distributions for experiments and monitoring, in
-- plain LuaJIT (libm's erfc, lgamma and log1p through the FFI):
--   stats.norm_cdf(x), stats.norm_sf(x), stats.norm_ppf(p)
--   stats.betainc(a, b, x)        regularized incomplete beta I_x(a, b)
--   stats.gammaincc(a, x)         regularized upper incomplete gamma Q(a, x)
--   stats.t_sf(t, df), stats.chi2_sf(x, k), stats.kolmogorov_sf(x)
--   stats.two_proportion(x1, n1, x2, n2)      -> {z, p_value}
--   stats.welch(m1, v1, n1, m2, v2, n2)       -> {t, df, p_value}
--   stats.srm(observed, weights)              -> {chi2, p_value}
--   stats.mean_ci(mean, var, n, level)        -> lo, hi
--   stats.lift_ci(m1, v1, n1, m2, v2, n2, level) -> lift, lo, hi
--   stats.beat_beta(a1, b1, a2, b2)           -> prob, loss
--   stats.beat_normal(m1, se1, m2, se2)       -> prob, loss
--   stats.psi(edges, counts, values)          -> psi, live_counts
--   stats.ks_2samp(a, b)                      -> {statistic, p_value, method}
-- Conventions: p-values are two-sided; comparisons are group 2 against
-- group 1 (z, t > 0 when group 2 is higher); variances are sample variances
-- (ddof = 1). beat_* give P(X2 > X1) and the expected loss of choosing 2,
-- E[max(X1 - X2, 0)]. psi bins a value into the first bin whose upper edge
-- is >= it (the last bin past every edge) and floors fractions at 1e-4.
-- ks_2samp's p is exact ("exact") for n1 * n2 <= 1e7, else Kolmogorov's
-- limit ("asymp"). Definitions follow scipy 1.10, which the spec checks.
local ffi = require "ffi"
local libc = require "tycho.core.libc"

local erfc, lgamma, log1p = libc.erfc, libc.lgamma, libc.log1p
local exp, log, sqrt, abs, floor, min, max = math.exp, math.log, math.sqrt, math.abs, math.floor, math.min, math.max
local huge, pi = math.huge, math.pi

local M = {}

local SQRT2 = sqrt(2)
local SQRT2PI = sqrt(2 * pi)
local EPS = 1e-15
local TINY = 1e-300

--- Standard normal CDF, P(Z <= x) (scipy.stats.norm.cdf).
function M.norm_cdf(x) return 0.5 * erfc(-x / SQRT2) end
--- Standard normal survival function, P(Z > x) (scipy.stats.norm.sf); keeps
-- its precision far in the upper tail, where 1 - norm_cdf(x) would round to 0.
function M.norm_sf(x) return 0.5 * erfc(x / SQRT2) end
local norm_cdf, norm_sf = M.norm_cdf, M.norm_sf
local function norm_pdf(x) return exp(-0.5 * x * x) / SQRT2PI end

-- Acklam's rational approximation (relative error 1.2e-9) for p <= 0.5.
local A = { -3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
  1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00 }
local B = { -5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
  6.680131188771972e+01, -1.328068155288572e+01 }
local CC = { -7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
  -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00 }
local D = { 7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00 }

local function ppf_lower(p)
  local x
  if p < 0.02425 then
    local q = sqrt(-2 * log(p))
    x = (((((CC[1] * q + CC[2]) * q + CC[3]) * q + CC[4]) * q + CC[5]) * q + CC[6]) /
      ((((D[1] * q + D[2]) * q + D[3]) * q + D[4]) * q + 1)
  else
    local q = p - 0.5
    local r = q * q
    x = (((((A[1] * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * r + A[6]) * q /
      (((((B[1] * r + B[2]) * r + B[3]) * r + B[4]) * r + B[5]) * r + 1)
  end
  -- Halley steps against erfc take the 1e-9 start to full precision; the
  -- second one only matters far in the tail, where exp(x^2/2) is large.
  for _ = 1, 2 do
    local u = (norm_cdf(x) - p) * SQRT2PI * exp(0.5 * x * x)
    x = x - u / (1 + 0.5 * x * u)
  end
  return x
end

--- Standard normal quantile, the x with P(Z <= x) = p (scipy.stats.norm.ppf):
-- -inf at 0, inf at 1, NaN outside [0, 1].
function M.norm_ppf(p)
  if p ~= p or p < 0 or p > 1 then return 0 / 0 end
  if p == 0 then return -huge end
  if p == 1 then return huge end
  -- 1 - p is exact for p >= 0.5, so the upper half loses nothing.
  if p > 0.5 then return -ppf_lower(1 - p) end
  return ppf_lower(p)
end
local norm_ppf = M.norm_ppf

-- lgamma(x) - Stirling's (x - 1/2) ln x - x + ln(2 pi)/2, for x >= 10.
local function stirling_rest(x)
  local r = 1 / (x * x)
  return (1 / 12 + r * (-1 / 360 + r * (1 / 1260 + r * (-1 / 1680 + r * (1 / 1188 + r * (-691 / 360360
    + r * (1 / 156 + r * (-3617 / 122400)))))))) / x
end

-- ln B(a, b) without the cancellation of lgamma(a) + lgamma(b) - lgamma(a + b),
-- which costs 1e-10 relative in x^a y^b / B(a, b) at counts of 1e5.
local function lbeta(a, b)
  if a < b then a, b = b, a end
  if a < 10 then return lgamma(a) + lgamma(b) - lgamma(a + b) end
  local s = a + b
  local l1p = log1p(b / a) -- ln(s / a)
  local rest = stirling_rest(a) - stirling_rest(s)
  if b < 10 then return lgamma(b) - (a - 0.5) * l1p - b * log(s) + b + rest end
  return 0.5 * log(2 * pi) - a * l1p + b * (log(b / a) - l1p) + 0.5 * log(s / (a * b)) + rest + stirling_rest(b)
end

-- One step of the modified Lentz method over a term an / (bn + ...): the
-- new c and d, and the factor the fraction's value is multiplied by.
local function lentz_step(c, d, an, bn)
  d = an * d + bn
  if abs(d) < TINY then d = TINY end
  c = bn + an / c
  if abs(c) < TINY then c = TINY end
  d = 1 / d
  return c, d, d * c
end

-- Continued fraction of I_x(a, b) * a / (x^a y^b / B(a, b)), modified Lentz.
-- Converges fast for x < (a + 1) / (a + b + 2); about sqrt(max(a, b)) terms.
local function betacf(a, b, x)
  local apb = a + b
  local c, d = 1, 1 - apb * x / (a + 1)
  if abs(d) < TINY then d = TINY end
  d = 1 / d
  local f = d
  for m = 1, 100000 do
    local a2m = a + 2 * m
    c, d = lentz_step(c, d, m * (b - m) * x / ((a2m - 1) * a2m), 1)
    f = f * d * c
    local step
    c, d, step = lentz_step(c, d, -(a + m) * (apb + m) * x / (a2m * (a2m + 1)), 1)
    f = f * step
    if abs(step - 1) < EPS then break end
  end
  return f
end

-- I_x(a, b), its complement and x^a y^b / B(a, b), with y = 1 - x given by
-- the caller so that whichever of x, y is small keeps its precision.
-- lb = lbeta(a, b) when the caller has it.
local function incbeta(a, b, x, y, lb)
  if x <= 0 then return 0, 1, 0 end
  if y <= 0 then return 1, 0, 0 end
  local lx = x <= 0.5 and log(x) or log1p(-y)
  local ly = y <= 0.5 and log(y) or log1p(-x)
  local pref = exp(a * lx + b * ly - (lb or lbeta(a, b)))
  if x < (a + 1) / (a + b + 2) then
    local i = pref / a * betacf(a, b, x)
    return i, 1 - i, pref
  end
  local c = pref / b * betacf(b, a, y)
  return 1 - c, c, pref
end

--- Regularized incomplete beta function I_x(a, b) for a, b > 0 (scipy.special.betainc):
-- 0 for x <= 0, 1 for x >= 1. Student's t tail and the Beta posteriors rest on it.
function M.betainc(a, b, x)
  return (incbeta(a, b, x, 1 - x))
end

--- Regularized upper incomplete gamma function Q(a, x) for a > 0
-- (scipy.special.gammaincc); 1 for x <= 0. The chi-squared tail rests on it.
function M.gammaincc(a, x)
  if x <= 0 then return 1 end
  local pref = exp(a * log(x) - x - lgamma(a))
  if x < a + 1 then
    -- Series for P; Q = 1 - P stays well above rounding here.
    local term, sum, ap = 1 / a, 1 / a, a
    for _ = 1, 100000 do
      ap = ap + 1
      term = term * x / ap
      sum = sum + term
      if abs(term) < abs(sum) * EPS then break end
    end
    return 1 - pref * sum
  end
  -- Legendre's continued fraction for Q, modified Lentz.
  local bn = x + 1 - a
  local c, d = 1 / TINY, 1 / bn
  local f = d
  for i = 1, 100000 do
    bn = bn + 2
    local step
    c, d, step = lentz_step(c, d, -i * (i - a), bn)
    f = f * step
    if abs(step - 1) < EPS then break end
  end
  return pref * f
end

--- Survival function of Student's t with df degrees of freedom (df may be
-- fractional, as Welch's is), P(T > t) (scipy.stats.t.sf); NaN when t or df is.
function M.t_sf(t, df)
  if t ~= t or df ~= df then return 0 / 0 end
  local t2 = t * t
  -- Both x = df/(df+t^2) and 1 - x computed directly, without 1 - x rounding.
  local half = 0.5 * incbeta(0.5 * df, 0.5, df / (df + t2), t2 / (df + t2))
  if t >= 0 then return half end
  return 1 - half
end

--- Survival function of the chi-squared distribution with k degrees of freedom,
-- P(X > x) (scipy.stats.chi2.sf): the p-value of a chi-squared statistic x.
function M.chi2_sf(x, k) return M.gammaincc(0.5 * k, 0.5 * x) end

--- Survival function of Kolmogorov's distribution, P(K > x) (scipy.special.kolmogorov,
-- scipy.stats.kstwobign.sf): the large-sample p-value of a KS statistic scaled by
-- sqrt(n). 1 for x <= 0, NaN for NaN.
function M.kolmogorov_sf(x)
  if x ~= x then return x end
  if x <= 0 then return 1 end
  if x < 1 then
    -- Jacobi theta form of the CDF: few terms for small x, where the
    -- alternating series below would need many.
    local s, q = 0, -pi * pi / (8 * x * x)
    for k = 1, 20 do
      local term = exp((2 * k - 1) ^ 2 * q)
      s = s + term
      if term < EPS * s then break end
    end
    return 1 - SQRT2PI / x * s
  end
  local s, sign = 0, 1
  for k = 1, 100 do
    local term = exp(-2 * k * k * x * x)
    s = s + sign * term
    if term < EPS * s then break end
    sign = -sign
  end
  return min(1, max(0, 2 * s))
end

--- Pooled two-proportion z-test of x2 successes out of n2 against x1 out of n1:
-- { z, p_value }, two-sided, z > 0 when group 2's rate is higher. All successes
-- or all failures in both groups give z = 0, p_value = 1.
function M.two_proportion(x1, n1, x2, n2)
  local p = (x1 + x2) / (n1 + n2)
  local se = sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
  -- All successes or all failures: no evidence of a difference.
  if se == 0 then return { z = 0, p_value = 1 } end
  local z = (x2 / n2 - x1 / n1) / se
  return { z = z, p_value = 2 * norm_sf(abs(z)) }
end

--- Welch's unequal-variance t-test from summaries: means m, sample variances v
-- (ddof = 1) and sizes n of groups 1 and 2; { t, df, p_value }, two-sided, t > 0 when
-- group 2 is higher. scipy.stats.ttest_ind_from_stats(m2, sqrt(v2), n2, m1, sqrt(v1),
-- n1, equal_var=False). Needs n >= 2 in each group.
function M.welch(m1, v1, n1, m2, v2, n2)
  local s1, s2 = v1 / n1, v2 / n2
  local s = s1 + s2
  local t = (m2 - m1) / sqrt(s)
  local df = s * s / (s1 * s1 / (n1 - 1) + s2 * s2 / (n2 - 1))
  return { t = t, df = df, p_value = 2 * M.t_sf(abs(t), df) }
end

--- Sample-ratio-mismatch test: chi-squared goodness of fit of observed counts per
-- variant against the intended shares weights (same order, summing to 1);
-- { chi2, p_value } on #observed - 1 degrees of freedom (scipy.stats.chisquare).
-- A tiny p-value means assignment or logging is broken, not a real effect.
function M.srm(observed, weights)
  local total = 0
  for _, o in ipairs(observed) do total = total + o end
  local chi2 = 0
  for i, o in ipairs(observed) do
    local e = total * weights[i]
    chi2 = chi2 + (o - e) ^ 2 / e
  end
  return { chi2 = chi2, p_value = M.chi2_sf(chi2, #observed - 1) }
end

--- Normal-approximation confidence interval of a mean, from the sample variance
-- var and size n; level defaults to 0.95. Returns lo, hi, as
-- scipy.stats.norm.interval(level, mean, sqrt(var / n)).
function M.mean_ci(mean, var, n, level)
  local z = -norm_ppf((1 - (level or 0.95)) / 2)
  local half = z * sqrt(var / n)
  return mean - half, mean + half
end

--- Relative lift of group 2's mean over group 1's, (m2 - m1) / |m1|, with its
-- normal-approximation interval by the delta method (variances v are sample
-- variances, n the sizes; level defaults to 0.95), as GrowthBook's
-- frequentist engine gives it: lift, lo, hi. NaN for all three when m1 is 0
-- or a group is empty: a lift of nothing has no meaning.
function M.lift_ci(m1, v1, n1, m2, v2, n2, level)
  if m1 == 0 or n1 < 1 or n2 < 1 then return 0 / 0, 0 / 0, 0 / 0 end
  local lift = (m2 - m1) / abs(m1)
  -- Var(m2 / m1) ~ Var(m2) / m1^2 + m2^2 Var(m1) / m1^4.
  local m1sq = m1 * m1
  local se = sqrt(v2 / n2 / m1sq + m2 * m2 * v1 / n1 / (m1sq * m1sq))
  local half = -norm_ppf((1 - (level or 0.95)) / 2) * se
  return lift, lift - half, lift + half
end

local function beta_sd(a, b) return sqrt(a * b / (a + b + 1)) / (a + b) end

-- Integrates against the narrower posterior so the other one's CDF is smooth
-- on the grid: P(X2 > X1) = E over t of I_t(a1, b1) (t ~ X2), or of 1 - I_s(a2, b2)
-- (s ~ X1). The inner expected loss comes from the identity
-- E[(X - t)+] = (mean - t) (1 - I_t(a, b)) + t^a (1-t)^b / B(a, b) / (a + b).
-- Simpson on mean +- 20 sd loses < 1e-13 of mass in the tails even for the
-- exponential-like Beta(1, b); its error is worst where the window is clipped
-- at 0 or 1 with a or b near 3 (about 2e-9 at 2048 steps, h^4). Needs
-- a, b >= 1 (counts), where the densities are smooth on [0, 1].
local NSTEPS = 2048

--- For Beta posteriors X1 ~ Beta(a1, b1) and X2 ~ Beta(a2, b2) (a conversion rate's
-- successes + prior, failures + prior): prob = P(X2 > X1) and loss = E[max(X1 - X2, 0)],
-- the expected loss of choosing 2. Needs a, b >= 1; accurate to about 2e-9.
function M.beat_beta(a1, b1, a2, b2)
  local over2 = beta_sd(a2, b2) <= beta_sd(a1, b1)
  local ai, bi, ao, bo = a1, b1, a2, b2 -- integrate over Beta(ao, bo)
  if not over2 then ai, bi, ao, bo = a2, b2, a1, b1 end
  local mi, mo = ai / (ai + bi), ao / (ao + bo)
  local so = beta_sd(ao, bo)
  local lo, hi = max(0, mo - 20 * so), min(1, mo + 20 * so)
  local h = (hi - lo) / NSTEPS
  local lbi, lbo = lbeta(ai, bi), lbeta(ao, bo)
  local prob, loss = 0, 0
  for k = 0, NSTEPS do
    local t = min(lo + k * h, hi)
    local u = 1 - t
    local lt = t > 0 and log(t) or -huge
    local lu = u > 0 and (t < 0.5 and log1p(-t) or log(u)) or -huge
    local dens = exp((ao == 1 and 0 or (ao - 1) * lt) + (bo == 1 and 0 or (bo - 1) * lu) - lbo)
    if dens > 0 then
      local w = (k == 0 or k == NSTEPS) and 1 or (k % 2 == 1 and 4 or 2)
      local i, c, pref = incbeta(ai, bi, t, u, lbi)
      if over2 then
        prob = prob + w * dens * i
        loss = loss + w * dens * ((mi - t) * c + pref / (ai + bi))
      else
        prob = prob + w * dens * c
        loss = loss + w * dens * ((t - mi) * i + pref / (ai + bi))
      end
    end
  end
  prob, loss = prob * h / 3, loss * h / 3
  return min(1, max(0, prob)), max(0, loss)
end

--- For independent normal posteriors X1 ~ N(m1, se1^2) and X2 ~ N(m2, se2^2):
-- prob = P(X2 > X1) and loss = E[max(X1 - X2, 0)], in closed form. With both
-- se 0 the means decide (prob 1, 0, or 0.5 when equal).
function M.beat_normal(m1, se1, m2, se2)
  local mu, s = m2 - m1, sqrt(se1 * se1 + se2 * se2)
  if s == 0 then return (mu > 0 and 1 or mu < 0 and 0 or 0.5), max(-mu, 0) end
  local z = mu / s
  return norm_cdf(z), s * norm_pdf(z) - mu * norm_sf(z)
end

local FLOOR = 1e-4

--- Population stability index of live values against a reference histogram:
-- counts[b] reference rows in bin b, whose upper edge is edges[b] (the last bin
-- takes every value past the edges; NaN and infinities are skipped). Returns psi
-- and the live counts per bin; shares are floored at 1e-4, so empty bins are finite.
function M.psi(edges, counts, values)
  local k = #counts
  local live = {}
  for b = 1, k do live[b] = 0 end
  local n = 0
  for _, v in ipairs(values) do
    if v == v and v ~= huge and v ~= -huge then
      -- First bin whose upper edge is >= v (binary search), else the last.
      local lo, hi = 1, k
      while lo < hi do
        local mid = floor((lo + hi) / 2)
        if v <= edges[mid] then hi = mid else lo = mid + 1 end
      end
      live[lo] = live[lo] + 1
      n = n + 1
    end
  end
  local ref = 0
  for b = 1, k do ref = ref + counts[b] end
  local psi = 0
  for b = 1, k do
    local pa = max(n > 0 and live[b] / n or 0, FLOOR)
    local pr = max(ref > 0 and counts[b] / ref or 0, FLOOR)
    psi = psi + (pa - pr) * log(pa / pr)
  end
  return psi, live
end

local function gcd(a, b)
  while b ~= 0 do a, b = b, a % b end
  return a
end

-- P(D >= h / lcm(m, n)) for the two-sample statistic: the share of monotone
-- lattice paths from (0, 0) to (m, n) that touch |x ng - y mg| >= h. Each
-- column holds, per y, the share of paths to (x, y) that already left the
-- band; shares average with weights x/(x+y), y/(x+y) (Viehmann 2021), so
-- tiny p-values keep their relative precision and nothing overflows.
local function ks_exact(m, n, h)
  if m < n then m, n = n, m end
  local g = gcd(m, n)
  local mg, ng = m / g, n / g
  local function lo_of(x) return max(0, floor((x * ng - h) / mg) + 1) end
  local function hi_of(x) return min(n, math.ceil((x * ng + h) / mg) - 1) end
  local col = ffi.new("double[?]", n + 1)
  local hi = hi_of(0)
  for y = 0, n do col[y] = y <= hi and 0 or 1 end
  local lo = 0
  for x = 1, m do
    local nlo, nhi = lo_of(x), hi_of(x)
    if nlo > nhi then return 1 end
    for y = lo, nlo - 1 do col[y] = 1 end
    local y0 = nlo
    if y0 == 0 then y0 = 1 end
    local prev = col[y0 - 1]
    for y = y0, nhi do
      prev = (x * col[y] + y * prev) / (x + y)
      col[y] = prev
    end
    lo = nlo
  end
  return col[n]
end

local EXACT_MAX = 1e7

--- Two-sample Kolmogorov-Smirnov test of arrays a and b (numbers, neither empty):
-- { statistic = D, p_value (two-sided), method }, as scipy.stats.ks_2samp(a, b); the
-- p-value is "exact" when #a * #b <= 1e7, else Kolmogorov's limit ("asymp").
function M.ks_2samp(a, b)
  local n1, n2 = #a, #b
  assert(n1 > 0 and n2 > 0, "stats.ks_2samp: empty sample")
  local x, y = {}, {}
  for i = 1, n1 do x[i] = a[i] end
  for i = 1, n2 do y[i] = b[i] end
  table.sort(x)
  table.sort(y)
  -- Both ECDFs at every distinct value: ties advance both samples at once.
  -- Once one sample is used up the gap only shrinks, so the walk stops there.
  local i, j, d = 0, 0, 0
  while i < n1 and j < n2 do
    local v = min(x[i + 1], y[j + 1])
    while i < n1 and x[i + 1] == v do i = i + 1 end
    while j < n2 and y[j + 1] == v do j = j + 1 end
    d = max(d, abs(i / n1 - j / n2))
  end
  -- D is a multiple of 1/lcm; scipy's default reports h/lcm (not the
  -- rounded difference, which can be an ulp off) whenever it tries the
  -- exact p, i.e. for max(n1, n2) <= 10000. Do the same, bit for bit.
  local lcm = n1 / gcd(n1, n2) * n2
  local h = floor(d * lcm + 0.5)
  local stat = max(n1, n2) <= 10000 and h / lcm or d
  if n1 * n2 <= EXACT_MAX then
    local p = h == 0 and 1 or ks_exact(n1, n2, h)
    return { statistic = stat, p_value = min(1, max(0, p)), method = "exact" }
  end
  local en = n1 * n2 / (n1 + n2)
  return { statistic = stat, p_value = M.kolmogorov_sf(sqrt(en) * d), method = "asymp" }
end

return M
