/*
 * Broker helpers shared by every implementation: health names and the
 * factory that turns BROKER_URL (+ BROKER_THROTTLE_MS) into a broker.
 */
#include "broker/broker.h"
#include "broker/broker_nats.h"
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/*
 * Sensors tracked by the throttle the factory adds: 64 Ki entries cost about
 * 3 MiB; past that many active sensors the least recently seen are
 * forgotten (see broker_throttle.c).
 */
#define FACTORY_THROTTLE_MAX_SENSORS 65536

/* The words /health reports: "ok", "error", "disabled". */
const char *broker_health_name(enum broker_health h)
{
    switch (h) {
    case BROKER_OK:
        return "ok";
    case BROKER_ERROR:
        return "error";
    case BROKER_DISABLED:
        return "disabled";
    }
    return "unknown";
}

/*
 * Copies url into out for an error message, with any user:password part of
 * an engine URL ("scheme://user:pass@host") replaced by "***", so that a
 * credential never reaches a log line.
 */
void broker_url_redact(const char *url, char *out, size_t outlen)
{
    const char *auth = strstr(url, "://");
    const char *at = NULL;

    if (auth) {
        auth += 3;
        size_t hostpart = strcspn(auth, "/?#");
        for (const char *p = auth; p < auth + hostpart; p++)
            if (*p == '@') at = p;
    }
    if (at)
        snprintf(out, outlen, "%.*s***%s", (int)(auth - url), url, at);
    else
        snprintf(out, outlen, "%s", url);
}

/*
 * Builds the broker named by url: "memory" (a queue of queue_max messages),
 * "none", or "nats://..." (only with cfg, which holds the NATS settings);
 * wrapped in the throttle when throttle_ms > 0. *out is owned by
 * the caller (broker_destroy). On failure *out is NULL and err (may be NULL)
 * holds a sentence naming the problem. Returns 0, IOT_EINVAL, IOT_ENOMEM or
 * IOT_EIO.
 */
static int create(const char *url, size_t queue_max, int64_t throttle_ms, const struct config *cfg,
                  struct broker **out, char *err, size_t errlen)
{
    struct broker *b = NULL, *wrapped = NULL;
    int rc;

    if (err && errlen > 0) err[0] = '\0';
    if (!out) return IOT_EINVAL;
    *out = NULL;
    if (!url) {
        iot_set_err(err, errlen, "BROKER_URL is missing");
        return IOT_EINVAL;
    }
    if (throttle_ms < 0) {
        iot_set_err(err, errlen, "BROKER_THROTTLE_MS must be 0 (off) or positive");
        return IOT_EINVAL;
    }
    if (strcmp(url, "memory") == 0) {
        if (queue_max == 0) {
            iot_set_err(err, errlen, "BROKER_QUEUE_MAX must be at least 1 for BROKER_URL=%s", url);
            return IOT_EINVAL;
        }
        rc = broker_memory_create(queue_max, &b);
    } else if (strcmp(url, "none") == 0) {
        rc = broker_none_create(&b);
    } else if (strncmp(url, "nats://", 7) == 0) {
        /* NATS JetStream (broker_nats.h), with its settings from cfg. */
        if (queue_max == 0) {
            iot_set_err(err, errlen, "BROKER_QUEUE_MAX must be at least 1 for a NATS BROKER_URL");
            return IOT_EINVAL;
        }
        if (!cfg) {
            /* Its settings (stream, limits) come only with the configuration. */
            iot_set_err(err, errlen,
                        "a NATS BROKER_URL needs the broker settings: use broker_create, "
                        "not broker_create_from_url");
            return IOT_EINVAL;
        }
        struct broker_nats_opts o;
        broker_nats_opts_from_config(cfg, &o);
        rc = broker_nats_create(url, &o, queue_max, &b, err, errlen);
        if (rc != 0) return rc; /* err names the problem, without any credential */
    } else {
        char shown[160];
        broker_url_redact(url, shown, sizeof shown);
        iot_set_err(err, errlen,
                    "unsupported BROKER_URL '%s': accepted values are 'memory', 'none' and "
                    "nats://host:port/subject",
                    shown);
        return IOT_EINVAL;
    }
    if (rc != 0) {
        iot_set_err(err, errlen, "cannot create the broker: %s", iot_strerror(rc));
        return rc;
    }
    if (throttle_ms > 0) {
        /* takes b, and destroys it on failure */
        rc = broker_throttle_create(b, throttle_ms, FACTORY_THROTTLE_MAX_SENSORS, &wrapped);
        if (rc != 0) {
            iot_set_err(err, errlen, "cannot create the broker throttle: %s", iot_strerror(rc));
            return rc;
        }
        b = wrapped;
    }
    *out = b;
    return 0;
}

int broker_create_from_url(const char *url, size_t queue_max, int64_t throttle_ms,
                           struct broker **out, char *err, size_t errlen)
{
    return create(url, queue_max, throttle_ms, NULL, out, err, errlen);
}

int broker_create(const struct config *cfg, struct broker **out, char *err, size_t errlen)
{
    return create(cfg->broker_url, (size_t)cfg->broker_queue_max, cfg->broker_throttle_ms, cfg, out,
                  err, errlen);
}
