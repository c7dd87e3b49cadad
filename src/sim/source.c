#include "sim/source.h"
#include "core/clock.h"
#include "core/err.h"

#include <curl/curl.h>

int sim_source_headers(struct sim_source *s, const char *api_key)
{
    struct buf h = {0};
    int rc = 0;
    for (size_t i = 0; !rc && i < s->fleet->ndev; i++) {
        struct sim_device *d = &s->fleet->dev[i];
        struct curl_slist *l = NULL, *n;
        buf_clear(&h);
        rc = d->key[0] ? buf_printf(&h, "X-Device-Key: %s", d->key)
                       : buf_printf(&h, "X-API-Key: %s", api_key);
        const char *lines[] = {"Content-Type: application/json", "Expect:", h.p,
                               s->gzip ? "Content-Encoding: gzip" : NULL};
        for (size_t k = 0; !rc && k < sizeof lines / sizeof lines[0]; k++) {
            if (!lines[k]) continue;
            if (!(n = curl_slist_append(l, lines[k])))
                rc = IOT_ENOMEM;
            else
                l = n;
        }
        d->headers = l; /* on failure too: sim_source_fini frees it */
    }
    buf_free(&h);
    return rc;
}

/* The device whose turn it is; advances the turn. */
static struct sim_device *next_device(struct sim_source *s)
{
    struct sim_device *d = &s->fleet->dev[s->next_dev];
    s->next_dev = (s->next_dev + 1) % s->fleet->ndev;
    return d;
}

int sim_source_fill(void *ud, struct loadgen_request *req)
{
    struct sim_source *s = ud;
    struct sim_device *d = next_device(s);
    struct buf *out = s->gzip ? &s->plain : &req->body;
    int rc = sim_packet_build(d, s->popts, &s->rng, clock_now_ms(), ++s->seq, out, &s->st);
    if (!rc && s->gzip) rc = sim_gzipper_run(&s->gz, s->plain.p, s->plain.len, &req->body);
    req->headers = d->headers;
    return rc;
}

int sim_source_emit(struct sim_source *s, FILE *fp, uint64_t n, const char *api_key)
{
    int64_t now = clock_now_ms();
    int rc = 0;
    for (uint64_t i = 0; !rc && i < n; i++) {
        struct sim_device *d = next_device(s);
        rc = sim_packet_build(d, s->popts, &s->rng, now + (int64_t)i, ++s->seq, &s->plain, &s->st);
        if (!rc && fprintf(fp, "%s\t%s\t%s\n", d->key[0] ? "X-Device-Key" : "X-API-Key",
                           d->key[0] ? d->key : api_key, s->plain.p) < 0)
            rc = IOT_EIO;
    }
    return rc;
}

void sim_source_fini(struct sim_source *s)
{
    for (size_t i = 0; s->fleet && i < s->fleet->ndev; i++) {
        curl_slist_free_all(s->fleet->dev[i].headers);
        s->fleet->dev[i].headers = NULL;
    }
    buf_free(&s->plain);
    sim_gzipper_fini(&s->gz);
}
