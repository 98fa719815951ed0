/* The files of web/ compiled into the binary (cmake/embed.cmake generates
 * the table): the API description, its page and the dashboard. */
#ifndef SG_API_ASSETS_INT_H
#define SG_API_ASSETS_INT_H

#include <stddef.h>

typedef struct sg_asset {
    const char *path;          /* "/ui/index.html": its path under web/ */
    const char *mime;          /* Content-Type */
    const unsigned char *data; /* static; NUL-terminated past len */
    size_t len;
} sg_asset;

extern const sg_asset sg__assets[];
extern const size_t sg__assets_count;

/* The asset a request path names (static; NULL if none): "/openapi.json",
 * "/docs" (its index.html), "/docs/<file>", "/ui/" (index.html) and
 * "/ui/<file>". "/ui" itself is SG_ROUTE_REDIRECT's business. */
const sg_asset *sg_asset_find(const char *url);

#endif
