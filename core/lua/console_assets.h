/*
 * console_assets — the web console's bundle (console/: console.js and
 * console.css, built by esbuild), embedded in the tycho binary at build
 * time: console/embed.cmake generates the definition of tz_console_assets
 * from the files the build made (BUILD_DIR/console), and none when node was
 * missing or the bundle failed to build (/ui/ then says so).
 *
 * Ownership: static, read-only storage of the executable, never freed;
 * `data` is not NUL-terminated, `size` bytes long.
 */
#ifndef TZ_CONSOLE_ASSETS_H
#define TZ_CONSOLE_ASSETS_H

#include <stddef.h>

typedef struct tz_console_asset {
    const char *name;           /* file name, "console.js" */
    const unsigned char *data;  /* its bytes */
    size_t size;
} tz_console_asset;

/* The embedded files, ended by an entry whose name is NULL (the first one
 * when the console was not built). */
extern const tz_console_asset tz_console_assets[];

#endif
