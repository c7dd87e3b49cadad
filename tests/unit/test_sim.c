/*
 * Unit tests for src/sim: the latency histogram (bucket continuity,
 * percentile accuracy, merge), the signal generator (reproducible, normal
 * without events, spikes larger than delta_max, excursions that cross the
 * bands and come back), packet bodies (valid JSON, late readings older than
 * the sensor's newest, unique packet ids) and gzip.
 */
#include "core/timefmt.h"
#include "core/buf.h"
#include "sim/fleet.h"
#include "sim/latency.h"
#include "sim/packet.h"
#include "sim/signal.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- latency histogram ------------------------------------------------ */

Test(latency, buckets_are_contiguous_and_cover_their_values)
{
    unsigned prev = 0;
    for (uint64_t v = 1; v < (UINT64_C(1) << 24); v += 1 + v / 97) {
        unsigned i = lat_hist_index(v);
        cr_assert(i >= prev, "index went down at %llu", (unsigned long long)v);
        cr_assert(i < LAT_BUCKETS);
        cr_assert(lat_hist_bucket_high(i) >= v, "bucket %u high below %llu", i,
                  (unsigned long long)v);
        if (i > 0) cr_assert(lat_hist_bucket_high(i - 1) < v);
        prev = i;
    }
    cr_assert_eq(lat_hist_index(LAT_MAX_US * 4), lat_hist_index(LAT_MAX_US));
}

Test(latency, percentiles_within_two_percent)
{
    struct lat_hist *h = calloc(1, sizeof *h);
    cr_assert_not_null(h);
    for (uint64_t v = 1; v <= 100000; v++)
        lat_hist_add(h, v);
    cr_assert_eq(h->count, 100000);
    cr_assert_eq(h->min_us, 1);
    cr_assert_eq(h->max_us, 100000);
    double ps[] = {50, 90, 99, 99.9};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        double want = ps[k] * 1000, got = (double)lat_hist_percentile(h, ps[k]);
        cr_assert(got >= want && got <= want * 1.02, "p%g: got %g want %g", ps[k], got, want);
    }
    cr_assert_eq(lat_hist_percentile(h, 100), 100000);
    cr_assert_eq(lat_hist_percentile(h, 0), 1);
    free(h);
}

Test(latency, empty_and_merge)
{
    struct lat_hist *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    cr_assert(a && b);
    cr_assert_eq(lat_hist_percentile(a, 50), 0);
    lat_hist_add(a, 10);
    lat_hist_add(b, 1000);
    lat_hist_add(b, 2000);
    lat_hist_merge(a, b);
    cr_assert_eq(a->count, 3);
    cr_assert_eq(a->min_us, 10);
    cr_assert_eq(a->max_us, 2000);
    cr_assert_eq(a->sum_us, 3010);
    cr_assert_eq(lat_hist_percentile(a, 10), 10);
    free(a);
    free(b);
}

/* ---- signals ---------------------------------------------------------- */

static const struct sim_signal_opts QUIET = {0, 0};

Test(signal, same_seed_same_series)
{
    struct sim_rng r1, r2;
    sim_rng_seed(&r1, 7);
    sim_rng_seed(&r2, 7);
    struct sim_signal a, b;
    sim_signal_init(&a, sim_profile_at(0), &r1);
    sim_signal_init(&b, sim_profile_at(0), &r2);
    struct sim_signal_opts o = {0.01, 0.01};
    for (int i = 0; i < 1000; i++) {
        enum sim_event e1, e2;
        double v1 = sim_signal_next(&a, &o, &r1, &e1), v2 = sim_signal_next(&b, &o, &r2, &e2);
        cr_assert_eq(v1, v2);
        cr_assert_eq(e1, e2);
    }
}

Test(signal, quiet_signals_stay_in_the_normal_band_without_spikes)
{
    struct sim_rng r;
    sim_rng_seed(&r, 1);
    for (size_t p = 0; p < sim_profile_count(); p++) {
        const struct sim_profile *pr = sim_profile_at(p);
        struct sim_signal s;
        sim_signal_init(&s, pr, &r);
        double prev = NAN;
        for (int i = 0; i < 20000; i++) {
            enum sim_event ev;
            double v = sim_signal_next(&s, &QUIET, &r, &ev);
            cr_assert(isfinite(v));
            cr_assert(v >= pr->warn_min && v <= pr->warn_max, "%s left the band: %g", pr->type, v);
            cr_assert_eq(ev, SIM_EV_NONE);
            if (!isnan(prev)) cr_assert(fabs(v - prev) <= pr->delta_max, "%s jumped", pr->type);
            prev = v;
        }
    }
}

Test(signal, spikes_exceed_delta_max)
{
    struct sim_rng r;
    sim_rng_seed(&r, 2);
    const struct sim_profile *pr = sim_profile_at(0);
    struct sim_signal s;
    sim_signal_init(&s, pr, &r);
    struct sim_signal_opts o = {1.0, 0};
    enum sim_event ev;
    double base = sim_signal_next(&s, &QUIET, &r, &ev);
    for (int i = 0; i < 100; i++) {
        double v = sim_signal_next(&s, &o, &r, &ev);
        cr_assert_eq(ev, SIM_EV_SPIKE);
        cr_assert(fabs(v - base) > pr->delta_max * 1.1, "spike too small: %g vs %g", v, base);
    }
}

Test(signal, excursions_cross_the_bands_and_return)
{
    struct sim_rng r;
    sim_rng_seed(&r, 3);
    const struct sim_profile *pr = sim_profile_at(1);
    struct sim_signal s;
    sim_signal_init(&s, pr, &r);
    struct sim_signal_opts o = {0, 0.05};
    int warn = 0, crit = 0, normal_after = 0;
    double prev = NAN;
    for (int i = 0; i < 20000; i++) {
        enum sim_event ev;
        double v = sim_signal_next(&s, &o, &r, &ev);
        warn += ev == SIM_EV_WARNING;
        crit += ev == SIM_EV_CRITICAL;
        if (ev == SIM_EV_NONE && (warn || crit)) normal_after++;
        /* Ramps are gentle: an excursion alone never looks like a spike. */
        if (!isnan(prev)) cr_assert(fabs(v - prev) <= pr->delta_max);
        prev = v;
    }
    cr_assert(warn > 100, "warnings: %d", warn);
    cr_assert(crit > 10, "criticals: %d", crit);
    cr_assert(normal_after > 1000);
}

/* ---- packets ---------------------------------------------------------- */

static struct sim_fleet *one_device(size_t nsensors, struct sim_rng *r)
{
    struct sim_fleet *f;
    cr_assert_eq(sim_fleet_create(1, nsensors, &f), 0);
    snprintf(f->dev[0].uuid, sizeof f->dev[0].uuid, "dev-\"q\"");
    for (size_t k = 0; k < nsensors; k++) {
        snprintf(f->dev[0].sensors[k].uuid, sizeof f->dev[0].sensors[k].uuid, "s%zu", k);
        sim_signal_init(&f->dev[0].sensors[k].sig, sim_profile_at(k), r);
    }
    return f;
}

static int64_t ts_of(json_t *reading)
{
    const char *t = json_string_value(json_object_get(reading, "ts"));
    int64_t ms = 0;
    cr_assert_not_null(t);
    cr_assert_eq(timefmt_parse_rfc3339(t, strlen(t), &ms), 0);
    return ms;
}

Test(packet, bodies_are_json_with_round_robin_sensors_and_late_readings)
{
    struct sim_rng r;
    sim_rng_seed(&r, 4);
    struct sim_fleet *f = one_device(3, &r);
    struct sim_packet_opts o = {
        .readings = 5, .late_fraction = 0.3, .timestamps = 1, .packet_ids = 1};
    struct sim_packet_stats st = {0};
    struct buf b = {0};
    int64_t now = 1800000000000, newest[3] = {0};
    uint64_t late_seen = 0;
    for (uint64_t seq = 1; seq <= 200; seq++, now += 1000) {
        cr_assert_eq(sim_packet_build(&f->dev[0], &o, &r, now, seq, &b, &st), 0);
        json_error_t e;
        json_t *j = json_loads(b.p, 0, &e);
        cr_assert_not_null(j, "bad JSON: %s in %s", e.text, b.p);
        cr_assert_str_eq(json_string_value(json_object_get(j, "device_uuid")), "dev-\"q\"");
        char want[32];
        snprintf(want, sizeof want, "sim-%llu", (unsigned long long)seq);
        cr_assert_str_eq(json_string_value(json_object_get(j, "packet_id")), want);
        json_t *rs = json_object_get(j, "readings");
        cr_assert_eq(json_array_size(rs), 5);
        for (size_t k = 0; k < 5; k++) {
            json_t *x = json_array_get(rs, k);
            const char *su = json_string_value(json_object_get(x, "sensor_uuid"));
            int idx = su[1] - '0';
            cr_assert(json_is_number(json_object_get(x, "value")));
            int64_t t = ts_of(x);
            cr_assert(t <= now + 1000 && t > now - 200000);
            if (t < newest[idx])
                late_seen++;
            else
                newest[idx] = t;
        }
        json_decref(j);
    }
    cr_assert_eq(st.packets, 200);
    cr_assert_eq(st.readings, 1000);
    cr_assert_eq(late_seen, st.late, "late readings: sent %llu, seen %llu",
                 (unsigned long long)st.late, (unsigned long long)late_seen);
    cr_assert(st.late > 200 && st.late < 400);
    buf_free(&b);
    sim_fleet_destroy(f);
}

Test(packet, without_timestamps_there_is_no_ts_and_nothing_late)
{
    struct sim_rng r;
    sim_rng_seed(&r, 5);
    struct sim_fleet *f = one_device(2, &r);
    struct sim_packet_opts o = {.readings = 2, .late_fraction = 1, .timestamps = 0};
    struct sim_packet_stats st = {0};
    struct buf b = {0};
    for (int i = 0; i < 10; i++)
        cr_assert_eq(sim_packet_build(&f->dev[0], &o, &r, 1800000000000 + i, 1, &b, &st), 0);
    cr_assert_null(strstr(b.p, "\"ts\""));
    cr_assert_null(strstr(b.p, "packet_id"));
    cr_assert_eq(st.late, 0);
    buf_free(&b);
    sim_fleet_destroy(f);
}

Test(packet, gzip_round_trip)
{
    const char *text = "{\"device_uuid\":\"d\",\"readings\":[{\"sensor_uuid\":\"s\",\"value\":1}]}";
    struct buf z = {0};
    cr_assert_eq(sim_gzip(text, strlen(text), &z), 0);
    cr_assert(z.len > 18);
    cr_assert_eq((unsigned char)z.p[0], 0x1f);
    cr_assert_eq((unsigned char)z.p[1], 0x8b);
    char out[256];
    z_stream s = {0};
    cr_assert_eq(inflateInit2(&s, 15 + 16), Z_OK);
    s.next_in = (Bytef *)z.p;
    s.avail_in = (uInt)z.len;
    s.next_out = (Bytef *)out;
    s.avail_out = sizeof out;
    cr_assert_eq(inflate(&s, Z_FINISH), Z_STREAM_END);
    cr_assert_eq(s.total_out, strlen(text));
    cr_assert_eq(memcmp(out, text, strlen(text)), 0);
    inflateEnd(&s);
    buf_free(&z);
}

/* The encoder kept across packets (deflateReset) gives the one-shot bytes, packet after packet. */
Test(packet, gzipper_reuse_matches_one_shot)
{
    struct sim_gzipper g = {.ready = 0};
    struct buf a = {0}, b = {0}, text = {0};
    for (int i = 0; i < 20; i++) {
        buf_clear(&text);
        for (int k = 0; k <= i * 37; k++)
            cr_assert_eq(buf_printf(&text, "{\"v\":%d}", (k * 7919 + i) % 1000), 0);
        cr_assert_eq(sim_gzipper_run(&g, text.p, text.len, &a), 0);
        cr_assert_eq(sim_gzip(text.p, text.len, &b), 0);
        cr_assert_eq(a.len, b.len, "packet %d", i);
        cr_assert_eq(memcmp(a.p, b.p, a.len), 0, "packet %d", i);
    }
    cr_assert_eq(sim_gzipper_run(&g, "", 0, &a), 0);
    cr_assert_eq(sim_gzip("", 0, &b), 0);
    cr_assert(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
    sim_gzipper_fini(&g);
    sim_gzipper_fini(&g); /* idempotent */
    buf_free(&a);
    buf_free(&b);
    buf_free(&text);
}

Test(buf, json_strings_are_escaped)
{
    struct buf b = {0};
    cr_assert_eq(buf_put_json_str(&b, "a\"b\\c\n\x01"), 0);
    cr_assert_str_eq(b.p, "\"a\\\"b\\\\c\\u000a\\u0001\"");
    buf_clear(&b);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(buf_printf(&b, "%d-%s", 42, "x"), 0);
    cr_assert_str_eq(b.p, "42-x");
    buf_free(&b);
}

Test(packet, zero_readings_means_one_per_sensor)
{
    struct sim_rng r;
    sim_rng_seed(&r, 6);
    struct sim_fleet *f = one_device(4, &r);
    struct sim_packet_opts o = {.readings = 0, .timestamps = 1};
    struct sim_packet_stats st = {0};
    struct buf b = {0};
    cr_assert_eq(sim_packet_build(&f->dev[0], &o, &r, 1800000000000, 1, &b, &st), 0);
    json_t *j = json_loads(b.p, 0, NULL);
    cr_assert_not_null(j);
    cr_assert_eq(json_array_size(json_object_get(j, "readings")), 4);
    cr_assert_eq(st.readings, 4);
    json_decref(j);
    buf_free(&b);
    sim_fleet_destroy(f);
}
