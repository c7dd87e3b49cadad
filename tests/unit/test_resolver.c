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
    cr_assert_eq(resolver_create(&shared, 60000, 16, &r), 0);
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
    cr_assert_eq(resolver_create(&shared, 60000, 2, &r), 0);
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
