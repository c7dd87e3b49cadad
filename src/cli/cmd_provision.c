/*
 * Provisioning: device add|disable|delete, sensor add|disable, threshold set|clear.
 * Each prints one JSON object on one line on stdout (SPEC §8).
 */
#include "cli/cli.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/secret.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define MIN_KEY_LEN 16
#define MAX_KEY_LEN 256

static const char *f_uuid, *f_name, *f_key, *f_device, *f_type, *f_unit, *f_sensor, *f_severity,
    *f_min, *f_max, *f_delta, *f_yes;

static int check_len(const char *what, const char *v, size_t max)
{
    size_t n = strlen(v);
    if (n == 0 || n > max) {
        cli_error("%s must be 1 to %zu bytes, got %zu", what, max, n);
        return -1;
    }
    return 0;
}

/* Runs fn on an opened store and reports store errors in one line. */
static int finish(struct store *s, int rc, const char *what, const char *id)
{
    if (rc == IOT_EEXIST)
        cli_error("%s %s already exists", what, id);
    else if (rc == IOT_ENOTFOUND)
        cli_error("no %s %s", what, id);
    else if (rc)
        cli_error("%s: %s", iot_strerror(rc), store_errmsg(s));
    store_close(s);
    return rc ? 1 : 0;
}

static int run_device_add(struct config *cfg, const char **pos)
{
    (void)pos;
    char generated[SECRET_KEY_HEX_LEN + 1];
    const char *key = f_key;
    if (cli_check_uuid("--uuid", f_uuid, STORE_UUID_MAX) ||
        check_len("--name", f_name, STORE_NAME_MAX))
        return EXIT_USAGE;
    if (key && (strlen(key) < MIN_KEY_LEN || strlen(key) > MAX_KEY_LEN)) {
        cli_error("--key must be %d to %d bytes", MIN_KEY_LEN, MAX_KEY_LEN);
        return EXIT_USAGE;
    }
    if (!key) {
        if (secret_generate(generated)) {
            cli_error("no randomness available");
            return 1;
        }
        key = generated;
    }
    unsigned char h[SECRET_HASH_LEN];
    if (secret_hash(key, strlen(key), h)) return 1;
    struct store *s;
    int rc = cli_open_ready(cfg, 1, &s);
    if (!s) return 1;
    int64_t id = 0;
    if (!rc) rc = store_device_add(s, f_uuid, f_name, h, clock_now_ms(), &id);
    if (!rc)
        cli_print_json(json_pack("{s:I, s:s, s:s}", "device_id", (json_int_t)id, "device_uuid",
                                 f_uuid, "device_key", key));
    return finish(s, rc, "device", f_uuid);
}

static int set_active(struct config *cfg, const char *uuid, int sensor)
{
    struct store *s;
    int rc = cli_open_ready(cfg, 1, &s);
    if (!s) return 1;
    if (!rc)
        rc = sensor ? store_sensor_set_active(s, uuid, 0) : store_device_set_active(s, uuid, 0);
    if (!rc)
        cli_print_json(
            json_pack("{s:s, s:b}", sensor ? "sensor_uuid" : "device_uuid", uuid, "is_active", 0));
    return finish(s, rc, sensor ? "sensor" : "device", uuid);
}

static int run_device_disable(struct config *cfg, const char **pos)
{
    return set_active(cfg, pos[0], 0);
}

/*
 * Deletes for good, so it asks for --yes, as git clean asks for -f: no
 * prompt (a script behaves the same with or without a terminal), and the
 * exact uuid, never a pattern. Without --yes nothing is opened or changed.
 */
static int run_device_delete(struct config *cfg, const char **pos)
{
    if (!f_yes) {
        cli_error("this deletes device %.64s with its sensors, readings, alerts and everything "
                  "else stored under them, for good; add --yes to do it",
                  pos[0]);
        return EXIT_USAGE;
    }
    struct store *s;
    int rc = cli_open_ready(cfg, 1, &s);
    if (!s) return 1;
    struct store_device_deleted d;
    if (!rc) rc = store_device_delete(s, pos[0], &d);
    if (!rc)
        cli_print_json(json_pack("{s:I, s:s, s:b, s:I, s:I}", "device_id", (json_int_t)d.device_id,
                                 "device_uuid", pos[0], "deleted", 1, "sensors",
                                 (json_int_t)d.sensors, "readings", (json_int_t)d.readings));
    return finish(s, rc, "device", pos[0]);
}

static int run_sensor_disable(struct config *cfg, const char **pos)
{
    return set_active(cfg, pos[0], 1);
}

static int run_sensor_add(struct config *cfg, const char **pos)
{
    (void)pos;
    if (cli_check_uuid("--uuid", f_uuid, STORE_UUID_MAX) ||
        check_len("--name", f_name, STORE_NAME_MAX) ||
        (f_type && check_len("--type", f_type, STORE_NAME_MAX)) ||
        (f_unit && check_len("--unit", f_unit, STORE_NAME_MAX)))
        return EXIT_USAGE;
    struct store *s;
    int rc = cli_open_ready(cfg, 1, &s);
    if (!s) return 1;
    int64_t id = 0, device_id = 0;
    struct store_device dev;
    if (!rc && (rc = store_device_get(s, f_device, &dev)) == IOT_ENOTFOUND)
        return finish(s, rc, "device", f_device);
    if (!rc && !dev.is_active) {
        /* No command enables a device again: a sensor there could never report. */
        cli_error("device %s is disabled (its packets are refused); no sensor added", f_device);
        store_close(s);
        return 1;
    }
    if (!rc) {
        rc = store_sensor_add(s, f_device, f_uuid, f_name, f_type, f_unit, clock_now_ms(), &id,
                              &device_id);
        if (rc == IOT_ENOTFOUND) return finish(s, rc, "device", f_device);
    }
    if (!rc)
        cli_print_json(json_pack("{s:I, s:s, s:s}", "sensor_id", (json_int_t)id, "sensor_uuid",
                                 f_uuid, "device_uuid", f_device));
    return finish(s, rc, "sensor", f_uuid);
}

static int parse_severity(enum severity *out)
{
    if (strcmp(f_severity, "warning") == 0)
        *out = SEV_WARNING;
    else if (strcmp(f_severity, "critical") == 0)
        *out = SEV_CRITICAL;
    else {
        cli_error("--severity must be warning or critical");
        return -1;
    }
    return 0;
}

static json_t *opt_real(int has, double v)
{
    return has ? json_real(v) : json_null();
}

static int run_threshold_set(struct config *cfg, const char **pos)
{
    (void)pos;
    enum severity sev;
    struct store_threshold t = {0};
    if (parse_severity(&sev)) return EXIT_USAGE;
    if ((f_min && (t.has_min = 1, cli_parse_double("--min", f_min, &t.min))) ||
        (f_max && (t.has_max = 1, cli_parse_double("--max", f_max, &t.max))) ||
        (f_delta && (t.has_delta = 1, cli_parse_double("--delta-max", f_delta, &t.delta_max))))
        return EXIT_USAGE;
    if (!f_min && !f_max && !f_delta) {
        cli_error("give at least one of --min, --max, --delta-max");
        return EXIT_USAGE;
    }
    if (t.has_min && t.has_max && t.min > t.max) {
        cli_error("--min must not be greater than --max");
        return EXIT_USAGE;
    }
    if (t.has_delta && t.delta_max < 0) {
        cli_error("--delta-max must not be negative");
        return EXIT_USAGE;
    }
    struct store *s;
    int rc = cli_open_ready(cfg, 1, &s);
    if (!s) return 1;
    int64_t id = 0;
    if (!rc) rc = store_threshold_set(s, f_sensor, sev, &t, clock_now_ms(), &id);
    if (!rc)
        cli_print_json(json_pack("{s:I, s:s, s:s, s:o, s:o, s:o}", "threshold_id", (json_int_t)id,
                                 "sensor_uuid", f_sensor, "severity", severity_name(sev),
                                 "min_value", opt_real(t.has_min, t.min), "max_value",
                                 opt_real(t.has_max, t.max), "delta_max",
                                 opt_real(t.has_delta, t.delta_max)));
    return finish(s, rc, "sensor", f_sensor);
}

static int run_threshold_clear(struct config *cfg, const char **pos)
{
    (void)pos;
    enum severity sev;
    if (parse_severity(&sev)) return EXIT_USAGE;
    struct store *s;
    int rc = cli_open_ready(cfg, 1, &s);
    if (!s) return 1;
    if (!rc) rc = store_threshold_clear(s, f_sensor, sev);
    if (!rc)
        cli_print_json(json_pack("{s:s, s:s, s:b}", "sensor_uuid", f_sensor, "severity",
                                 severity_name(sev), "is_active", 0));
    return finish(s, rc, "sensor", f_sensor);
}

static struct cli_flag device_add_flags[] = {
    {"--uuid", &f_uuid, 1, "device uuid: 1-64 bytes of A-Z a-z 0-9 . _ : -"},
    {"--name", &f_name, 1, "display name (1-128 bytes)"},
    {"--key", &f_key, 0, "device key (16-256 bytes); random 192-bit key when absent"},
    {0, 0, 0, 0}};
static struct cli_flag device_delete_flags[] = {
    {"--yes", &f_yes, CLI_FLAG_SWITCH, "confirms: delete for good (refused without it)"},
    {0, 0, 0, 0}};
static struct cli_flag sensor_add_flags[] = {
    {"--device", &f_device, 1, "uuid of the device the sensor belongs to"},
    {"--uuid", &f_uuid, 1, "sensor uuid: 1-64 bytes of A-Z a-z 0-9 . _ : -"},
    {"--name", &f_name, 1, "display name (1-128 bytes)"},
    {"--type", &f_type, 0, "sensor type, e.g. temperature (1-128 bytes)"},
    {"--unit", &f_unit, 0, "unit, e.g. C (1-128 bytes)"},
    {0, 0, 0, 0}};
static struct cli_flag threshold_set_flags[] = {
    {"--sensor", &f_sensor, 1, "sensor uuid"},
    {"--severity", &f_severity, 1, "warning or critical"},
    {"--min", &f_min, 0, "lowest allowed value"},
    {"--max", &f_max, 0, "highest allowed value"},
    {"--delta-max", &f_delta, 0, "largest allowed jump between consecutive readings"},
    {0, 0, 0, 0}};
static struct cli_flag threshold_clear_flags[] = {
    {"--sensor", &f_sensor, 1, "sensor uuid"},
    {"--severity", &f_severity, 1, "warning or critical"},
    {0, 0, 0, 0}};

const struct cli_cmd cmd_device_add = {
    .name = "device add",
    .summary = "Registers a device and prints {\"device_id\",\"device_uuid\",\"device_key\"}.\n"
               "The key is shown only here; only its SHA-256 is stored.",
    .flags = device_add_flags,
    .run = run_device_add,
    .uses = CU_DB,
};
const struct cli_cmd cmd_device_disable = {
    .name = "device disable",
    .args = "UUID",
    .summary = "Sets is_active = 0; the gateway refuses the device within SENSOR_CACHE_TTL_S.",
    .npos = 1,
    .run = run_device_disable,
    .uses = CU_DB,
};
const struct cli_cmd cmd_device_delete = {
    .name = "device delete",
    .args = "UUID",
    .summary =
        "Deletes a device and everything stored under it. In one transaction: its sensors,\n"
        "their readings and rollups, state, thresholds, alerts and notifications,\n"
        "predictions, ML events and online model state, and its packet ids; prints\n"
        "{\"device_id\",\"device_uuid\","
        "\"deleted\",\"sensors\",\"readings\"}. Refused without --yes (exit 2, nothing touched).\n"
        "A running gateway answers the device's packets 401 (nothing stored): \"this device no\n"
        "longer exists\" until it forgets the device (SENSOR_CACHE_TTL_S), then as unknown.",
    .flags = device_delete_flags,
    .npos = 1,
    .run = run_device_delete,
    .uses = CU_DB,
};
const struct cli_cmd cmd_sensor_add = {
    .name = "sensor add",
    .summary = "Registers a sensor of a device and prints "
               "{\"sensor_id\",\"sensor_uuid\",\"device_uuid\"}.",
    .flags = sensor_add_flags,
    .run = run_sensor_add,
    .uses = CU_DB,
};
const struct cli_cmd cmd_sensor_disable = {
    .name = "sensor disable",
    .args = "UUID",
    .summary = "Sets is_active = 0; its readings are rejected within SENSOR_CACHE_TTL_S.",
    .npos = 1,
    .run = run_sensor_disable,
    .uses = CU_DB,
};
const struct cli_cmd cmd_threshold_set = {
    .name = "threshold set",
    .summary = "Sets a sensor's threshold for one severity. It replaces the active one, and is\n"
               "printed with its threshold_id.",
    .flags = threshold_set_flags,
    .run = run_threshold_set,
    .uses = CU_DB,
};
const struct cli_cmd cmd_threshold_clear = {
    .name = "threshold clear",
    .summary = "Deactivates the sensor's threshold of that severity.",
    .flags = threshold_clear_flags,
    .run = run_threshold_clear,
    .uses = CU_DB,
};
