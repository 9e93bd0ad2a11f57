/* What the CSV files share inside core/frame: a block of text as
 * tz_csv_blocks read it (tz_csv_blocks.c), and the writer of rows after
 * their records (tz_csv_write.c). */
#ifndef TZ_CSV_INTERNAL_H
#define TZ_CSV_INTERNAL_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "frame/tz_frame.h"

/* Whole records of a CSV file: its line k (line first_line + k of the
 * file) starts at text + line_at[k]; n_lines of them, the last one ending
 * at len (with or without its line feed). */
typedef struct tz_csv_text {
    const char *text;
    size_t len;
    const size_t *line_at;
    size_t n_lines;
    size_t first_line;
    char delim;
} tz_csv_text;

/* The offset just past the line feed that ends the record starting at
 * t + s, read as the reader reads quotes (a quote opens a field only at
 * its start, a doubled quote inside stays inside), or TZ_CSV_NO_END when
 * t[s, len) does not hold it all. */
#define TZ_CSV_NO_END SIZE_MAX
size_t tz_csv_record_end(const char *t, size_t s, size_t len, char delim);

/* Where a file's header is: its record from byte start to byte end (its
 * line feed included, where the data starts), and the data's first line. */
typedef struct tz_csv_header_at {
    size_t start, end, line;
} tz_csv_header_at;

/* What tz_csv_read_into adds to tz_csv_read. */
typedef struct tz_csv_into {
    tz_frame *recycle;            /* its column memory becomes the new frame's where
                                     names and types match and nobody else holds it
                                     (the block before, in a stream); freed, whatever
                                     the call returns (NULL is fine) */
    tz_csv_header_at *header_at;  /* set: only the header is read (a frame of its
                                     columns, no rows), and this says where it is, so a
                                     stream cuts the file where the reader found it */
    char *text;                   /* the file's bytes opts->from .. opts->to, already
                                     read (a stream's block): parsed where they are,
                                     not read again */
} tz_csv_into;

int tz_csv_read_into(const char *path, const tz_csv_opts *opts, const tz_csv_into *into, tz_frame **out,
                     tz_csv_report *report, tz_err *err);

/* Up to n bytes of the file fd from offset off into buf: how many there
 * were (fewer at its end), or -1 with errno set. */
ssize_t tz_csv_pread(int fd, char *buf, size_t n, size_t off);

/* The writer's buffers (a round of rows' text), kept from one
 * tz_csv_write_after to the next: made afresh for each block, their pages
 * would be faulted in and zeroed again. NULL when out of memory. */
typedef struct tz_csv_outs tz_csv_outs;
tz_csv_outs *tz_csv_outs_new(void);
void tz_csv_outs_free(tz_csv_outs *outs);  /* NULL is fine */

/* Writes to fp, for each row i of tail: the record of t that starts at file
 * line lines[i], as t has it (its line ending dropped), the delimiter, the
 * row's fields, a line feed. TZ_EINVAL (nothing written) when a line is not
 * one of t's, TZ_ENOMEM, TZ_EIO. */
int tz_csv_write_after(FILE *fp, const tz_csv_text *t, const int64_t *lines, const tz_frame *tail,
                       tz_csv_outs *outs, tz_err *err);

/* Writes a header: raw (a header's text as its file has it), then names
 * (quoted where they need it), delimited, and a line feed. -1 when fp
 * failed. */
int tz_csv_write_names(FILE *fp, const char *raw, size_t len, const char *const *names, size_t n, char delim);

#endif
