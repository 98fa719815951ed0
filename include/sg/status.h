/* sagad status codes: every fallible sg_ function returns one of these. */
#ifndef SG_STATUS_H
#define SG_STATUS_H

typedef enum sg_status {
    SG_OK = 0,
    SG_ENOMEM,    /* allocation failed (most paths abort instead) */
    SG_EINVAL,    /* invalid argument or malformed input */
    SG_EIO,       /* storage or socket I/O failed */
    SG_ENOTFOUND, /* no such saga / event / key */
    SG_ECONFLICT, /* unique constraint: e.g. Idempotency-Key already taken */
    SG_ETOOBIG,   /* a bounded buffer would grow past its cap */
    SG_ETIMEOUT,  /* deadline passed */
    SG_ECLOSED,   /* object is shutting down; nothing new is accepted */
    SG_EPROTO,    /* peer answered something we cannot use */
    SG_EUNAVAIL,  /* dependency (broker, store) not reachable */
} sg_status;

/* Static string, never NULL. */
const char *sg_status_text(sg_status s);

#endif
