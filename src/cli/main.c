/* iot-ingest: one binary, subcommands (SPEC §8). */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const struct cli_cmd *const commands[] = {
    &cmd_serve,
    &cmd_db_init,
    &cmd_db_demo,
    &cmd_device_add,
    &cmd_device_disable,
    &cmd_sensor_add,
    &cmd_sensor_disable,
    &cmd_threshold_set,
    &cmd_threshold_clear,
    &cmd_job_baseline,
    &cmd_job_explain,
    &cmd_job_silence,
    &cmd_jobs,
    &cmd_sim,
    &cmd_consume,
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: iot-ingest COMMAND [flags]   (iot-ingest COMMAND --help for more)\n\n"
                 "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-18s %.*s\n", commands[i]->name, (int)strcspn(commands[i]->summary, "\n"),
                commands[i]->summary);
    fprintf(out, "\nEvery setting is an environment variable or a flag; see "
                 "iot-ingest serve --help.\n");
}

/* Finds the command whose (one- or two-word) name starts argv; sets *used. */
static const struct cli_cmd *find(int argc, char **argv, int *used)
{
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *name = commands[i]->name, *sp = strchr(name, ' ');
        if (!sp && strcmp(argv[0], name) == 0) {
            *used = 1;
            return commands[i];
        }
        if (sp && argc >= 2 && strncmp(argv[0], name, (size_t)(sp - name)) == 0 &&
            argv[0][sp - name] == 0 && strcmp(argv[1], sp + 1) == 0) {
            *used = 2;
            return commands[i];
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("iot-ingest %s\n", IOT_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "man") == 0) return cli_man(argc - 2, argv + 2, commands, NCOMMANDS);
    int used = 0;
    const struct cli_cmd *cmd = find(argc - 1, argv + 1, &used);
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
