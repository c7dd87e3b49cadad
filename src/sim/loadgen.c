#include "sim/loadgen.h"
#include "core/clock.h"
#include "core/err.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#define ANSWER_KEEP    1024    /* bytes of each answer kept (to read "accepted") */
#define MAX_WAIT_MS    100     /* poll at least this often (stop flag, ticks) */
#define SLIP_LIMIT_US  1000000 /* schedule slots overdue by more are dropped */
#define EARLY_US       1000    /* a slot may start this early (ms timer granularity) */
#define DRAIN_EXTRA_MS 1000    /* answers are awaited timeout_ms + this after sending */

struct slot {
    CURL *easy;
    struct loadgen_request req;
    char answer[ANSWER_KEEP];
    size_t answer_len;
    uint64_t t0_us;
};

struct loop {
    const struct loadgen_opts *o;
    struct loadgen_totals *t;
    CURLM *multi;
    struct slot *slots;
    unsigned *free_stack, nfree;
    struct lat_hist interval; /* latencies since the last tick */
    uint64_t i_ok, i_accepted;
};

static uint64_t now_us(void)
{
    return (uint64_t)clock_mono_us();
}

/* Keeps the first ANSWER_KEEP - 1 bytes of the answer; accepts (discards) the rest. */
static size_t keep_answer(char *data, size_t size, size_t nmemb, void *ud)
{
    struct slot *s = ud;
    size_t n = size * nmemb, room = ANSWER_KEEP - 1 - s->answer_len;
    size_t k = n < room ? n : room;
    memcpy(s->answer + s->answer_len, data, k);
    s->answer_len += k;
    s->answer[s->answer_len] = 0;
    return n;
}

static int slot_init(struct slot *s, const struct loadgen_opts *o)
{
    if (!(s->easy = curl_easy_init())) return IOT_ENOMEM;
    CURLcode c = curl_easy_setopt(s->easy, CURLOPT_URL, o->url);
    if (!c) c = curl_easy_setopt(s->easy, CURLOPT_POST, 1L);
    if (!c) c = curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, keep_answer);
    if (!c) c = curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
    if (!c) c = curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
    if (!c) c = curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
    if (!c) c = curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    if (!c) c = curl_easy_setopt(s->easy, CURLOPT_TCP_NODELAY, 1L);
    if (!c) c = curl_easy_setopt(s->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    return c == CURLE_OK ? 0 : c == CURLE_OUT_OF_MEMORY ? IOT_ENOMEM : IOT_EIO;
}

static void loop_fini(struct loop *l)
{
    for (unsigned i = 0; l->slots && i < l->o->connections; i++) {
        if (l->slots[i].easy) {
            if (l->multi) (void)curl_multi_remove_handle(l->multi, l->slots[i].easy);
            curl_easy_cleanup(l->slots[i].easy);
        }
        buf_free(&l->slots[i].req.body);
    }
    if (l->multi) (void)curl_multi_cleanup(l->multi);
    free(l->slots);
    free(l->free_stack);
}

static int loop_init(struct loop *l)
{
    unsigned n = l->o->connections;
    l->slots = calloc(n, sizeof *l->slots);
    l->free_stack = calloc(n, sizeof *l->free_stack);
    if (!l->slots || !l->free_stack) return IOT_ENOMEM;
    if (!(l->multi = curl_multi_init())) return IOT_ENOMEM;
    CURLMcode mc = curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, (long)n);
    if (!mc) mc = curl_multi_setopt(l->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)n);
    if (mc) return IOT_EIO;
    for (unsigned i = 0; i < n; i++) {
        int rc = slot_init(&l->slots[i], l->o);
        if (rc) return rc;
        l->free_stack[l->nfree++] = n - 1 - i;
    }
    return 0;
}

/* Hands the next request to libcurl on a free slot. */
static int launch(struct loop *l)
{
    struct slot *s = &l->slots[l->free_stack[l->nfree - 1]];
    int rc = l->o->fill(l->o->ud, &s->req);
    if (rc) return rc;
    struct curl_slist *hdrs = s->req.headers;
    CURLcode c = curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, hdrs);
    if (!c) c = curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->req.body.len);
    if (!c) c = curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->req.body.p ? s->req.body.p : "");
    if (c) return IOT_EIO;
    s->answer_len = 0;
    s->answer[0] = 0;
    s->t0_us = now_us();
    if (curl_multi_add_handle(l->multi, s->easy) != CURLM_OK) return IOT_EIO;
    l->nfree--;
    l->t->sent++;
    l->t->bytes_sent += s->req.body.len;
    return 0;
}

/* The "accepted" count of a packet answer; 0 if absent. */
static uint64_t answer_accepted(const char *a)
{
    const char *p = strstr(a, "\"accepted\":");
    if (!p) return 0;
    char *end;
    unsigned long long v = strtoull(p + 11, &end, 10);
    return end == p + 11 ? 0 : (uint64_t)v;
}

/* Records every finished transfer and frees its slot; returns how many finished. */
static unsigned reap(struct loop *l)
{
    unsigned done = 0;
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(l->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        char *priv = NULL;
        CURL *e = m->easy_handle;
        CURLcode result = m->data.result;
        if (curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv) continue;
        struct slot *s = (struct slot *)(void *)priv;
        uint64_t us = now_us() - s->t0_us;
        long status = 0;
        if (result == CURLE_OK &&
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status > 0) {
            struct loadgen_totals *t = l->t;
            t->answered++;
            t->status[status < LOADGEN_STATUS_MAX ? status : 0]++;
            lat_hist_add(&t->lat, us);
            lat_hist_add(&l->interval, us);
            if (status >= 200 && status < 300) {
                uint64_t acc = answer_accepted(s->answer);
                t->ok++;
                l->i_ok++;
                t->accepted += acc;
                l->i_accepted += acc;
            }
        } else {
            l->t->errors++;
            l->t->curl_error[(unsigned)result < LOADGEN_ERR_MAX ? (unsigned)result : 0]++;
        }
        (void)curl_multi_remove_handle(l->multi, e);
        l->free_stack[l->nfree++] = (unsigned)(s - l->slots);
        done++;
    }
    return done;
}

static void tick(struct loop *l, uint64_t now, uint64_t start, uint64_t last_tick)
{
    const struct loadgen_totals *t = l->t;
    struct loadgen_tick k = {
        .t_s = (double)(now - start) / 1e6,
        .sent = t->sent,
        .answered = t->answered,
        .ok = t->ok,
        .errors = t->errors,
        .accepted = t->accepted,
        .i_ok = l->i_ok,
        .i_accepted = l->i_accepted,
        .interval_s = (double)(now - last_tick) / 1e6,
        .i_p50_us = lat_hist_percentile(&l->interval, 50),
        .i_p99_us = lat_hist_percentile(&l->interval, 99),
        .i_max_us = l->interval.max_us,
        .in_flight = l->o->connections - l->nfree,
    };
    if (l->o->tick) l->o->tick(l->o->ud, &k);
    lat_hist_reset(&l->interval);
    l->i_ok = l->i_accepted = 0;
}

int loadgen_run(const struct loadgen_opts *o, struct loadgen_totals *t)
{
    memset(t, 0, sizeof *t);
    struct loop l = {.o = o, .t = t};
    int rc = o->connections ? loop_init(&l) : IOT_EINVAL;
    if (rc) {
        loop_fini(&l);
        return rc;
    }
    const uint64_t start = now_us();
    const uint64_t end = start + (uint64_t)(o->duration_s * 1e6);
    const uint64_t interval = o->rate > 0 ? (uint64_t)(1e6 / o->rate) : 0;
    uint64_t next_due = start, last_tick = start, last_answer = start, drain_deadline = 0;
    int sending = 1, fill_rc = 0;
    for (;;) {
        uint64_t now = now_us();
        if (sending && (now >= end || (o->stop && *o->stop) || fill_rc)) {
            sending = 0;
            drain_deadline = now + (uint64_t)(o->timeout_ms + DRAIN_EXTRA_MS) * 1000u;
        }
        while (sending && l.nfree > 0) {
            if (interval) {
                if (now + EARLY_US < next_due) break;
                if (now > next_due + SLIP_LIMIT_US) {
                    uint64_t skipped = (now - next_due) / interval;
                    t->behind += skipped;
                    next_due += skipped * interval;
                }
                next_due += interval;
            }
            if ((fill_rc = launch(&l))) break;
        }
        int running;
        if (curl_multi_perform(l.multi, &running) != CURLM_OK) {
            rc = IOT_EIO;
            break;
        }
        unsigned done = reap(&l);
        now = now_us();
        if (done) last_answer = now;
        if (now >= last_tick + 1000000u) {
            tick(&l, now, start, last_tick);
            last_tick = now;
        }
        unsigned in_flight = o->connections - l.nfree;
        if (!sending && (in_flight == 0 || now >= drain_deadline)) {
            t->unfinished = in_flight;
            break;
        }
        if (done && sending && !interval) continue; /* refill at once */
        long wait_ms = MAX_WAIT_MS;
        if (sending && interval && l.nfree > 0) {
            uint64_t due = next_due > now + EARLY_US ? next_due - now - EARLY_US : 0;
            if ((long)((due + 999u) / 1000u) < wait_ms) wait_ms = (long)((due + 999u) / 1000u);
        }
        if (done && sending) wait_ms = 0;
        if (curl_multi_poll(l.multi, NULL, 0, (int)wait_ms, NULL) != CURLM_OK) {
            rc = IOT_EIO;
            break;
        }
    }
    t->elapsed_s = (double)(last_answer - start) / 1e6;
    if (t->elapsed_s <= 0) t->elapsed_s = (double)(now_us() - start) / 1e6;
    loop_fini(&l);
    return rc ? rc : fill_rc;
}

const char *loadgen_error_name(int code)
{
    return curl_easy_strerror((CURLcode)code);
}
