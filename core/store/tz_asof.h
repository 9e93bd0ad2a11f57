/*
 * tz_asof — point-in-time ("as of") lookups of feature rows in the offline
 * store, the kernel behind the feature store's historical joins.
 *
 * The offline database maps (view id u32 BE, entity as an ordered string
 * field, event time i64 µs with the sign bit flipped, BE) to a row encoded
 * as: u16 LE schema version, null bitmap, then the present values in schema
 * order (float and int: 8 bytes LE, bool: 1 byte, string: u32 LE length and
 * bytes) — the layout of lua/tycho/rowcodec.lua.
 *
 * tz_asof_join_views() answers, for every spine row i and each view, the
 * latest row of the view's entity[i] with event time <= t[i] and, when
 * ttl_us > 0, t[i] - time <= ttl_us, and writes the wanted features of that
 * row into out[k][i] (left null when no row qualifies). It sorts each
 * view's spine by (entity, time), cuts it into parts of some thousand rows
 * at entity boundaries, and walks each part's entities' history once with a
 * cursor of its own, the parts spread over the pool's threads (a view with
 * a wanted string feature is one part: its dictionary takes one writer).
 * The caller owns everything: the spine arrays, the layouts and the output
 * columns (created with tz_column_new(name, type, n), every row null).
 * Fails with TZ_EINVAL on a row whose version or bytes do not match the
 * layouts (a damaged store), TZ_ENOMEM, or store errors. */
#ifndef TZ_ASOF_H
#define TZ_ASOF_H

#include <stddef.h>
#include <stdint.h>

#include "frame/tz_frame.h"
#include "store/tz_store.h"

typedef struct tz_asof_layout {
    int n_features;
    const int *types;        /* TZ_COL_* per feature of this version */
    const int *wanted;       /* per wanted feature: its index here, or -1 */
} tz_asof_layout;

typedef struct tz_asof_view {
    uint32_t view_id;
    int64_t ttl_us;                  /* 0 = no limit */
    size_t n_versions;               /* versions 1..n_versions */
    const tz_asof_layout *layouts;   /* layouts[v - 1] */
    size_t n_wanted;
} tz_asof_view;

/* The views' joins over the same spine times in database db, every part
 * reading one snapshot of st (read transactions begun on one commit). entities[i] (a string or int64
 * column of the spine; nulls never match) and outs[i] are view i's. Call it
 * outside any transaction of this thread. Returns 0 (also when db does not
 * exist: nothing to fill), or the first failing view's code and message. */
int tz_asof_join_views(tz_store *st, const char *db, size_t n_views, const tz_asof_view *views,
                       const tz_column *const *entities, const int64_t *t, size_t n,
                       tz_column *const *const *outs, tz_err *err);

#endif
