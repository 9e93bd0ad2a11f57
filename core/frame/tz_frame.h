/*
 * tz_frame — columnar data frames and their CSV reader/writer.
 *
 * A frame is an ordered list of named columns of equal length. A column holds
 * float64, int64, bool (one byte each) or string values (int32 codes into a
 * per-column dictionary of distinct strings), plus a validity bitmap (bit set
 * = value present). A float64 null is also stored as NaN, so kernels reading
 * the raw array see NaN for missing.
 *
 * Ownership. Columns are reference-counted: a frame holds one reference per
 * column, and frames made by select or with_column share columns, so they are
 * cheap. tz_frame_free() drops the frame's references; a column is freed with
 * its last reference. A column shared by several frames must not be written
 * through one of them (Lua's frame module copies before writing). Strings
 * returned by tz_dict_get live as long as their column.
 *
 * Errors. Functions return 0 or a negative TZ_E* code and fill tz_err
 * (util/tz_err.h); NULL-returning constructors fail only on memory.
 */
#ifndef TZ_FRAME_H
#define TZ_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "util/tz_err.h"

typedef enum tz_col_type {
    TZ_COL_F64 = 0,
    TZ_COL_I64 = 1,
    TZ_COL_BOOL = 2,
    TZ_COL_STR = 3,
} tz_col_type;

typedef struct tz_dict tz_dict;

typedef struct tz_column {
    char *name;
    int type;            /* tz_col_type */
    size_t n;            /* rows */
    size_t cap;          /* allocated rows */
    void *data;          /* double / int64_t / uint8_t / int32_t codes */
    uint8_t *valid;      /* bitmap, (cap + 7) / 8 bytes */
    size_t null_count;
    tz_dict *dict;       /* strings only */
    int refs;
} tz_column;

typedef struct tz_frame {
    size_t n_rows, n_cols, cap_cols;
    tz_column **cols;
} tz_frame;

/* ---- columns ---------------------------------------------------------- */

/* Asks for huge pages behind a large array (a column's values, a reader's
 * text) before it is first written: on virtual machines each 4 KiB page's
 * first touch cost more than parsing its values (page faults took 45 % of
 * reading 1M rows of 59 columns). The advice covers the array's whole
 * pages, so an array glibc mapped on its own stays one mapping that
 * realloc can still move with mremap. Best effort: ignored below 4 MiB and
 * by kernels without transparent huge pages. */
void tz_advise_huge(void *p, size_t len);

/* A column of n rows, every value null (zeroed; f64 are NaN). */
tz_column *tz_column_new(const char *name, int type, size_t n);
void tz_column_ref(tz_column *c);
void tz_column_unref(tz_column *c);
/* Renames in place (the column must not be shared). 0 or TZ_ENOMEM. */
int tz_column_rename(tz_column *c, const char *name, tz_err *err);
/* Converts an int64 or bool column to float64 in a new column. */
tz_column *tz_column_to_f64(const tz_column *c);
/* Sets or clears row i's validity, keeping null_count right. */
void tz_column_set_valid(tz_column *c, size_t i, int valid);

static inline int tz_column_is_valid(const tz_column *c, size_t i)
{
    return (c->valid[i >> 3] >> (i & 7)) & 1;
}

/* ---- string dictionaries ----------------------------------------------- */

/* The code of the string (adding it when new), or -1 on memory failure. */
int32_t tz_dict_intern(tz_dict *d, const char *s, size_t len);
/* The string of a code and its length; NULL for an unknown code. */
const char *tz_dict_get(const tz_dict *d, int32_t code, size_t *len);
/* Code of an existing string or -1. */
int32_t tz_dict_find(const tz_dict *d, const char *s, size_t len);
size_t tz_dict_size(const tz_dict *d);
/* rank[code] = the code's place among the dictionary's strings in byte
 * order (a shorter string before one it begins): so rows can be sorted by
 * their strings with integer comparisons. rank holds tz_dict_size(d)
 * entries. 0, or -1 out of memory. */
int tz_dict_rank(const tz_dict *d, size_t *rank);

/* ---- frames ----------------------------------------------------------- */

tz_frame *tz_frame_new(void);
void tz_frame_free(tz_frame *f);
/* Appends a column (taking a new reference). Its length must equal the
 * frame's row count unless the frame has no columns; names must be unique. */
int tz_frame_add(tz_frame *f, tz_column *c, tz_err *err);
/* Index of a column by name, or -1. */
int tz_frame_find(const tz_frame *f, const char *name);
/* New frame of rows idx[0..n-1] (any order, repeats allowed) of every column. */
int tz_frame_take(const tz_frame *f, const int64_t *idx, size_t n, tz_frame **out, tz_err *err);
/* Bytes held by the frame's columns (data, bitmaps, dictionaries). */
size_t tz_frame_bytes(const tz_frame *f);

/* ---- CSV -------------------------------------------------------------- */

typedef struct tz_csv_opts {
    char delimiter;                 /* 0 = ',' */
    int no_header;                  /* columns then named column_1.. */
    size_t infer_rows;              /* rows sampled for types; 0 = 1000 */
    const char *const *na_values;   /* NULL = "", NA, N/A, NaN, nan, null, NULL, None */
    size_t n_na;
    const char *const *schema_names;/* explicit types for these columns */
    const int *schema_types;
    size_t n_schema;
    int strict;                     /* first bad row is an error, not a report */
    const char *line_column;        /* when set, an int64 column of this name
                                       holds each row's line in the file */
    int unique_header;              /* a name twice in the header fails the call
                                       (otherwise the second becomes name_2) */
    size_t part_bytes;              /* past the sample, read in parts of about this
                                       many bytes on the pool's threads when there are
                                       4 or more; 0 = 1 MiB (with 2 threads or more),
                                       SIZE_MAX = serially. Same frame either way. */
    size_t from, to;                /* non-zero: the data records are those from byte
                                       `from` (a record's start past the header, which
                                       is read as usual) up to byte `to` (a record's
                                       end), so a file is read a range at a time
                                       (tz_csv_blocks) */
    size_t from_line;               /* the line `from` is on (for line numbers) */
} tz_csv_opts;

typedef struct tz_csv_issue {
    size_t line;         /* 1-based line of the file where the record starts */
    size_t column;       /* 1-based field, 0 = the whole row */
    char message[160];
} tz_csv_issue;

typedef struct tz_csv_report {
    size_t rows_read;    /* data records seen */
    size_t rows_bad;     /* of which rejected */
    tz_csv_issue *issues;/* first TZ_CSV_MAX_ISSUES rejected rows, malloc'd */
    size_t n_issues;
    size_t *more_lines;  /* the lines of the rejected rows past those: every
                            rejected row is accounted for by its line, only
                            the first ones carry a message (bounded memory) */
    size_t n_more;
} tz_csv_report;

#define TZ_CSV_MAX_ISSUES 1000

/* Reads a CSV file into a new frame. Bad records (wrong field count, a value
 * that does not parse as its column's type) are left out and described in
 * report (free with tz_csv_report_free); with opts->strict the first one
 * fails the call with TZ_EINVAL naming file, line and column. An empty file,
 * an unterminated quote or an unreadable file fail the call. */
int tz_csv_read(const char *path, const tz_csv_opts *opts, tz_frame **out, tz_csv_report *report,
                tz_err *err);
void tz_csv_report_free(tz_csv_report *r);

/* A CSV file read a block of whole records at a time, and a copy written
 * beside it with fields added to every row kept, each row otherwise as the
 * input has it (tycho score: a file of any size in bounded memory, its
 * values echoed, never reformatted). The copy goes to a temporary file
 * beside the output, which tz_csv_blocks_close renames into place, so a
 * failed run leaves no half-written output and the output may be the
 * input; "-" writes to standard output, and a path that is not a regular
 * file is written in place. */
typedef struct tz_csv_blocks tz_csv_blocks;

/* Opens in (a header is required) and out (NULL: no copy), reads the
 * header. block_bytes: records of about this many bytes a block (0: 8 MiB;
 * a longer record is a block of its own). TZ_EIO, TZ_EINVAL (as
 * tz_csv_read's), TZ_ENOMEM. */
int tz_csv_blocks_open(const char *in, const char *out, char delimiter, size_t block_bytes, tz_csv_blocks **b,
                       tz_err *err);
/* The header's columns (named as tz_csv_read names them). */
const tz_frame *tz_csv_blocks_columns(const tz_csv_blocks *b);
/* The next block's rows into *out (NULL after the last block), read as
 * tz_csv_read reads them with opts, whose line_column must be set (the
 * rows' lines are what tz_csv_blocks_write finds them by); its refused
 * records in report, by their lines in the file. recycle: the block
 * before, or NULL; its columns' memory becomes this block's where nobody
 * else holds them, and it is freed whatever the call returns. */
int tz_csv_blocks_next(tz_csv_blocks *b, const tz_csv_opts *opts, tz_frame *recycle, tz_frame **out,
                       tz_csv_report *report, tz_err *err);
/* The copy's header: the input's, then names. */
int tz_csv_blocks_write_header(tz_csv_blocks *b, const char *const *names, size_t n, tz_err *err);
/* Rows of the last block into the copy: for each row i of tail, the record
 * at file line lines[i] (one of the block's rows' lines), then tail's row i. */
int tz_csv_blocks_write(tz_csv_blocks *b, const int64_t *lines, const tz_frame *tail, tz_err *err);
/* Closes both files and frees b. keep: the copy takes its place (0, or
 * TZ_EIO when it could not be written); else it is removed. */
int tz_csv_blocks_close(tz_csv_blocks *b, int keep, tz_err *err);

/* Writes the frame as CSV with a header; nulls as empty fields; strings
 * quoted when they hold the delimiter, a quote or a newline. */
int tz_csv_write(const tz_frame *f, const char *path, char delimiter, tz_err *err);

#endif
