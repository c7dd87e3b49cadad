/* The resolver cache: TTL (with a fake clock), bound, and references that outlive eviction. */
#include "core/clock.h"
#include "core/err.h"
#include "ingest/resolver.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int64_t fake_now;
static int64_t fake_clock(void)
{
    return fake_now;
}

static char path[64];
static struct store_shared shared;
static struct store *admin;

static struct store *open_db(void)
{
    struct store_open_opts o = {.busy_timeout_ms = 5000, .cache_mb = 2};
    struct store *s = NULL;
    char url[96], err[256];
    snprintf(url, sizeof url, "sqlite:%s", path);
    cr_assert_eq(store_open(url, &o, &s, err, sizeof err), 0, "%s", err);
    return s;
}

static void add_device(const char *uuid, const char *sensor)
{
    unsigned char h[STORE_KEY_HASH_LEN] = {1};
    int64_t id, sid, did;
    cr_assert_eq(store_device_add(admin, uuid, "d", h, 1, &id), 0);
    cr_assert_eq(store_sensor_add(admin, uuid, sensor, "s", NULL, NULL, 1, &sid, &did), 0);
}

static void setup(void)
{
    snprintf(path, sizeof path, "/tmp/iot-resolver-%d.db", (int)getpid());
    unlink(path);
    admin = open_db();
    cr_assert_eq(store_schema_init(admin), 0);
    store_shared_init(&shared, open_db());
    fake_now = 1000;
    clock_set_source(NULL, fake_clock);
}

static void teardown(void)
{
    clock_set_source(NULL, NULL);
    store_shared_fini(&shared);
    store_close(admin);
    unlink(path);
}

TestSuite(resolver, .init = setup, .fini = teardown);

Test(resolver, disable_takes_effect_after_the_ttl_not_before)
{
    add_device("dev-a", "sen-a");
    struct resolver *r;
    cr_assert_eq(resolver_create(&shared, 60000, 0, 16, &r), 0);
    const struct device_ref *ref;
    cr_assert_eq(resolver_get(r, "dev-a", &ref), 0);
    const struct store_sensor *s = device_ref_sensor(ref, "sen-a");
    cr_assert_not_null(s);
    cr_expect(s->is_active);
    cr_expect_null(device_ref_sensor(ref, "other"));
    resolver_release(r, ref);

    cr_assert_eq(store_sensor_set_active(admin, "sen-a", 0), 0);
    fake_now += 59999;
    cr_assert_eq(resolver_get(r, "dev-a", &ref), 0);
    cr_expect(device_ref_sensor(ref, "sen-a")->is_active, "cached within the TTL");
    resolver_release(r, ref);
    fake_now += 2;
    cr_assert_eq(resolver_get(r, "dev-a", &ref), 0);
    cr_expect_not(device_ref_sensor(ref, "sen-a")->is_active, "reloaded after the TTL");
    resolver_release(r, ref);

    struct resolver_stats st;
    resolver_get_stats(r, &st);
    cr_expect_eq(st.hits, 1);
    cr_expect_eq(st.misses, 2);
    cr_expect_eq(resolver_get(r, "nobody", &ref), IOT_ENOTFOUND);
    resolver_destroy(r);
}

Test(resolver, bounded_and_references_survive_eviction)
{
    add_device("dev-1", "s-1");
    add_device("dev-2", "s-2");
    add_device("dev-3", "s-3");
    struct resolver *r;
    cr_assert_eq(resolver_create(&shared, 60000, 0, 2, &r), 0);
    const struct device_ref *held;
    cr_assert_eq(resolver_get(r, "dev-1", &held), 0);
    const struct device_ref *x;
    cr_assert_eq(resolver_get(r, "dev-2", &x), 0);
    resolver_release(r, x);
    cr_assert_eq(resolver_get(r, "dev-3", &x), 0);
    resolver_release(r, x);
    struct resolver_stats st;
    resolver_get_stats(r, &st);
    cr_expect_leq(st.entries, 2);
    /* dev-1 was evicted from the table, but the reference is still valid. */
    cr_expect_str_eq(held->dev.uuid, "dev-1");
    cr_expect_not_null(device_ref_sensor(held, "s-1"));
    resolver_release(r, held);
    /* ... and really evicted: getting it again is a miss (a load), not a hit. */
    cr_assert_eq(resolver_get(r, "dev-1", &x), 0);
    struct resolver_stats st2;
    resolver_get_stats(r, &st2);
    cr_expect_eq(st2.misses, st.misses + 1, "dev-1 was still cached (hits %llu -> %llu)",
                 (unsigned long long)st.hits, (unsigned long long)st2.hits);
    cr_expect_str_eq(x->dev.uuid, "dev-1");
    resolver_release(r, x);
    resolver_destroy(r);
}

static struct resolver_stats stats_of(struct resolver *r)
{
    struct resolver_stats st;
    resolver_get_stats(r, &st);
    return st;
}

Test(resolver, unknown_uuid_is_remembered_and_a_device_added_after_it_is_seen_by_its_expiry)
{
    struct resolver *r;
    cr_assert_eq(resolver_create(&shared, 60000, 5000, 16, &r), 0);
    const struct device_ref *ref = (const struct device_ref *)1;
    cr_assert_eq(resolver_get(r, "late", &ref), IOT_ENOTFOUND);
    cr_expect_null(ref);
    cr_expect_eq(stats_of(r).misses, 1);
    cr_expect_eq(stats_of(r).negatives, 1);

    /* Provisioned right after the miss: the negative entry still answers ... */
    add_device("late", "late-s");
    fake_now += 4999;
    cr_expect_eq(resolver_get(r, "late", &ref), IOT_ENOTFOUND);
    cr_expect_eq(stats_of(r).misses, 1, "answered without a query");
    cr_expect_eq(stats_of(r).negative_hits, 1);

    /* ... until the negative TTL has passed since the miss, then the device is found. */
    fake_now += 1;
    cr_assert_eq(resolver_get(r, "late", &ref), 0);
    cr_expect_str_eq(ref->dev.uuid, "late");
    cr_expect_not_null(device_ref_sensor(ref, "late-s"));
    resolver_release(r, ref);
    struct resolver_stats st = stats_of(r);
    cr_expect_eq(st.misses, 2);
    cr_expect_eq(st.negatives, 0, "the negative entry was replaced");
    cr_expect_eq(st.entries, 1);
    cr_assert_eq(resolver_get(r, "late", &ref), 0);
    resolver_release(r, ref);
    cr_expect_eq(stats_of(r).hits, 1);
    resolver_destroy(r);
}

Test(resolver, negative_ttl_is_capped_by_the_ttl_and_zero_turns_it_off)
{
    struct resolver *r;
    const struct device_ref *ref;
    cr_assert_eq(resolver_create(&shared, 1000, 5000, 16, &r), 0);
    cr_assert_eq(resolver_get(r, "x", &ref), IOT_ENOTFOUND);
    add_device("x", "x-s");
    fake_now += 1000;
    cr_assert_eq(resolver_get(r, "x", &ref), 0, "negative entries live at most the TTL");
    resolver_release(r, ref);
    resolver_destroy(r);

    cr_assert_eq(resolver_create(&shared, 60000, 0, 16, &r), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(resolver_get(r, "nobody", &ref), IOT_ENOTFOUND);
    struct resolver_stats st = stats_of(r);
    cr_expect_eq(st.misses, 3, "off: every lookup queries");
    cr_expect_eq(st.negative_hits, 0);
    cr_expect_eq(st.negatives, 0);
    resolver_destroy(r);
}

Test(resolver, negative_entries_are_bounded_apart_from_devices)
{
    add_device("kept", "kept-s");
    struct resolver *r;
    const struct device_ref *ref;
    cr_assert_eq(resolver_create(&shared, 60000, 5000, 16, &r), 0);
    cr_assert_eq(resolver_get(r, "kept", &ref), 0);
    resolver_release(r, ref);
    char uuid[32];
    for (int i = 0; i < 200; i++) {
        snprintf(uuid, sizeof uuid, "ghost-%d", i);
        cr_assert_eq(resolver_get(r, uuid, &ref), IOT_ENOTFOUND);
        cr_assert_leq(stats_of(r).negatives, 16, "at %d", i);
    }
    cr_expect_eq(stats_of(r).negatives, 16);
    cr_assert_eq(resolver_get(r, "kept", &ref), 0);
    resolver_release(r, ref);
    cr_expect_eq(stats_of(r).hits, 1, "the flood of unknown uuids did not evict the device");
    /* The most recent ghosts are remembered, the oldest were evicted. */
    uint64_t q = stats_of(r).misses;
    cr_expect_eq(resolver_get(r, "ghost-199", &ref), IOT_ENOTFOUND);
    cr_expect_eq(stats_of(r).misses, q);
    cr_expect_eq(resolver_get(r, "ghost-0", &ref), IOT_ENOTFOUND);
    cr_expect_eq(stats_of(r).misses, q + 1);
    /* A uuid too long to be stored is not cached (it could only collide). */
    char lng[STORE_UUID_MAX + 8];
    memset(lng, 'u', sizeof lng - 1);
    lng[sizeof lng - 1] = 0;
    cr_expect_eq(resolver_get(r, lng, &ref), IOT_ENOTFOUND);
    cr_expect_eq(resolver_get(r, lng, &ref), IOT_ENOTFOUND);
    cr_expect_eq(stats_of(r).misses, q + 3);
    resolver_destroy(r);
}
