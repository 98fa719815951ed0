/* sagad status codes: every fallible sg_ function returns one of these.
 *
 * One error convention everywhere: a function that can fail returns an
 * sg_status, and where a person needs the reason it is a sentence kept
 * beside the code: constructors and parsers write it into the caller's
 * `err` buffer; objects that are called many times keep the text of their
 * last failure (sg_store_reader_error), as sqlite3_errmsg does. On failure
 * out-parameters are zeroed and callbacks are never called. Predicates
 * (sg_x_is_y) return 0 or 1 and cannot fail. */
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
    SG_EBUSY,     /* too much in flight: retry later (backpressure) */
    SG_ETYPE,     /* well-formed input of the wrong kind (JSON that is not an object) */
    SG_EEXIST,    /* the key is taken by a stored record: look that one up */
    SG_EREFUSED,  /* the peer refused for good (auth, unknown topic, 4xx): do not retry */
    SG_EFENCED,   /* this process lost its store lease: another sagad owns its sagas now */
    SG_EDOUBT,    /* a transaction's COMMIT went unanswered: it may have committed */
} sg_status;

/* Static string, never NULL. */
const char *sg_status_text(sg_status s);

#endif
