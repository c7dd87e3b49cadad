#include "core/log.h"
#include "core/timefmt.h"
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum log_level log_min_level = LOG_INFO;
static int log_json;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i <= LOG_OFF; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return IOT_EINVAL;
}

void log_set_format_json(int json)
{
    log_json = json;
}

const char *log_quote(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    int quote = !*in;
    for (const char *p = in; *p && !quote; p++)
        quote = *p == ' ' || *p == '=' || *p == '"' || *p == '\\';
    size_t j = 0;
    if (outlen < 8) {
        if (outlen) out[0] = 0;
        return out;
    }
    if (quote) out[j++] = '"';
    for (const unsigned char *p = (const unsigned char *)in; *p && j + 6 < outlen; p++) {
        if (*p < 0x20 || *p >= 0x7f) {
            out[j++] = '\\';
            out[j++] = 'x';
            out[j++] = hex[*p >> 4];
            out[j++] = hex[*p & 15];
        } else {
            if (*p == '"' || *p == '\\') out[j++] = '\\';
            out[j++] = (char)*p;
        }
    }
    if (quote) out[j++] = '"';
    out[j] = 0;
    return out;
}

/* Writes s as a JSON string body (no quotes), escaping what JSON requires. */
static void json_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

/*
 * Converts a logfmt fragment (k=v k2="v 2") into JSON members. Values are
 * always emitted as strings; good enough for log shippers.
 */
static void logfmt_to_json(FILE *f, const char *p)
{
    char key[64], val[1024];
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p) break;
        size_t k = 0;
        while (*p && *p != '=' && *p != ' ' && k < sizeof key - 1)
            key[k++] = *p++;
        key[k] = 0;
        size_t v = 0;
        if (*p == '=') {
            p++;
            if (*p == '"') {
                p++;
                while (*p && *p != '"' && v < sizeof val - 1) {
                    if (*p == '\\' && p[1]) p++;
                    val[v++] = *p++;
                }
                if (*p == '"') p++;
            } else {
                while (*p && *p != ' ' && v < sizeof val - 1)
                    val[v++] = *p++;
            }
        }
        val[v] = 0;
        fputs(",\"", f);
        json_escape(f, key);
        fputs("\":\"", f);
        json_escape(f, val);
        fputc('"', f);
    }
}

void log_write(enum log_level lvl, const char *event, const char *fmt, ...)
{
    char body[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char when[TIMEFMT_RFC3339_LEN];
    timefmt_format_rfc3339((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, when);

    flockfile(stderr);
    if (log_json) {
        fprintf(stderr, "{\"time\":\"%s\",\"level\":\"%s\",\"event\":\"", when, level_names[lvl]);
        json_escape(stderr, event);
        fputc('"', stderr);
        logfmt_to_json(stderr, body);
        fputs("}\n", stderr);
    } else {
        fprintf(stderr, "time=%s level=%s event=%s%s%s\n", when, level_names[lvl], event,
                body[0] ? " " : "", body);
    }
    funlockfile(stderr);
}

int log_requests_mode(const char *setting)
{
    return strcmp(setting, "all") == 0 ? 2 : strcmp(setting, "errors") == 0 ? 1 : 0;
}
