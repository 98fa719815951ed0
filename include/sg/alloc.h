/* Allocation helpers: out of memory aborts with a message (a saga
 * orchestrator that cannot allocate cannot keep its promises either). */
#ifndef SG_ALLOC_H
#define SG_ALLOC_H

#include <stddef.h>

void *sg_xmalloc(size_t n);
void *sg_xcalloc(size_t count, size_t size);
void *sg_xrealloc(void *p, size_t n);
/* Returns NULL for NULL; caller frees. */
char *sg_xstrdup(const char *s);
/* Copies n bytes and adds a NUL; caller frees. */
char *sg_xmemdup(const void *p, size_t n);

#endif
