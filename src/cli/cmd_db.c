/* db init (create or upgrade the schema) and db demo (a fixed demo fleet). */
#include "cli/cli.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/secret.h"
#include "sim/fleet.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static int run_db_init(struct config *cfg, const char **pos)
{
    (void)pos;
    struct store *s;
    int v = 0, rc = cli_open_ready(cfg, 1, &s);
    if (!s) return 1;
    if (!rc && (rc = store_schema_version(s, &v))) cli_error("%s", store_errmsg(s));
    if (!rc)
        cli_print_json(json_pack("{s:s, s:i}", "backend", store_backend(s), "schema_version", v));
    store_close(s);
    return rc ? 1 : 0;
}

/*
 * The demo fleet. Its keys are public (they are in this file and in the
 * README): for trying the gateway on a laptop, never for a real deployment.
 */
struct demo_sensor {
    const char *uuid, *name, *type, *unit;
    double warn_min, warn_max, crit_min, crit_max, delta;
};
static const struct demo_device {
    const char *uuid, *name, *key;
    struct demo_sensor sensors[3];
} demo[] = {
    {"demo-device-1",
     "Demo greenhouse",
     "demo-key-1-NOT-SECRET-do-not-use-in-production",
     {{"demo-device-1-temp", "Temperature", "temperature", "C", 5, 30, 0, 40, 10},
      {"demo-device-1-hum", "Humidity", "humidity", "%", 30, 80, 10, 95, 25},
      {"demo-device-1-co2", "CO2", "co2", "ppm", 350, 1200, 300, 2000, 500}}},
    {"demo-device-2",
     "Demo cold room",
     "demo-key-2-NOT-SECRET-do-not-use-in-production",
     {{"demo-device-2-temp", "Temperature", "temperature", "C", -25, -15, -30, -5, 8},
      {"demo-device-2-hum", "Humidity", "humidity", "%", 20, 70, 5, 90, 25},
      {"demo-device-2-door", "Door", "contact", "open", 0, 0, 0, 1, 1}}},
};

int cli_demo_fleet(struct sim_rng *r, struct sim_fleet **out)
{
    enum {
        NDEV = sizeof demo / sizeof demo[0],
        NSEN = sizeof demo[0].sensors / sizeof(struct demo_sensor)
    };
    int rc = sim_fleet_create(NDEV, NSEN, out);
    for (size_t i = 0; !rc && i < NDEV; i++) {
        struct sim_device *d = &(*out)->dev[i];
        snprintf(d->uuid, sizeof d->uuid, "%s", demo[i].uuid);
        snprintf(d->key, sizeof d->key, "%s", demo[i].key);
        for (size_t k = 0; k < NSEN; k++) {
            snprintf(d->sensors[k].uuid, sizeof d->sensors[k].uuid, "%s", demo[i].sensors[k].uuid);
            sim_signal_init(&d->sensors[k].sig, sim_profile_at(k), r);
        }
    }
    return rc;
}

static int add_demo_sensor(struct store *s, const char *device_uuid, const struct demo_sensor *d,
                           int64_t now)
{
    int64_t id, dev_id, tid;
    int rc =
        store_sensor_add(s, device_uuid, d->uuid, d->name, d->type, d->unit, now, &id, &dev_id);
    if (rc == IOT_EEXIST) return 0; /* already there: keep whatever the user changed */
    if (rc) return rc;
    struct store_threshold w = {.min = d->warn_min, .max = d->warn_max, .has_min = 1, .has_max = 1};
    struct store_threshold c = {.min = d->crit_min,
                                .max = d->crit_max,
                                .delta_max = d->delta,
                                .has_min = 1,
                                .has_max = 1,
                                .has_delta = 1};
    if ((rc = store_threshold_set(s, d->uuid, SEV_WARNING, &w, now, &tid))) return rc;
    return store_threshold_set(s, d->uuid, SEV_CRITICAL, &c, now, &tid);
}

static int run_db_demo(struct config *cfg, const char **pos)
{
    (void)pos;
    struct store *s;
    int rc = cli_open_ready(cfg, 0, &s); /* a schema failure is reported below */
    if (!s) return 1;
    int64_t now = clock_now_ms();
    json_t *devices = json_array();
    for (size_t i = 0; !rc && i < sizeof demo / sizeof demo[0]; i++) {
        const struct demo_device *d = &demo[i];
        unsigned char h[SECRET_HASH_LEN];
        int64_t id;
        if ((rc = secret_hash(d->key, strlen(d->key), h))) break;
        rc = store_device_add(s, d->uuid, d->name, h, now, &id);
        if (rc == IOT_EEXIST) rc = 0;
        for (int k = 0; !rc && k < 3; k++)
            rc = add_demo_sensor(s, d->uuid, &d->sensors[k], now);
        json_array_append_new(
            devices, json_pack("{s:s, s:s}", "device_uuid", d->uuid, "device_key", d->key));
    }
    if (rc) {
        cli_error("%s: %s", iot_strerror(rc), store_errmsg(s));
        json_decref(devices);
    } else {
        cli_print_json(json_pack("{s:o}", "demo_devices", devices));
    }
    store_close(s);
    return rc ? 1 : 0;
}

const struct cli_cmd cmd_db_init = {
    .name = "db init",
    .summary = "Creates the schema in DATABASE_URL, or upgrades it in place; idempotent.",
    .run = run_db_init,
    .uses = CU_DB,
    .creates_db = 1,
};
const struct cli_cmd cmd_db_demo = {
    .name = "db demo",
    .summary = "Adds the demo fleet. 2 devices, 6 sensors and thresholds, with fixed, public,\n"
               "demo-only keys; idempotent. Never use these keys outside a laptop.",
    .run = run_db_demo,
    .uses = CU_DB,
};
