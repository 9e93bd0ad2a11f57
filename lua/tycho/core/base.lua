--- The face of core/util, shared by the modules that call the C core: the
-- tz_err type, the TZ_E* codes by name, and one reused error buffer (hot
-- calls allocate nothing; the loop is single-threaded, so one buffer serves
-- every call); the declarations of progress reporting, blobs, hashing,
-- distinct-count sketches and sampling.
local ffi = require "ffi"

ffi.cdef [[
typedef struct tz_err { int code; char msg[256]; } tz_err;
const char *tz_strerror(int code);
typedef struct tz_progress { const char *label; int total; int quiet; double started; double last_print; int printed; } tz_progress;
int  tz_progress_report(void *ud, int round, double train_loss, double valid_loss);
void tz_progress_done(tz_progress *p);
typedef struct tz_blob_writer { unsigned char *p; size_t len, cap; int failed; } tz_blob_writer;
typedef struct tz_blob_reader { const unsigned char *p; size_t len, pos; int failed; } tz_blob_reader;
void tz_blob_writer_init(tz_blob_writer *w);
void tz_blob_put_u8(tz_blob_writer *w, uint8_t v);
void tz_blob_put_u32(tz_blob_writer *w, uint32_t v);
void tz_blob_put_f64(tz_blob_writer *w, double v);
void tz_blob_put_bytes(tz_blob_writer *w, const void *data, size_t n);
void tz_blob_put_str(tz_blob_writer *w, const char *s, size_t n);
int tz_blob_finish(tz_blob_writer *w, uint32_t kind, uint32_t version, unsigned char **out, size_t *out_len, tz_err *err);
int tz_blob_open(const void *data, size_t len, uint32_t kind, uint32_t max_version, tz_blob_reader *r,
                 uint32_t *version, tz_err *err);
const char *tz_blob_get_str(tz_blob_reader *r, size_t *n);
int tz_blob_close(tz_blob_reader *r, tz_err *err);
void free(void *p);
uint64_t tz_hash_siphash(const uint8_t key[16], const void *data, size_t len);
uint64_t tz_hash_fnv1a64(uint64_t seed, const void *data, size_t len);
double tz_hash_unit_interval(uint64_t state, const void *data, size_t len);
int tz_hash_bucket(uint64_t state, const void *data, size_t len, const double *bounds, int n);
void tz_hash_sha256(const void *data, size_t len, uint8_t out[32]);

void tz_hll_add(uint8_t *regs, int p, const void *data, size_t len);
void tz_hll_add_f64(uint8_t *regs, int p, double x);
double tz_hll_estimate(const uint8_t *regs, int p);

double tz_sample_uniform(uint64_t *state);
int tz_sample_best_beta(uint64_t *state, int n, const double *a, const double *b);
int tz_sample_best_normal(uint64_t *state, int n, const double *mean, const double *sd);

size_t tz_fmt_double(char *buf, double v);

typedef struct tz_rows_index tz_rows_index;
tz_rows_index *tz_rows_index_new(int n, const char *const *names, const size_t *lens);
void tz_rows_index_free(tz_rows_index *ix);
typedef struct tz_rows_extra { int32_t row; int32_t kind; uint32_t key_at, key_len; uint32_t value_at, value_len; } tz_rows_extra;
int tz_rows_parse(const tz_rows_index *ix, const char *body, size_t len, double *out, int cap_rows,
                  tz_rows_extra *extras, int cap_extras, int *n_extras);
size_t tz_rows_min_bytes(int n);
typedef struct tz_feast_key { int32_t kind; uint32_t at, len; double number; } tz_feast_key;
typedef struct tz_feast_read {
  uint32_t features_at, features_len; uint32_t join_key_at, join_key_len; int32_t full_names;
} tz_feast_read;
int tz_feast_parse(const char *body, size_t len, tz_feast_read *out, tz_feast_key *keys, int cap_keys);
]]

local M = {
  OK = 0, ENOTFOUND = -30001, EINVAL = -30002, ENOMEM = -30003, EIO = -30004, EMAPFULL = -30005,
  ECORRUPT = -30006, EBUSY = -30007, ESTORE = -30008, ETOOBIG = -30009,
}

M.err = ffi.new("tz_err")

local C = ffi.C

--- The last error as message, code name.
function M.failure()
  return ffi.string(M.err.msg), ffi.string(C.tz_strerror(M.err.code))
end

local buf_out, len_out = ffi.new("unsigned char*[1]"), ffi.new("size_t[1]")

--- Blobs (tz_blob): a versioned, checksummed container of strings, the
-- envelope of model files and artifacts. pack gives the bytes (or nil and
-- why); unpack gives the strings back, or nil and why the bytes are
-- damaged, truncated, foreign (another kind) or newer than max_version.
M.blob = {}

function M.blob.pack(kind, version, parts)
  local w = ffi.new("tz_blob_writer")
  C.tz_blob_writer_init(w)
  for _, s in ipairs(parts) do C.tz_blob_put_str(w, s, #s) end
  if C.tz_blob_finish(w, kind, version, buf_out, len_out, M.err) ~= 0 then return nil, ffi.string(M.err.msg) end
  local bytes = ffi.string(buf_out[0], len_out[0])
  C.free(buf_out[0])
  return bytes
end

function M.blob.unpack(bytes, kind, max_version)
  if type(bytes) ~= "string" then return nil, "not bytes" end
  local r, n = ffi.new("tz_blob_reader"), ffi.new("size_t[1]")
  if C.tz_blob_open(bytes, #bytes, kind, max_version, r, nil, M.err) ~= 0 then return nil, ffi.string(M.err.msg) end
  local parts = {}
  while r.pos < r.len and r.failed == 0 do
    local p = C.tz_blob_get_str(r, n)
    if p == nil then break end
    parts[#parts + 1] = ffi.string(p, n[0])
  end
  if C.tz_blob_close(r, M.err) ~= 0 then return nil, ffi.string(M.err.msg) end
  return parts
end

local digest = ffi.new("uint8_t[32]")

--- Hashing (core/util/tz_hash): SHA-256 for artifact checksums, SipHash
-- for keyed pseudonyms, FNV-1a states and unit-interval buckets for
-- experiment assignment.
M.hash = {
  siphash = C.tz_hash_siphash, fnv1a64 = C.tz_hash_fnv1a64,
  unit_interval = C.tz_hash_unit_interval, bucket = C.tz_hash_bucket,
}

--- SHA-256 of s, as 32 raw bytes.
function M.hash.sha256(s)
  C.tz_hash_sha256(s, #s, digest)
  return ffi.string(digest, 32)
end

--- HyperLogLog sketches (core/util/tz_hll) over a uint8_t[2^p] array of
-- registers: add(regs, p, s, #s), add_f64(regs, p, x) (a number by its
-- bytes), estimate(regs, p).
M.hll = { add = C.tz_hll_add, add_f64 = C.tz_hll_add_f64, estimate = C.tz_hll_estimate }

local char_ptr = ffi.typeof("char *")

--- A finite number as the shortest JSON text that reads back as it
-- (core/util/tz_fmt), written straight into a string.buffer (no string per
-- number); NaN and infinities as null, as json.encode writes them.
function M.put_json_number(buf, v)
  if v ~= v or v == math.huge or v == -math.huge then
    buf:put("null")
    return
  end
  buf:commit(C.tz_fmt_double(ffi.cast(char_ptr, buf:reserve(32)), v))
end

--- Rows of numbers parsed straight from a predict body (core/util/tz_rows_json):
-- index(names) -> an index of column names (nil when they repeat or are
-- too many or too long); parse(index, body, len, out, cap_rows[, extras,
-- cap_extras, count]) (body: a string or a pointer to len bytes) -> rows,
-- or OTHER (not the full numeric shape: parse it the general way) or
-- TOO_MANY, with other keys of scalar value in extras (from extras(n))
-- and their number in count[0] (an int[1]);
-- min_bytes(n): the fewest bytes a row of n columns takes. An extra's kind
-- is STRING, NUMBER, TRUE, FALSE or NULL.
M.rows_json = { OTHER = -1, TOO_MANY = -2, min_bytes = C.tz_rows_min_bytes,
                STRING = 0, NUMBER = 1, TRUE = 2, FALSE = 3, NULL = 4 }

function M.rows_json.index(names)
  local n = #names
  local ptrs, lens = ffi.new("const char*[?]", n), ffi.new("size_t[?]", n)
  for i, name in ipairs(names) do ptrs[i - 1], lens[i - 1] = name, #name end
  local ix = C.tz_rows_index_new(n, ptrs, lens)
  if ix == nil then return nil end
  return ffi.gc(ix, C.tz_rows_index_free)
end

function M.rows_json.parse(ix, body, len, out, cap_rows, extras, cap_extras, count)
  return C.tz_rows_parse(ix, body, len, out, cap_rows, extras, cap_extras or 0, count)
end

function M.rows_json.extras(n) return ffi.new("tz_rows_extra[?]", n) end

--- The Feast read body of /get-online-features parsed into offsets
-- (tz_feast_parse, called straight: a Lua function around it started root
-- traces that ended in the route's loops): feast(body, #body, read, keys,
-- cap) -> the number of entity
-- keys, in keys (from feast_keys(cap)), with the features array's text,
-- the join key and full_feature_names in read (from feast_read()); or
-- OTHER or TOO_MANY. A key's kind is STRING or NUMBER.
M.rows_json.feast = C.tz_feast_parse
function M.rows_json.feast_read() return ffi.new("tz_feast_read") end
function M.rows_json.feast_keys(n) return ffi.new("tz_feast_key[?]", n) end

ffi.cdef [[
struct timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clock_id, struct timespec *ts);
]]
local CLOCK_REALTIME, now_ts = 0, ffi.new("struct timespec")

--- Microseconds since the epoch (the wall clock), by an FFI call that
-- compiled code makes inline: the prediction log reads it per entry.
function M.now_us()
  C.clock_gettime(CLOCK_REALTIME, now_ts)
  return tonumber(now_ts.tv_sec) * 1e6 + math.floor(tonumber(now_ts.tv_nsec) / 1000)
end

local CLOCK_MONOTONIC, mono_ts = 1, ffi.new("struct timespec")

--- Seconds on the monotonic clock, for durations, by the same inline FFI
-- call (luv's hrtime is a Lua C function: a request's two reads of it were
-- a tenth of a one-entity online read).
function M.monotonic()
  C.clock_gettime(CLOCK_MONOTONIC, mono_ts)
  return tonumber(mono_ts.tv_sec) + tonumber(mono_ts.tv_nsec) * 1e-9
end

--- Random draws (core/util/tz_sample) over a uint64_t[1] state.
M.sample = { uniform = C.tz_sample_uniform, best_beta = C.tz_sample_best_beta, best_normal = C.tz_sample_best_normal }

return M
