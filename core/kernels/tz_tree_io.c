/* tz_tree_io.c — trees in and out of model files (tz_blob). A tree read back
 * is checked before use: counts the file can hold, features in range,
 * children that point forward or at an existing leaf, so no walk can loop
 * or leave the arrays. */
#include "kernels/tz_tree.h"

#include <stdlib.h>
#include <string.h>


#define NODE_BYTES (4 + 4 + 4 + 1 + 8)

void tz_tree_write(tz_blob_writer *w, const tz_tree *t)
{
    tz_blob_put_u32(w, (uint32_t)t->n_nodes);
    tz_blob_put_u32(w, (uint32_t)t->n_leaves);
    for (int32_t i = 0; i < t->n_nodes; i++) {
        const tz_tree_node *n = &t->nodes[i];
        tz_blob_put_u32(w, (uint32_t)n->feature);
        tz_blob_put_u32(w, (uint32_t)n->left);
        tz_blob_put_u32(w, (uint32_t)n->right);
        tz_blob_put_u8(w, n->default_left);
        tz_blob_put_f64(w, n->threshold);
    }
    tz_blob_put_f64s(w, t->values, (size_t)t->n_leaves * t->n_values);
}

/* A child index is a later split or an existing leaf. */
static int child_ok(int32_t c, uint32_t i, uint32_t nn, uint32_t nl)
{
    return c >= 0 ? (uint32_t)c > i && (uint32_t)c < nn : (uint32_t)~c < nl;
}

int tz_tree_read(tz_blob_reader *r, int32_t n_features, int32_t n_values, tz_tree *out, tz_err *err)
{
    memset(out, 0, sizeof *out);
    uint32_t nn = tz_blob_get_u32(r), nl = tz_blob_get_u32(r);
    if (r->failed) return tz_err_set(err, TZ_ECORRUPT, "file ends inside a tree");
    if (nn >= INT32_MAX || nn > tz_blob_remaining(r) / NODE_BYTES)
        return tz_err_set(err, TZ_ECORRUPT, "a tree claims %u splits, more than the file holds", nn);
    if (nl != nn + 1 || n_values < 1 ||
        (uint64_t)nl * (uint64_t)n_values > (tz_blob_remaining(r) - (size_t)nn * NODE_BYTES) / 8)
        return tz_err_set(err, TZ_ECORRUPT, "a tree claims %u leaves for %u splits, or more than the file holds",
                          nl, nn);
    out->nodes = nn ? malloc((size_t)nn * sizeof *out->nodes) : NULL;
    out->values = malloc((size_t)nl * n_values * sizeof *out->values);
    if ((nn && !out->nodes) || !out->values) {
        tz_tree_free(out);
        return tz_err_set(err, TZ_ENOMEM, "out of memory loading a tree");
    }
    out->n_nodes = (int32_t)nn;
    out->n_leaves = (int32_t)nl;
    out->n_values = n_values;
    for (uint32_t i = 0; i < nn; i++) {
        tz_tree_node *n = &out->nodes[i];
        uint32_t f = tz_blob_get_u32(r);
        n->left = (int32_t)tz_blob_get_u32(r);
        n->right = (int32_t)tz_blob_get_u32(r);
        n->default_left = tz_blob_get_u8(r);
        n->threshold = tz_blob_get_f64(r);
        n->feature = (int32_t)f;
        if (f >= (uint32_t)n_features || n->default_left > 1 || !child_ok(n->left, i, nn, nl) ||
            !child_ok(n->right, i, nn, nl)) {
            tz_tree_free(out);
            return tz_err_set(err, TZ_ECORRUPT, "tree node %u is malformed", i);
        }
    }
    tz_blob_get_f64s(r, out->values, (size_t)nl * n_values);
    if (r->failed) {
        tz_tree_free(out);
        return tz_err_set(err, TZ_ECORRUPT, "file ends inside a tree");
    }
    int rc = tz_tree_prepare(out, err);
    if (rc) tz_tree_free(out);
    return rc;
}
