#include "cli/cli.h"
#include "core/err.h"
#include "core/ident.h"
#include "core/log.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct cli_cmd *current; /* the command cli_parse parsed, for messages */

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "iot-ingest%s%s: ", current ? " " : "", current ? current->name : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

const struct cli_builtin cli_builtins[] = {
    {"help", "[COMMAND]", "Lists the commands, or prints one command's --help."},
    {"help settings", NULL, "Lists every setting: environment variable, flag, default."},
    {"man", "[env]",
     "Prints the manual page in roff (read it: iot-ingest man | man -l -).\n"
     "With env: an environment file with every setting. make install installs both."},
};
const size_t cli_nbuiltins = sizeof cli_builtins / sizeof cli_builtins[0];

#define SETTINGS_HEAD "environment variable, or the flag, which wins"

void cli_print_help(const struct cli_cmd *cmd)
{
    printf("usage: iot-ingest %s%s%s [flags]\n\n%s\n", cmd->name, cmd->args ? " " : "",
           cmd->args ? cmd->args : "", cmd->summary);
    if (cmd->flags && cmd->flags[0].name) {
        printf("\nFlags:\n");
        for (const struct cli_flag *f = cmd->flags; f->name; f++)
            printf("  %-28s %s%s\n", f->name, f->help,
                   f->kind == CLI_FLAG_REQUIRED ? " (required)" : "");
    }
    printf("\nSettings it reads (" SETTINGS_HEAD "):\n");
    config_print_help(stdout, cmd->uses);
    const struct config_row *rows;
    printf("\nEvery command accepts all %d settings; `iot-ingest help settings` lists them\n"
           "(also man iot-ingest).\n",
           config_rows(&rows));
}

void cli_print_settings(void)
{
    printf("Settings (" SETTINGS_HEAD "). Every command accepts every setting;\n"
           "`iot-ingest COMMAND --help` lists the ones that command reads.\n\n");
    config_print_help(stdout, CU_ALL);
}

int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, struct config *cfg,
              const char **pos)
{
    char *rest[CLI_MAX_ARGS];
    int nrest = 0;
    char err[IOT_ERRBUF];
    current = cmd;
    if (argc > CLI_MAX_ARGS) {
        cli_error("too many arguments");
        return -1;
    }
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cli_print_help(cmd);
            return 1;
        }
    if (config_load(cfg, argc, argv, rest, &nrest, err, sizeof err) ||
        config_validate(cfg, err, sizeof err)) {
        cli_error("%s", err);
        return -1;
    }
    enum log_level lvl;
    if (log_level_parse(cfg->log_level, &lvl) == 0) log_min_level = lvl;
    log_set_format_json(strcmp(cfg->log_format, "json") == 0);

    int npos = 0;
    for (int i = 0; i < nrest; i++) {
        const char *a = rest[i];
        if (strncmp(a, "--", 2) == 0) {
            const char *eq = strchr(a, '=');
            size_t len = eq ? (size_t)(eq - a) : strlen(a);
            const struct cli_flag *f = cmd->flags;
            while (f && f->name && !(strlen(f->name) == len && strncmp(f->name, a, len) == 0))
                f++;
            if (!f || !f->name) {
                cli_error("unknown flag %.*s (see --help)", (int)len, a);
                return -1;
            }
            if (f->kind == CLI_FLAG_SWITCH) {
                if (eq) {
                    cli_error("flag %s takes no value", f->name);
                    return -1;
                }
                *f->value = "1";
            } else if (eq)
                *f->value = eq + 1;
            else if (i + 1 < nrest)
                *f->value = rest[++i];
            else {
                cli_error("flag %s needs a value", f->name);
                return -1;
            }
            continue;
        }
        if (npos >= cmd->npos) {
            cli_error("unexpected argument \"%.64s\"", a);
            return -1;
        }
        pos[npos++] = a;
    }
    if (npos < cmd->npos) {
        cli_error("missing %s (see --help)", cmd->args);
        return -1;
    }
    for (const struct cli_flag *f = cmd->flags; f && f->name; f++)
        if (f->kind == CLI_FLAG_REQUIRED && !*f->value) {
            cli_error("%s is required", f->name);
            return -1;
        }
    return 0;
}

int cli_open_store(const struct config *cfg, struct store **out)
{
    return cli_open_store_bg(cfg, 0, out);
}

/*
 * 1 if url names a SQLite file that does not exist (store_open would create
 * it); the path is parsed as store_open does. Anything else (PostgreSQL,
 * :memory:, a path stat cannot judge) is left to store_open.
 */
static int sqlite_file_missing(const char *url, const char **path)
{
    if (strncmp(url, "sqlite:", 7) != 0) return 0;
    *path = url + 7;
    if (strncmp(*path, "//", 2) == 0) *path += 2; /* sqlite:///abs/path */
    struct stat st;
    return **path && strcmp(*path, ":memory:") != 0 && stat(*path, &st) != 0 && errno == ENOENT;
}

int cli_open_store_bg(const struct config *cfg, int writer, struct store **out)
{
    char err[IOT_ERRBUF];
    const char *path;
    if ((!current || !current->creates_db) && sqlite_file_missing(cfg->database_url, &path)) {
        cli_error("no database at %s (DATABASE_URL=%s); create it with `iot-ingest db init`", path,
                  cfg->database_url);
        *out = NULL;
        return IOT_ENOTFOUND;
    }
    struct store_open_opts o = {
        .sync_full = strcmp(cfg->db_sync, "full") == 0,
        .busy_timeout_ms = cfg->db_busy_timeout_ms,
        .cache_mb = cfg->sqlite_cache_mb,
        .background_checkpoint = writer,
        .ingest_writer = writer,
    };
    int rc = store_open(cfg->database_url, &o, out, err, sizeof err);
    if (rc) cli_error("%s", err);
    return rc;
}

int cli_open_ready(const struct config *cfg, int report, struct store **out)
{
    return cli_open_ready_bg(cfg, 0, report, out);
}

int cli_open_ready_bg(const struct config *cfg, int writer, int report, struct store **out)
{
    int rc = cli_open_store_bg(cfg, writer, out);
    if (rc) {
        *out = NULL;
        return rc;
    }
    rc = store_schema_init(*out);
    if (rc && report) cli_error("%s", store_errmsg(*out));
    return rc;
}

int cli_block_stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    return pthread_sigmask(SIG_BLOCK, set, NULL);
}

int cli_check_uuid(const char *flag, const char *v, size_t max)
{
    size_t n = strlen(v), ok = ident_span(v, n);
    if (n == 0 || n > max) {
        cli_error("%s must be 1 to %zu bytes, got %zu", flag, max, n);
        return -1;
    }
    if (ok < n) {
        cli_error("%s may hold only " IDENT_ALPHABET_TEXT " (it goes into URLs unescaped), "
                  "got \"%.64s\"",
                  flag, v);
        return -1;
    }
    return 0;
}

int cli_parse_double(const char *flag, const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v)) {
        cli_error("%s must be a number, got \"%.64s\"", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_print_json(void *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s) return IOT_ENOMEM;
    printf("%s\n", s);
    free(s);
    return fflush(stdout) == 0 ? 0 : IOT_EIO;
}
