/* Resolving request paths to the files compiled into the binary. */
#include "assets_int.h"

#include <string.h>

static const sg_asset *by_path(const char *path, size_t len)
{
    for (size_t i = 0; i < sg__assets_count; i++)
        if (strlen(sg__assets[i].path) == len && memcmp(sg__assets[i].path, path, len) == 0)
            return &sg__assets[i];
    return NULL;
}

const sg_asset *sg_asset_find(const char *url)
{
    static const char docs[] = "/docs/index.html", ui[] = "/ui/index.html";
    if (!url) return NULL;
    if (strcmp(url, "/docs") == 0 || strcmp(url, "/docs/") == 0)
        return by_path(docs, sizeof docs - 1);
    if (strcmp(url, "/ui/") == 0) return by_path(ui, sizeof ui - 1);
    /* Only the published trees; "/ui/../x" or any other spelling of a
     * path never matches a table entry, which is exact. */
    if (strcmp(url, "/openapi.json") == 0 || strncmp(url, "/docs/", 6) == 0 ||
        strncmp(url, "/ui/", 4) == 0)
        return by_path(url, strlen(url));
    return NULL;
}
