--- The face of core/util, shared by the modules that call the C core: the
-- tz_err type, the TZ_E* codes by name, and one reused error buffer (hot
-- calls allocate nothing; the loop is single-threaded, so one buffer serves
-- every call); the declarations of progress reporting, blobs, hashing and
-- sampling.
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

double tz_sample_uniform(uint64_t *state);
int tz_sample_best_beta(uint64_t *state, int n, const double *a, const double *b);
int tz_sample_best_normal(uint64_t *state, int n, const double *mean, const double *sd);
]]

local M = {
  OK = 0, ENOTFOUND = -30001, EINVAL = -30002, ENOMEM = -30003, EIO = -30004, EMAPFULL = -30005,
  ECORRUPT = -30006, EBUSY = -30007, ESTORE = -30008, ETOOBIG = -30009,
}

M.err = ffi.new("tz_err")

--- The last error as message, code name.
function M.failure()
  return ffi.string(M.err.msg), ffi.string(ffi.C.tz_strerror(M.err.code))
end

return M
