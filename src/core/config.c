#include "core/config.h"
#include "core/log.h"
#include "core/err.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct setting {
    enum config_type type;
    const char *env;
    size_t offset;
    const char *def_str;
    double def_num, min, max;
    unsigned uses;
    const char *help;
};

#define DEF_STR_INT(d) NULL
#define DEF_STR_DBL(d) NULL
#define DEF_STR_STR(d) d
#define DEF_NUM_INT(d) (double)(d)
#define DEF_NUM_DBL(d) (double)(d)
#define DEF_NUM_STR(d) 0
#define X(type, field, env, def, min, max, uses, help)                                             \
    {CONFIG_##type,                                                                                \
     env,                                                                                          \
     offsetof(struct config, field),                                                               \
     DEF_STR_##type(def),                                                                          \
     DEF_NUM_##type(def),                                                                          \
     min,                                                                                          \
     max,                                                                                          \
     uses,                                                                                         \
     help},
static const struct setting settings[] = {CONFIG_SETTINGS(X)};
#undef X
#define NSETTINGS (sizeof settings / sizeof settings[0])

static char default_text[NSETTINGS][32];
static struct config_row rows[NSETTINGS];

void config_flag_name(const char *env, char *out, size_t outlen)
{
    size_t j = 0;
    if (outlen < 3) return;
    out[j++] = '-';
    out[j++] = '-';
    for (const char *p = env; *p && j + 1 < outlen; p++)
        out[j++] = *p == '_' ? '-' : (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    out[j] = 0;
}

int config_init(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        char *p = (char *)cfg + s->offset;
        switch (s->type) {
        case CONFIG_INT:
            *(int64_t *)p = (int64_t)s->def_num;
            break;
        case CONFIG_DBL:
            *(double *)p = s->def_num;
            break;
        case CONFIG_STR:
            if (!(*(char **)p = strdup(s->def_str))) return IOT_ENOMEM;
            break;
        }
    }
    return 0;
}

void config_fini(struct config *cfg)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (settings[i].type == CONFIG_STR) {
            char **p = (char **)((char *)cfg + settings[i].offset);
            free(*p);
            *p = NULL;
        }
    }
}

/* Parses and range-checks one value into its field. */
static int set_value(struct config *cfg, const struct setting *s, const char *val, const char *src,
                     char *err, size_t errlen)
{
    char *p = (char *)cfg + s->offset;
    char *end;
    errno = 0;
    switch (s->type) {
    case CONFIG_INT: {
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end || v < s->min || v > s->max) {
            snprintf(err, errlen, "%s: %s must be an integer in [%.0f, %.0f], got \"%.64s\"", src,
                     s->env, s->min, s->max, val);
            return IOT_EINVAL;
        }
        *(int64_t *)p = v;
        return 0;
    }
    case CONFIG_DBL: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || v < s->min || v > s->max) {
            snprintf(err, errlen, "%s: %s must be a number in [%g, %g], got \"%.64s\"", src, s->env,
                     s->min, s->max, val);
            return IOT_EINVAL;
        }
        *(double *)p = v;
        return 0;
    }
    case CONFIG_STR: {
        char *copy = strdup(val);
        if (!copy) return IOT_ENOMEM;
        free(*(char **)p);
        *(char **)p = copy;
        return 0;
    }
    }
    return IOT_EINVAL;
}

static const struct setting *find_flag(const char *arg, size_t len)
{
    char flag[80];
    for (size_t i = 0; i < NSETTINGS; i++) {
        config_flag_name(settings[i].env, flag, sizeof flag);
        if (strlen(flag) == len && strncmp(flag, arg, len) == 0) return &settings[i];
    }
    return NULL;
}

int config_load(struct config *cfg, int argc, char **argv, char **rest, int *nrest, char *err,
                size_t errlen)
{
    int rc;
    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        if (v && (rc = set_value(cfg, &settings[i], v, "environment", err, errlen))) return rc;
    }
    *nrest = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || strcmp(a, "--") == 0) {
            rest[(*nrest)++] = argv[i];
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const struct setting *s = find_flag(a, len);
        if (!s) {
            rest[(*nrest)++] = argv[i];
            continue;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "flag %.*s needs a value", (int)len, a);
                return IOT_EINVAL;
            }
            val = argv[++i];
        }
        if ((rc = set_value(cfg, s, val, "flag", err, errlen))) return rc;
    }
    return 0;
}

int config_validate(const struct config *cfg, char *err, size_t errlen)
{
    if (strcmp(cfg->db_sync, "full") && strcmp(cfg->db_sync, "normal")) {
        snprintf(err, errlen, "DB_SYNC must be full or normal, got \"%.32s\"", cfg->db_sync);
        return IOT_EINVAL;
    }
    if (strcmp(cfg->log_format, "logfmt") && strcmp(cfg->log_format, "json")) {
        snprintf(err, errlen, "LOG_FORMAT must be logfmt or json, got \"%.32s\"", cfg->log_format);
        return IOT_EINVAL;
    }
    if (strcmp(cfg->log_requests, "all") && strcmp(cfg->log_requests, "errors") &&
        strcmp(cfg->log_requests, "none")) {
        snprintf(err, errlen, "LOG_REQUESTS must be all, errors or none, got \"%.32s\"",
                 cfg->log_requests);
        return IOT_EINVAL;
    }
    enum log_level level;
    if (log_level_parse(cfg->log_level, &level)) {
        snprintf(err, errlen, "LOG_LEVEL must be debug, info, warn, error or off, got \"%.32s\"",
                 cfg->log_level);
        return IOT_EINVAL;
    }
    if (!cfg->tls_cert_file[0] != !cfg->tls_key_file[0]) {
        snprintf(err, errlen, "TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither");
        return IOT_EINVAL;
    }
    if (strcmp(cfg->tls_client_auth, "off") && strcmp(cfg->tls_client_auth, "optional") &&
        strcmp(cfg->tls_client_auth, "required")) {
        snprintf(err, errlen, "TLS_CLIENT_AUTH must be off, optional or required, got \"%.32s\"",
                 cfg->tls_client_auth);
        return IOT_EINVAL;
    }
    if (strcmp(cfg->tls_client_auth, "off") &&
        (!cfg->tls_client_ca_file[0] || !cfg->tls_cert_file[0])) {
        snprintf(err, errlen, "TLS_CLIENT_AUTH=%s needs TLS_CLIENT_CA_FILE and TLS_CERT_FILE",
                 cfg->tls_client_auth);
        return IOT_EINVAL;
    }
    if (cfg->mqtt_tls_port && !cfg->tls_cert_file[0]) {
        snprintf(err, errlen, "MQTT_TLS_PORT needs TLS_CERT_FILE and TLS_KEY_FILE");
        return IOT_EINVAL;
    }
    if (strncmp(cfg->database_url, "sqlite:", 7) &&
        strncmp(cfg->database_url, "postgresql://", 13) &&
        strncmp(cfg->database_url, "postgres://", 11)) {
        snprintf(err, errlen, "DATABASE_URL must start with sqlite: or postgresql://");
        return IOT_EINVAL;
    }
    return 0;
}

int config_rows(const struct config_row **out)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        if (s->type == CONFIG_STR)
            snprintf(default_text[i], sizeof default_text[i], "%s", s->def_str);
        else if (s->type == CONFIG_INT)
            snprintf(default_text[i], sizeof default_text[i], "%.0f", s->def_num);
        else
            snprintf(default_text[i], sizeof default_text[i], "%.15g", s->def_num);
        rows[i] =
            (struct config_row){s->type, s->env, default_text[i], s->min, s->max, s->uses, s->help};
    }
    *out = rows;
    return (int)NSETTINGS;
}

int config_print_help(FILE *out, unsigned uses)
{
    const struct config_row *r;
    int n = config_rows(&r), shown = 0;
    for (int i = 0; i < n; i++) {
        if (!(r[i].uses & uses)) continue;
        char flag[80];
        config_flag_name(r[i].env, flag, sizeof flag);
        fprintf(out, "  %-28s %-26s %s (default: %s)\n", flag, r[i].env, r[i].help,
                r[i].def[0] ? r[i].def : "empty");
        shown++;
    }
    return shown;
}
