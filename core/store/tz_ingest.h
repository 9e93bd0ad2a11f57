/*
 * tz_ingest — a batch of feature rows landed from a frame's columns: the
 * columnar fast path of lua/tycho/features/ingest.lua, with no Lua table
 * per row or per value.
 *
 * For each row, in order: the entity key (a string column: not null, not
 * empty, at most TZ_INGEST_MAX_ENTITY bytes) and event time (a string column
 * of epoch numbers or ISO-8601 text, or a numeric column, read as
 * lua/tycho/util/timeutil.lua parses them) are checked, then every
 * feature's declared rules (required, min, max, allowed values); a row
 * whose (entity, time) repeats an earlier row of the batch is a duplicate.
 * A good row is encoded (lua/tycho/features/rowcodec.lua's layout) and
 * written as lua/tycho/features/ingest.lua writes it: the offline row unless
 * the same bytes are there, the online row unless a newer event (or the
 * same value) is there. A rejected row gets only a status: the caller
 * words its reason (the Lua validator does, on that row alone).
 *
 * The statistics of the rows that changed the store are folded in as
 * lua/tycho/features/quality.lua's record() would: per feature, nulls,
 * counts, sum, squared deviations from this batch's mean, min, max, a
 * histogram over the range the caller gives (or this batch's), and the
 * HyperLogLog registers (numbers by their bytes, tz_hll_add_f64; text and
 * booleans, as true/false, by their text).
 */
#ifndef TZ_INGEST_H
#define TZ_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "frame/tz_frame.h"
#include "store/tz_store.h"

#define TZ_INGEST_MAX_ENTITY 256
#define TZ_INGEST_BINS 16

/* Row statuses. */
enum {
    TZ_INGEST_LANDED = 0,     /* changed the store */
    TZ_INGEST_REPLACED = 1,   /* landed, correcting a stored offline row (old bytes kept) */
    TZ_INGEST_UNCHANGED = 2,  /* the store held it already */
    TZ_INGEST_REJECTED = 3,   /* failed a rule: the caller words why */
    TZ_INGEST_DUPLICATE = 4,  /* same entity and time as row detail[i] */
};

typedef struct tz_ingest_feature {
    const tz_column *col;          /* its column; type as declared (int64 may feed a float) */
    int type;                      /* declared TZ_COL_* */
    int required;
    int has_min, has_max;
    double min, max;
    const double *allowed;         /* numbers, sorted; NULL: any */
    size_t n_allowed;
    const uint8_t *allowed_code;   /* strings: 1 per allowed dictionary code; NULL: any */
    size_t n_codes;
    /* statistics of the rows written, in and out */
    uint8_t *hll;                  /* 2^p registers */
    int64_t nulls, numbers, others; /* out: this batch's */
    double sum, m2, lo, hi;        /* out: over the numbers (booleans as 0/1) */
    int has_hist;                  /* in: 1 = hist_lo/hist_hi given; out: 1 when numbers were seen */
    double hist_lo, hist_hi;
    int64_t hist[TZ_INGEST_BINS], under, over;   /* out: this batch's counts */
} tz_ingest_feature;

typedef struct tz_ingest_batch {
    uint32_t view_id;
    uint16_t version;
    const tz_column *entity;       /* string */
    const tz_column *time;         /* string, int64 or float64 */
    size_t n;
    int n_features;
    tz_ingest_feature *features;   /* in the view's schema order */
    int write_offline, write_online;
    unsigned dbi_offline, dbi_online;
    int hll_p;
    uint8_t *entity_hll;           /* 2^p registers */
    /* out */
    uint8_t *status;               /* n */
    int64_t *detail;               /* n: a duplicate's first row */
    int64_t *times;                /* n: µs, for good rows */
    size_t landed, unchanged, rejected, duplicates, online_updates, replaced;
    int64_t min_time, max_time, last_event;   /* over good rows; last_event over written ones */
    unsigned char *old_rows;       /* replaced rows' old bytes, back to back (malloc'd: free()) */
    size_t old_len;
    size_t *old_at;                /* replaced[k]: row index, then offset and length (3 per row; malloc'd) */
} tz_ingest_batch;

/* Runs the batch inside the write transaction txn. 0, or a store error /
 * TZ_ENOMEM with err set (the caller aborts the transaction). */
int tz_ingest_run(tz_store_txn *txn, tz_ingest_batch *b, tz_err *err);

/* Epoch microseconds of a time text as lua/tycho/util/timeutil.lua's
 * parse reads it (epoch seconds, ms or µs by magnitude, or ISO-8601 with
 * an optional zone); 0 on success, -1 when it is not a time. */
int tz_ingest_parse_time(const char *s, size_t len, int64_t *out);

/* Epoch microseconds of every row of a time column (text as
 * tz_ingest_parse_time reads it, or numbers by magnitude) into out[n]:
 * 0, or -1 with *bad the first row that is null or no time. */
int tz_ingest_column_times(const tz_column *c, int64_t *out, size_t *bad);

#endif
