#include "sim/packet.h"
#include "core/err.h"
#include "core/timefmt.h"

#include <limits.h>
#include <string.h>
#include <zlib.h>

#define LATE_MAX_MS 60000 /* a late reading is up to 1 min older than its sensor's newest */

/* Appends one reading object (with its comma if not the first). */
static int put_reading(struct buf *b, int first, const struct sim_sensor *sn, double v, int has_ts,
                       int64_t ts)
{
    int rc = buf_put(b, first ? "{\"sensor_uuid\":" : ",{\"sensor_uuid\":", first ? 15 : 16);
    if (!rc) rc = buf_put_json_str(b, sn->uuid);
    if (!rc) rc = buf_printf(b, ",\"value\":%.*f", sn->sig.p->decimals, v);
    if (!rc && has_ts) {
        char t[TIMEFMT_RFC3339_LEN];
        timefmt_format_rfc3339(ts, t);
        rc = buf_printf(b, ",\"ts\":\"%s\"", t);
    }
    if (!rc) rc = buf_put(b, "}", 1);
    return rc;
}

int sim_packet_build(struct sim_device *d, const struct sim_packet_opts *o, struct sim_rng *r,
                     int64_t now_ms, uint64_t seq, struct buf *out, struct sim_packet_stats *st)
{
    buf_clear(out);
    int rc = buf_put(out, "{\"device_uuid\":", 15);
    if (!rc) rc = buf_put_json_str(out, d->uuid);
    if (!rc && o->packet_ids)
        rc = buf_printf(out, ",\"packet_id\":\"sim-%llu\"", (unsigned long long)seq);
    if (!rc) rc = buf_put(out, ",\"readings\":[", 13);
    size_t n = o->readings ? o->readings : d->nsensors;
    for (size_t k = 0; !rc && k < n; k++) {
        struct sim_sensor *sn = &d->sensors[d->next_sensor];
        d->next_sensor = (d->next_sensor + 1) % d->nsensors;
        int64_t ts = now_ms - (int64_t)(n - 1 - k);
        double v;
        if (o->timestamps && sn->last_ts > LATE_MAX_MS && o->late_fraction > 0 &&
            sim_rng_uniform(r) < o->late_fraction) {
            /* A buffered old sample: near the last value, older than the newest reading. */
            ts = sn->last_ts - 1 - (int64_t)sim_rng_below(r, LATE_MAX_MS);
            v = sn->last_value + sn->sig.p->noise * sim_rng_normal(r);
            st->late++;
        } else {
            enum sim_event ev;
            if (ts <= sn->last_ts) ts = sn->last_ts + 1; /* fast senders: keep time increasing */
            v = sim_signal_next(&sn->sig, &o->sig, r, &ev);
            sn->last_value = v;
            if (ts > sn->last_ts) sn->last_ts = ts;
            st->spikes += ev == SIM_EV_SPIKE;
            st->warnings += ev == SIM_EV_WARNING;
            st->criticals += ev == SIM_EV_CRITICAL;
        }
        rc = put_reading(out, k == 0, sn, v, o->timestamps, ts);
    }
    if (!rc) rc = buf_put(out, "]}", 2);
    if (!rc) {
        st->packets++;
        st->readings += n;
    }
    return rc;
}

int sim_gzipper_run(struct sim_gzipper *g, const char *in, size_t n, struct buf *out)
{
    if (n > UINT_MAX / 2) return IOT_ENOMEM;
    buf_clear(out);
    if (g->ready) {
        if (deflateReset(&g->z) != Z_OK) return IOT_EIO;
    } else {
        memset(&g->z, 0, sizeof g->z);
        /* windowBits 15 + 16: a gzip header and trailer instead of zlib's. */
        if (deflateInit2(&g->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK)
            return IOT_ENOMEM;
        g->ready = 1;
    }
    z_stream *z = &g->z;
    uLong bound = deflateBound(z, (uLong)n);
    int rc = buf_reserve(out, bound);
    if (!rc) {
        z->next_in = (Bytef *)(uintptr_t)in;
        z->avail_in = (uInt)n;
        z->next_out = (Bytef *)out->p;
        z->avail_out = (uInt)bound;
        rc = deflate(z, Z_FINISH) == Z_STREAM_END ? 0 : IOT_EIO;
        if (!rc) out->len = bound - z->avail_out;
    }
    return rc;
}

void sim_gzipper_fini(struct sim_gzipper *g)
{
    if (g->ready) deflateEnd(&g->z);
    g->ready = 0;
}

int sim_gzip(const char *in, size_t n, struct buf *out)
{
    struct sim_gzipper g = {.ready = 0};
    int rc = sim_gzipper_run(&g, in, n, out);
    sim_gzipper_fini(&g);
    return rc;
}
