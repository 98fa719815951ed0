/* The text of each sg_status. */
#include "sg/status.h"

const char *sg_status_text(sg_status s)
{
    switch (s) {
    case SG_OK:
        return "ok";
    case SG_ENOMEM:
        return "out of memory";
    case SG_EINVAL:
        return "invalid argument";
    case SG_EIO:
        return "I/O error";
    case SG_ENOTFOUND:
        return "not found";
    case SG_ECONFLICT:
        return "conflict";
    case SG_ETOOBIG:
        return "too big";
    case SG_ETIMEOUT:
        return "timed out";
    case SG_ECLOSED:
        return "closed";
    case SG_EPROTO:
        return "protocol error";
    case SG_EUNAVAIL:
        return "unavailable";
    case SG_EBUSY:
        return "busy";
    case SG_ETYPE:
        return "wrong type";
    case SG_EEXIST:
        return "already exists";
    case SG_EREFUSED:
        return "refused";
    case SG_EFENCED:
        return "lease lost";
    case SG_EDOUBT:
        return "commit in doubt";
    }
    return "unknown status";
}
