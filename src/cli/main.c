/* iot-ingest: one binary, subcommands (SPEC §8). */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const struct cli_cmd *const commands[] = {
    &cmd_serve,          &cmd_db_init,         &cmd_db_demo,      &cmd_device_add,
    &cmd_device_disable, &cmd_device_delete,   &cmd_sensor_add,   &cmd_sensor_disable,
    &cmd_threshold_set,  &cmd_threshold_clear, &cmd_job_baseline, &cmd_job_explain,
    &cmd_job_silence,    &cmd_job_retention,   &cmd_jobs,         &cmd_sim,
    &cmd_consume,
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* Length of the group word of a two-word name ("device add" -> 6), 0 for a one-word name. */
static size_t group_len(const char *name)
{
    const char *sp = strchr(name, ' ');
    return sp ? (size_t)(sp - name) : 0;
}

/* 1 if word is the group of some two-word command ("db", "device", "job", ...). */
static int is_group(const char *word)
{
    for (size_t i = 0; i < NCOMMANDS; i++) {
        size_t n = group_len(commands[i]->name);
        if (n && strlen(word) == n && strncmp(commands[i]->name, word, n) == 0) return 1;
    }
    return 0;
}

/*
 * One row of a command list: the name, then the summary's first sentence
 * (up to a ". " outside parentheses) on one line: a summary's first line can
 * stop mid-sentence.
 */
static void list_row(FILE *out, const char *name, const char *summary)
{
    char line[120];
    size_t n = 0;
    int depth = 0;
    for (const char *p = summary; *p && n < sizeof line - 4; p++) {
        int end = p[1] == ' ' || p[1] == '\n' || p[1] == 0;
        depth += *p == '(' ? 1 : *p == ')' && depth ? -1 : 0;
        line[n++] = *p == '\n' ? ' ' : *p;
        if (!depth && end && *p == '.') break;
    }
    if (n == sizeof line - 4) memcpy(line + n, "...", 3), n += 3;
    fprintf(out, "  %-18s %.*s\n", name, (int)n, line);
}

/* Lists the commands whose name starts with "group " (every command when group is NULL). */
static void list_commands(FILE *out, const char *group)
{
    size_t glen = group ? strlen(group) : 0;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *name = commands[i]->name;
        if (group && !(group_len(name) == glen && strncmp(name, group, glen) == 0)) continue;
        list_row(out, name, commands[i]->summary);
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: iot-ingest COMMAND [flags]   (iot-ingest COMMAND --help for more)\n\n"
                 "Commands:\n");
    list_commands(out, NULL);
    for (size_t i = 0; i < cli_nbuiltins; i++) {
        const struct cli_builtin *b = &cli_builtins[i];
        char name[64];
        snprintf(name, sizeof name, "%s%s%s", b->name, b->args ? " " : "", b->args ? b->args : "");
        list_row(out, name, b->summary);
    }
    fprintf(out, "\nEvery setting is an environment variable or a flag; see "
                 "iot-ingest help settings.\n");
}

/* `iot-ingest db`, `iot-ingest db --help`: the subcommands of one group. */
static void group_usage(FILE *out, const char *group)
{
    fprintf(out,
            "usage: iot-ingest %s COMMAND [flags]   (iot-ingest %s COMMAND --help for more)\n\n"
            "Commands:\n",
            group, group);
    list_commands(out, group);
}

static int is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* Finds the command whose (one- or two-word) name starts argv; sets *used. */
static const struct cli_cmd *find(int argc, char **argv, int *used)
{
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *name = commands[i]->name;
        size_t n = group_len(name);
        if (!n && strcmp(argv[0], name) == 0) {
            *used = 1;
            return commands[i];
        }
        if (n && argc >= 2 && strncmp(argv[0], name, n) == 0 && argv[0][n] == 0 &&
            strcmp(argv[1], name + n + 1) == 0) {
            *used = 2;
            return commands[i];
        }
    }
    return NULL;
}

/*
 * A group word without a known subcommand, as git does: --help lists the
 * group on stdout (exit 0); nothing after it lists it on stderr (exit 2); an
 * unknown word is a one-line error (exit 2).
 */
static int group_without_command(int argc, char **argv)
{
    if (argc >= 2 && is_help(argv[1])) {
        group_usage(stdout, argv[0]);
        return 0;
    }
    if (argc < 2 || strncmp(argv[1], "-", 1) == 0) {
        group_usage(stderr, argv[0]);
        return EXIT_USAGE;
    }
    fprintf(stderr, "iot-ingest %s: unknown command \"%.64s\" (see iot-ingest %s --help)\n",
            argv[0], argv[1], argv[0]);
    return EXIT_USAGE;
}

/* `iot-ingest help [settings | GROUP | COMMAND]`, like git help. */
static int help(int argc, char **argv)
{
    int used = 0;
    const struct cli_cmd *cmd = argc > 0 ? find(argc, argv, &used) : NULL;
    if (argc == 0) {
        usage(stdout);
    } else if (argc == 1 && strcmp(argv[0], "settings") == 0) {
        cli_print_settings();
    } else if (cmd && used == argc) {
        cli_print_help(cmd);
    } else if (argc == 1 && is_group(argv[0])) {
        group_usage(stdout, argv[0]);
    } else {
        fprintf(stderr, "iot-ingest help: no command \"%.64s%s%.64s\" (see iot-ingest --help)\n",
                argv[0], argc > 1 ? " " : "", argc > 1 ? argv[1] : "");
        return EXIT_USAGE;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (is_help(argv[1])) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0) return help(argc - 2, argv + 2);
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("iot-ingest %s\n", IOT_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "man") == 0) return cli_man(argc - 2, argv + 2, commands, NCOMMANDS);
    int used = 0;
    const struct cli_cmd *cmd = find(argc - 1, argv + 1, &used);
    if (!cmd && is_group(argv[1])) return group_without_command(argc - 1, argv + 1);
    if (!cmd) {
        fprintf(stderr, "iot-ingest: unknown command \"%.64s\" (see iot-ingest --help)\n", argv[1]);
        return EXIT_USAGE;
    }
    struct config cfg;
    if (config_init(&cfg)) {
        fprintf(stderr, "iot-ingest: out of memory\n");
        return 1;
    }
    const char *pos[4] = {0};
    int rc = cli_parse(cmd, argc - 1 - used, argv + 1 + used, &cfg, pos);
    if (rc == 0)
        rc = cmd->run(&cfg, pos);
    else
        rc = rc > 0 ? 0 : EXIT_USAGE;
    config_fini(&cfg);
    return rc;
}
