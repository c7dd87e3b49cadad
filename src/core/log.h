/*
 * Logging: one line per event on stderr, logfmt (key=value) or JSON.
 * LOG() checks the level before formatting anything. Never log a key or a
 * whole payload above debug.
 */
#ifndef IOT_LOG_H
#define IOT_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 };

extern enum log_level log_min_level;

/* Parses "debug|info|warn|error|off"; returns 0 or IOT_EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

/* LOG_REQUESTS (all, errors, none) as the access log's mode: 2, 1, 0. */
int log_requests_mode(const char *setting);
/* The level of one access-log line: info when mode asks for it (failed: an error), else debug. */
static inline enum log_level log_access_level(int mode, int failed)
{
    return (failed && mode >= 1) || mode >= 2 ? LOG_INFO : LOG_DEBUG;
}
/* json != 0 selects JSON lines instead of logfmt. */
void log_set_format_json(int json);

/*
 * Makes an untrusted value safe as one logfmt value: quoted when it holds a
 * space, '=', '"' or '\\', with control and non-ASCII bytes as \xNN, so a
 * client can never write a forged line or field. Returns out.
 */
const char *log_quote(const char *in, char *out, size_t outlen);

/* msg is a short event name; fmt adds key=value pairs (logfmt syntax). */
void log_write(enum log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG(lvl, event, ...)                                                                       \
    do {                                                                                           \
        if ((lvl) >= log_min_level) log_write((lvl), (event), __VA_ARGS__);                        \
    } while (0)

#endif
