/* URL checks shared by the layers that take URLs from people: the flags
 * (cli) and the definitions file (engine). */
#include "sg/util.h"

#include <curl/curl.h>
#include <string.h>

int sg_http_url_ok(const char *url)
{
    int ok = 0;
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    if (!u || !url) goto done;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) goto done;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) goto done;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) goto done;
    ok = (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) && host[0];
done:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}
