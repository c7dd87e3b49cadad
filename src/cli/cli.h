/* Shared plumbing of the subcommands: settings, flags, opening the store, stop signals. */
#ifndef IOT_CLI_H
#define IOT_CLI_H

#include "core/config.h"
#include "store/store.h"

#include <signal.h>
#include <stdio.h>

#define CLI_MAX_ARGS 64
#define EXIT_USAGE   2

/* What a subcommand-specific flag takes (struct cli_flag.kind). */
enum cli_flag_kind {
    CLI_FLAG_OPTIONAL = 0, /* --name VALUE, may be absent */
    CLI_FLAG_REQUIRED = 1, /* --name VALUE, must be given */
    CLI_FLAG_SWITCH = 2,   /* --name alone, no value: *value becomes "1" */
};

/* A subcommand-specific flag, its value stored as a borrowed pointer into argv. */
struct cli_flag {
    const char *name;
    const char **value;
    int kind; /* enum cli_flag_kind */
    const char *help;
};

struct cli_cmd {
    const char *name; /* "device add" */
    const char *args; /* positional synopsis, e.g. "UUID" */
    const char *summary;
    struct cli_flag *flags; /* terminated by a zero row */
    int npos;               /* positional arguments required */
    int (*run)(struct config *cfg, const char **pos);
    unsigned uses;  /* enum config_use: the settings it reads, listed by its --help */
    int creates_db; /* may create a missing SQLite file (db init and the daemons) */
};

/*
 * Loads settings (environment, then every settings flag anywhere in argv),
 * then the command's own flags and positionals from what is left. Prints
 * --help and returns 1 (caller exits 0) if asked; on a usage error prints one
 * line on stderr and returns -1. 0 on success.
 */
int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, struct config *cfg,
              const char **pos);

/* Commands main() handles itself (help, man), listed by --help and the man page. */
struct cli_builtin {
    const char *name, *args, *summary;
};
extern const struct cli_builtin cli_builtins[];
extern const size_t cli_nbuiltins;

/* Prints cmd's --help on stdout: usage, summary, its flags, the settings it reads. */
void cli_print_help(const struct cli_cmd *cmd);
/* `iot-ingest help settings`: every setting, on stdout. */
void cli_print_settings(void);

/*
 * Prints "iot-ingest COMMAND: <message>" and a newline on stderr, COMMAND
 * being the one cli_parse last parsed ("iot-ingest: " before any).
 */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Opens DATABASE_URL with the settings' options; one-line error on stderr.
 * A SQLite file that does not exist is IOT_ENOTFOUND ("create it with db
 * init"), unless the command parsed last has creates_db.
 */
int cli_open_store(const struct config *cfg, struct store **out);
/*
 * The same; writer: this is the gateway's ingest writer connection (the
 * caller runs a store_maintainer for it; store_open_opts.ingest_writer).
 */
int cli_open_store_bg(const struct config *cfg, int writer, struct store **out);

/*
 * cli_open_store, then creates or upgrades the schema. If that fails, prints
 * store_errmsg with cli_error when report is set (else the caller reports
 * it) and returns the error with *out still open, for the caller to report
 * on and close. Returns 0, or the error; *out is NULL when the store could
 * not even be opened (cli_open_store printed why).
 */
int cli_open_ready(const struct config *cfg, int report, struct store **out);
/* The same; writer as for cli_open_store_bg. */
int cli_open_ready_bg(const struct config *cfg, int writer, int report, struct store **out);

/*
 * Fills set with SIGTERM and SIGINT and blocks them in the calling thread,
 * and so in every thread it starts afterwards; the caller takes them with
 * sigwait/sigtimedwait. Returns pthread_sigmask's result (0 on success).
 */
int cli_block_stop_signals(sigset_t *set);

/*
 * Checks a new uuid (or uuid prefix) given by flag: 1 to max bytes of
 * A-Z a-z 0-9 . _ : - only, so that it can stand in a URL path unescaped
 * (GET /ingest/devices/{uuid}/status). -1 and a cli_error line if not.
 */
int cli_check_uuid(const char *flag, const char *v, size_t max);

/* Parses a double flag value; -1 and a message on stderr if it is not a finite number. */
int cli_parse_double(const char *flag, const char *s, double *out);

/* Prints a JSON object (jansson) on one line on stdout; steals obj. */
int cli_print_json(void *obj);

struct sim_rng;
struct sim_fleet;
/*
 * The fleet of `db demo` (cmd_db.c) for `sim --demo`: its uuids and public
 * keys, signals seeded from r. The caller owns *out (sim_fleet_destroy).
 */
int cli_demo_fleet(struct sim_rng *r, struct sim_fleet **out);

/* Subcommands. */
extern const struct cli_cmd cmd_serve, cmd_db_init, cmd_db_demo, cmd_device_add, cmd_device_disable,
    cmd_device_delete, cmd_sensor_add, cmd_sensor_disable, cmd_threshold_set, cmd_threshold_clear,
    cmd_job_baseline, cmd_job_explain, cmd_job_silence, cmd_job_retention, cmd_jobs;
extern const struct cli_cmd cmd_consume;
extern const struct cli_cmd cmd_sim;

/*
 * `iot-ingest man [env]` (cmd_man.c): the roff manual page, or the
 * commented environment file, generated from cmds and the settings table.
 * Returns the exit code.
 */
int cli_man(int argc, char **argv, const struct cli_cmd *const *cmds, size_t ncmds);

#endif
