/*
 * NATS plumbing shared by the publisher and the consumer: BROKER_URL
 * parsing, a connection that never stops reconnecting, and the stream that
 * either side creates when it is missing.
 */
#include "broker/nats_int.h"
#include "core/err.h"
#include "core/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define NS_PER_S            1000000000LL
#define DUPLICATE_WINDOW_NS (120 * NS_PER_S)
#define CONNECT_TIMEOUT_MS  2000
#define RECONNECT_JITTER_MS 100
/* Publications buffered by libnats during a reconnect; ours drop instead (broker_nats.c). */
#define RECONNECT_BUF_BYTES (256 * 1024)
/* A silent engine is declared gone after PING_INTERVAL_MS * (MAX_PINGS_OUT + 1). */
#define PING_INTERVAL_MS 5000
#define MAX_PINGS_OUT    2

const char *nats_err_text(natsStatus s)
{
    natsStatus last = NATS_OK;
    const char *text = nats_GetLastError(&last);
    return text && *text && last == s ? text : natsStatus_GetText(s);
}

static int token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Dot-separated non-empty tokens of token_char; no wildcard, no space. */
static int subject_ok(const char *s)
{
    size_t toklen = 0;

    if (!*s) return 0;
    for (; *s; s++) {
        if (*s == '.') {
            if (toklen == 0) return 0;
            toklen = 0;
        } else if (token_char(*s)) {
            toklen++;
        } else {
            return 0;
        }
    }
    return toklen > 0;
}

int nats_stream_name_ok(const char *name)
{
    size_t n = 0;

    if (!name) return 0;
    for (; name[n]; n++)
        if (!token_char(name[n])) return 0;
    return n >= 1 && n <= 64;
}

int nats_opts_check(const char *who, const struct broker_nats_opts *o, int own_limits_ok, char *err,
                    size_t errlen)
{
    if (!o || !own_limits_ok || o->max_age_s < 1 || o->max_bytes < 1 || o->reconnect_wait_ms < 1) {
        iot_set_err(err, errlen, "%s: every limit must be positive", who);
        return IOT_EINVAL;
    }
    if (!nats_stream_name_ok(o->stream)) {
        iot_set_err(err, errlen,
                    "BROKER_STREAM must be 1-64 letters, digits, '-' or '_', got \"%.64s\"",
                    o->stream ? o->stream : "");
        return IOT_EINVAL;
    }
    return 0;
}

int nats_target_parse(const char *url, struct nats_target *t, char *err, size_t errlen)
{
    static const char scheme[] = "nats://";
    const size_t slen = sizeof scheme - 1;

    memset(t, 0, sizeof *t);
    if (!url || strncmp(url, scheme, slen) != 0) {
        iot_set_err(err, errlen, "a NATS BROKER_URL starts with nats://");
        return IOT_EINVAL;
    }
    const char *auth = url + slen;
    size_t authlen = strcspn(auth, "/?#");
    const char *path = auth + authlen;
    const char *at = NULL;
    for (const char *p = auth; p < path; p++)
        if (*p == '@') at = p;
    const char *host = at ? at + 1 : auth;
    size_t hostlen = (size_t)(path - host);

    if (hostlen == 0) {
        iot_set_err(err, errlen, "BROKER_URL nats://…: the host is missing");
        return IOT_EINVAL;
    }
    if (slen + authlen >= sizeof t->server) {
        iot_set_err(err, errlen, "BROKER_URL is too long");
        return IOT_EINVAL;
    }
    snprintf(t->server, sizeof t->server, "%.*s", (int)(slen + authlen), url);
    snprintf(t->shown, sizeof t->shown, "%s%s%.*s", scheme, at ? "***@" : "", (int)hostlen, host);
    for (const char *p = host; p < path; p++) {
        if (*p == ' ' || (unsigned char)*p < 0x20) {
            iot_set_err(err, errlen, "BROKER_URL %s: bad character in the host", t->shown);
            return IOT_EINVAL;
        }
    }
    if (*path == '?' || *path == '#') {
        iot_set_err(err, errlen, "BROKER_URL %s: query strings and fragments are not accepted",
                    t->shown);
        return IOT_EINVAL;
    }
    const char *subject = *path == '/' ? path + 1 : path;
    if (!*subject) subject = NATS_DEFAULT_SUBJECT;
    if (strlen(subject) >= sizeof t->subject || !subject_ok(subject)) {
        iot_set_err(err, errlen,
                    "BROKER_URL %s: the subject after the host must be dot-separated tokens of "
                    "letters, digits, '-' and '_' (no wildcards)",
                    t->shown);
        return IOT_EINVAL;
    }
    snprintf(t->subject, sizeof t->subject, "%s", subject);
    return 0;
}

int nats_conn_open(const struct nats_target *t, const char *name, int64_t reconnect_wait_ms,
                   const struct nats_conn_events *ev, natsConnection **out, int *connected_now,
                   char *err, size_t errlen)
{
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    natsStatus s;

    *out = NULL;
    *connected_now = 0;
    s = natsOptions_Create(&opts);
    if (s == NATS_OK) s = natsOptions_SetURL(opts, t->server);
    if (s == NATS_OK && name) s = natsOptions_SetName(opts, name);
    if (s == NATS_OK) s = natsOptions_SetTimeout(opts, CONNECT_TIMEOUT_MS);
    /* libnats gives up after 60 attempts by default; -1 means never. */
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, reconnect_wait_ms);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectJitter(opts, RECONNECT_JITTER_MS, RECONNECT_JITTER_MS);
    if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(opts, RECONNECT_BUF_BYTES);
    if (s == NATS_OK) s = natsOptions_SetPingInterval(opts, PING_INTERVAL_MS);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(opts, MAX_PINGS_OUT);
    if (s == NATS_OK && ev && ev->disconnected)
        s = natsOptions_SetDisconnectedCB(opts, ev->disconnected, ev->ud);
    if (s == NATS_OK && ev && ev->connected)
        s = natsOptions_SetReconnectedCB(opts, ev->connected, ev->ud);
    if (s == NATS_OK && ev && ev->closed) s = natsOptions_SetClosedCB(opts, ev->closed, ev->ud);
    /* Engine down at start: connect in the background, report through ev->connected. */
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(opts, true, ev ? ev->connected : NULL,
                                                ev ? ev->ud : NULL);
    if (s != NATS_OK) {
        iot_set_err(err, errlen, "NATS options: %s", nats_err_text(s));
        natsOptions_Destroy(opts);
        return s == NATS_NO_MEMORY ? IOT_ENOMEM : IOT_EINVAL;
    }
    s = natsConnection_Connect(&nc, opts);
    natsOptions_Destroy(opts); /* the connection keeps its own copy */
    if (s == NATS_OK) {
        *connected_now = 1;
    } else if (s == NATS_NOT_YET_CONNECTED && nc) {
        LOG(LOG_WARN, "broker_connect_pending", "url=%s reason=\"%s\"", t->shown,
            "engine not reachable yet; retrying in the background");
    } else {
        iot_set_err(err, errlen, "cannot start a NATS connection to %s: %s", t->shown,
                    nats_err_text(s));
        natsConnection_Destroy(nc);
        return s == NATS_NO_MEMORY ? IOT_ENOMEM : IOT_EIO;
    }
    *out = nc;
    return 0;
}

/* 1 when the stream's subject list holds subject itself. */
static int stream_takes(const jsStreamConfig *c, const char *subject)
{
    for (int i = 0; c && i < c->SubjectsLen; i++)
        if (c->Subjects[i] && strcmp(c->Subjects[i], subject) == 0) return 1;
    return 0;
}

int nats_stream_ensure(jsCtx *js, const struct broker_nats_opts *o, const char *subject,
                       int64_t *created_ns, char *err, size_t errlen)
{
    jsStreamInfo *si = NULL, *si2 = NULL;
    jsErrCode jerr = 0;
    jsOptions jo;
    natsStatus s;
    int64_t max_age_ns = o->max_age_s * NS_PER_S;

    if (jsOptions_Init(&jo) != NATS_OK) return IOT_EIO;
    jo.Wait = NATS_API_WAIT_MS;
    s = js_GetStreamInfo(&si, js, o->stream, &jo, &jerr);
    if (s != NATS_OK && (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)) {
        jsStreamConfig sc;
        const char *subjects[1] = {subject};
        if (jsStreamConfig_Init(&sc) != NATS_OK) return IOT_EIO;
        sc.Name = o->stream;
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Retention = js_LimitsPolicy;
        sc.Discard = js_DiscardOld;
        sc.Storage = js_FileStorage;
        sc.MaxAge = max_age_ns;
        sc.MaxBytes = o->max_bytes;
        sc.Duplicates = max_age_ns < DUPLICATE_WINDOW_NS ? max_age_ns : DUPLICATE_WINDOW_NS;
        jerr = 0;
        s = js_AddStream(&si, js, &sc, &jo, &jerr);
        if (s != NATS_OK && jerr == JSStreamNameExistErr) /* another process won the race */
            s = js_GetStreamInfo(&si, js, o->stream, &jo, &jerr);
        else if (s == NATS_OK)
            LOG(LOG_INFO, "broker_stream_created",
                "stream=%s subject=%s max_age_s=%lld max_bytes=%lld", o->stream, subject,
                (long long)o->max_age_s, (long long)o->max_bytes);
    }
    if (s != NATS_OK) {
        iot_set_err(err, errlen, "JetStream stream %s: %s (code %d)", o->stream, nats_err_text(s),
                    (int)jerr);
        jsStreamInfo_Destroy(si);
        return IOT_EUNAVAIL;
    }
    if (!stream_takes(si->Config, subject)) {
        iot_set_err(err, errlen, "JetStream stream %s exists but does not take subject %s",
                    o->stream, subject);
        jsStreamInfo_Destroy(si);
        return IOT_EINVAL;
    }
    if (si->Config->MaxAge != max_age_ns || si->Config->MaxBytes != o->max_bytes) {
        si->Config->MaxAge = max_age_ns;
        si->Config->MaxBytes = o->max_bytes;
        if (si->Config->Duplicates > max_age_ns) si->Config->Duplicates = max_age_ns;
        jerr = 0;
        s = js_UpdateStream(&si2, js, si->Config, &jo, &jerr);
        if (s != NATS_OK) {
            /* The stream works with its old limits: say so, go on. */
            LOG(LOG_WARN, "broker_stream_update_failed", "stream=%s err=\"%s\" code=%d", o->stream,
                nats_err_text(s), (int)jerr);
        } else {
            LOG(LOG_INFO, "broker_stream_updated", "stream=%s max_age_s=%lld max_bytes=%lld",
                o->stream, (long long)o->max_age_s, (long long)o->max_bytes);
        }
        jsStreamInfo_Destroy(si2);
    }
    if (created_ns) *created_ns = si->Created;
    jsStreamInfo_Destroy(si);
    return 0;
}
