/* The declarative settings table: defaults, environment, flags, bounds, validation. */
#include "core/config.h"
#include "core/err.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static struct config cfg;
static char err[256];
static char *rest[16];
static int nrest;

static void setup(void)
{
    unsetenv("INGEST_PORT");
    unsetenv("RATE_LIMIT_BURST");
    unsetenv("DB_SYNC");
    cr_assert_eq(config_init(&cfg), 0);
}

static void teardown(void)
{
    config_fini(&cfg);
}

TestSuite(config, .init = setup, .fini = teardown);

Test(config, defaults_match_the_spec)
{
    cr_expect_str_eq(cfg.database_url, "sqlite:iot-ingest.db");
    cr_expect_eq(cfg.ingest_port, 8000);
    cr_expect_eq(cfg.max_body_bytes, 1048576);
    cr_expect_eq(cfg.max_readings_per_packet, 1000);
    cr_expect_eq(cfg.max_future_skew_s, 300);
    cr_expect_eq(cfg.max_past_age_s, 7 * 86400);
    cr_expect_eq(cfg.rate_limit_ip_rps, 500);
    cr_expect_eq(cfg.rate_limit_device_rps, 50);
    cr_expect_eq(cfg.rate_limit_burst, 100);
    cr_expect_eq(cfg.sensor_cache_ttl_s, 60);
    cr_expect_eq(cfg.alert_clear_after, 1);
    cr_expect_str_eq(cfg.broker_url, "memory");
    cr_expect_eq(cfg.broker_throttle_ms, 0);
    cr_expect_str_eq(cfg.db_sync, "full");
    cr_expect_eq(cfg.baseline_window, 10);
    cr_expect_eq(cfg.anomaly_z, 3);
    cr_expect_eq(cfg.anomaly_score_threshold, 0.7);
    cr_expect_str_eq(cfg.ai_explainer_url, "http://localhost:8003");
    cr_expect_eq(cfg.no_data_after_s, 0);
    cr_expect_eq(cfg.baseline_every_s, 300);
    cr_expect_eq(cfg.explain_every_s, 60);
    cr_expect_eq(cfg.no_data_every_s, 60);
    cr_expect_eq(config_validate(&cfg, err, sizeof err), 0, "%s", err);
}

Test(config, flags_override_environment_and_leave_the_rest)
{
    setenv("INGEST_PORT", "9000", 1);
    setenv("RATE_LIMIT_BURST", "7.5", 1);
    char *argv[] = {"--ingest-port", "9100", "device", "--rate-limit-ip-rps=0", "--uuid", "x"};
    cr_assert_eq(config_load(&cfg, 6, argv, rest, &nrest, err, sizeof err), 0, "%s", err);
    cr_expect_eq(cfg.ingest_port, 9100);
    cr_expect_eq(cfg.rate_limit_burst, 7.5);
    cr_expect_eq(cfg.rate_limit_ip_rps, 0);
    cr_assert_eq(nrest, 3);
    cr_expect_str_eq(rest[0], "device");
    cr_expect_str_eq(rest[1], "--uuid");
    cr_expect_str_eq(rest[2], "x");
}

Test(config, bad_values_fail_with_one_line_naming_the_setting)
{
    const char *bad[][3] = {
        {"--ingest-port", "70000", "INGEST_PORT"}, {"--ingest-port", "80x", "INGEST_PORT"},
        {"--ingest-port", "", "INGEST_PORT"},      {"--rate-limit-burst", "0", "RATE_LIMIT_BURST"},
        {"--anomaly-z", "nan", "ANOMALY_Z"},       {"--max-body-bytes", "1e3", "MAX_BODY_BYTES"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[] = {(char *)bad[i][0], (char *)bad[i][1]};
        err[0] = 0;
        cr_expect_eq(config_load(&cfg, 2, argv, rest, &nrest, err, sizeof err), IOT_EINVAL, "%s %s",
                     bad[i][0], bad[i][1]);
        cr_expect_null(strchr(err, '\n'));
        cr_expect(strstr(err, bad[i][2]) != NULL, "names the variable %s: %s", bad[i][2], err);
    }
    char *missing[] = {"--ingest-port"};
    cr_expect_eq(config_load(&cfg, 1, missing, rest, &nrest, err, sizeof err), IOT_EINVAL);
    setenv("DB_SYNC", "sometimes", 1);
    cr_assert_eq(config_load(&cfg, 0, NULL, rest, &nrest, err, sizeof err), 0);
    cr_expect_eq(config_validate(&cfg, err, sizeof err), IOT_EINVAL);
    cr_expect(strstr(err, "DB_SYNC"));
}

Test(config, flag_names_and_rows_cover_the_table)
{
    char flag[80];
    config_flag_name("RATE_LIMIT_IP_RPS", flag, sizeof flag);
    cr_expect_str_eq(flag, "--rate-limit-ip-rps");
    const struct config_row *rows;
    int n = config_rows(&rows);
    cr_assert_gt(n, 40);
    int found = 0;
    for (int i = 0; i < n; i++) {
        cr_expect_not_null(rows[i].help);
        if (strcmp(rows[i].env, "MAX_BODY_BYTES") == 0) {
            found = 1;
            cr_expect_str_eq(rows[i].def, "1048576", "integer defaults print exactly");
        }
    }
    cr_expect(found);
}
