/* The PEM files of the security flags (--tls-cert, --tls-key, --ca-file),
 * read and checked at start-up so that a bad one stops sagad with a clear
 * message (exit status 2) before anything else is opened. */
#ifndef SG_CLI_PEM_H
#define SG_CLI_PEM_H

#include <stddef.h>

/* Reads path (at most 1 MiB of text) whole into *out (the caller frees it,
 * and wipes it first if it holds a key); what names the flag in err.
 * 0, or 2 with err saying why (never quoting the content). */
int sg_pem_read(const char *path, const char *what, char **out, char *err, size_t errlen);

/* Checks PEM text: cert holds at least one certificate (more than one for
 * a chain), key a private key that belongs to the first certificate; key
 * may be NULL (a CA file). 0, or 2 with err saying why. */
int sg_pem_check(const char *cert, const char *cert_path, const char *key, const char *key_path,
                 char *err, size_t errlen);

#endif
