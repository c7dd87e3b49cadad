#include "ingest/writer.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PURGE_EVERY_MS 60000

const double writer_lat_bounds[WRITER_LAT_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                      0.01,   0.025,   0.05,   0.1,   0.5,    1};
const double writer_batch_bounds[WRITER_BATCH_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 1024};

static void observe(uint64_t *buckets, const double *bounds, int nb, double v)
{
    int b = 0;
    while (b < nb && v > bounds[b])
        b++;
    buckets[b]++;
}

struct writer {
    struct store *store;
    struct router *router;
    struct broker *broker;
    struct writer_opts opts;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct write_job **ring;
    size_t head, count;
    int stopping, started;
    pthread_t thread;

    struct write_job **batch; /* writer-thread only */
    int64_t next_purge;
    struct writer_stats stats; /* guarded by mu */
};

int writer_create(struct store *s, struct router *r, struct broker *b,
                  const struct writer_opts *opts, struct writer **out)
{
    struct writer *w = calloc(1, sizeof *w);
    if (!w) {
        store_close(s);
        router_destroy(r);
        return IOT_ENOMEM;
    }
    w->store = s;
    w->router = r;
    w->broker = b;
    w->opts = *opts;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->ring = calloc(opts->queue_max, sizeof *w->ring);
    w->batch = calloc(opts->batch_max, sizeof *w->batch);
    if (!w->ring || !w->batch) {
        writer_destroy(w);
        return IOT_ENOMEM;
    }
    *out = w;
    return 0;
}

int writer_submit(struct writer *w, struct write_job *job)
{
    job->status = WRITE_PENDING;
    job->stored_response = NULL;
    job->err = 0;
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    if (w->stopping)
        rc = IOT_ESHUTDOWN;
    else if (w->count >= w->opts.queue_max)
        rc = IOT_EFULL;
    else {
        w->ring[(w->head + w->count) % w->opts.queue_max] = job;
        w->count++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* Runs one job inside its savepoint. */
static int process_job(struct writer *w, struct write_job *job)
{
    int rc;
    if (job->packet_id[0]) {
        rc = store_packet_get(w->store, job->device_id, job->packet_id,
                              job->received_at - w->opts.packet_window_ms, &job->stored_response);
        if (rc == 0) {
            job->status = WRITE_DUPLICATE;
            return 0;
        }
        if (rc != IOT_ENOTFOUND) return rc;
    }
    if (job->nreadings == 0) {
        job->status = WRITE_NOTHING;
        return 0;
    }
    if ((rc = router_apply(w->router, w->store, job))) return rc;
    if (job->packet_id[0] &&
        (rc = store_packet_put(w->store, job->device_id, job->packet_id, job->response,
                               job->received_at, job->received_at - w->opts.packet_window_ms)))
        return rc;
    if (job->device_id && (rc = store_device_touch(w->store, job->device_id, job->received_at)))
        return rc;
    job->status = WRITE_STORED;
    return 0;
}

static void publish(struct writer *w, struct write_job *job, uint64_t *published)
{
    if (!w->broker) return;
    for (size_t i = 0; i < job->nreadings; i++) {
        const struct write_reading *r = &job->readings[i];
        if (r->late || r->cls != CLASS_NORMAL) continue;
        struct broker_reading m;
        memset(&m, 0, sizeof m);
        m.sensor_id = r->sensor_id;
        memcpy(m.sensor_uuid, r->sensor_uuid, sizeof m.sensor_uuid);
        memcpy(m.device_uuid, r->device_uuid, sizeof m.device_uuid);
        m.value = r->value;
        m.ts_ms = r->ts;
        memcpy(m.cls, "normal", 7);
        broker_publish(w->broker, &m);
        (*published)++;
    }
}

static void fail_job(struct write_job *job, int rc)
{
    free(job->stored_response);
    job->stored_response = NULL;
    job->status = WRITE_FAILED;
    job->err = rc;
}

/* One transaction for the batch; each job in its own savepoint. */
static void run_batch(struct writer *w, size_t n)
{
    int64_t t0 = clock_mono_us();
    int rc = store_tx_begin(w->store);
    if (!rc) rc = router_begin_tx(w->router, w->store);
    for (size_t i = 0; i < n && !rc; i++) {
        struct write_job *job = w->batch[i];
        if ((rc = store_savepoint(w->store))) break;
        int jrc = process_job(w, job);
        if (jrc == 0) {
            if (!(rc = store_savepoint_release(w->store))) router_packet_done(w->router);
            continue;
        }
        LOG(LOG_WARN, "packet_failed", "err=\"%s\" db=\"%s\"", iot_strerror(jrc),
            store_errmsg(w->store));
        fail_job(job, jrc);
        rc = store_savepoint_rollback(w->store);
        router_abort_packet(w->router);
    }
    if (!rc) rc = store_tx_commit(w->store);
    if (rc) {
        LOG(LOG_WARN, "commit_failed", "err=\"%s\" db=\"%s\" jobs=%zu", iot_strerror(rc),
            store_errmsg(w->store), n);
        store_tx_rollback(w->store);
    }
    router_end_tx(w->router, rc == 0);
    int64_t elapsed_us = clock_mono_us() - t0;

    uint64_t published = 0, dups = 0;
    for (size_t i = 0; i < n; i++) {
        struct write_job *job = w->batch[i];
        if (rc && job->status != WRITE_FAILED) fail_job(job, rc);
        if (job->status == WRITE_STORED) publish(w, job, &published);
        dups += job->status == WRITE_DUPLICATE;
    }
    pthread_mutex_lock(&w->mu);
    w->stats.jobs += n;
    w->stats.duplicates += dups;
    w->stats.published += published;
    if (rc)
        w->stats.commit_failures++;
    else {
        w->stats.commits++;
        w->stats.batch_jobs_sum += n;
        w->stats.commit_us_sum += (uint64_t)elapsed_us;
        observe(w->stats.commit_lat, writer_lat_bounds, WRITER_LAT_BUCKETS,
                (double)elapsed_us / 1e6);
        observe(w->stats.batch_size, writer_batch_bounds, WRITER_BATCH_BUCKETS, (double)n);
    }
    router_stats(w->router, &w->stats.router);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < n; i++)
        w->batch[i]->done(w->batch[i], w->batch[i]->done_ud);
}

/* Forgets packet ids past the window, at most once a minute, in its own transaction. */
static void maybe_purge(struct writer *w)
{
    int64_t now = clock_mono_ms();
    if (now < w->next_purge) return;
    w->next_purge = now + PURGE_EVERY_MS;
    int rc = store_packets_purge(w->store, clock_now_ms() - w->opts.packet_window_ms);
    if (rc)
        LOG(LOG_WARN, "packet_purge_failed", "err=\"%s\" db=\"%s\"", iot_strerror(rc),
            store_errmsg(w->store));
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->count == 0 && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->count == 0 && w->stopping) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        size_t n = 0;
        while (w->count > 0 && n < w->opts.batch_max) {
            w->batch[n++] = w->ring[w->head];
            w->head = (w->head + 1) % w->opts.queue_max;
            w->count--;
        }
        pthread_mutex_unlock(&w->mu);
        run_batch(w, n);
        maybe_purge(w);
    }
    return NULL;
}

int writer_start(struct writer *w)
{
    w->next_purge = clock_mono_ms();
    if (pthread_create(&w->thread, NULL, writer_main, w)) return IOT_EIO;
    w->started = 1;
    return 0;
}

void writer_stop(struct writer *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->started) {
        pthread_join(w->thread, NULL);
        w->started = 0;
    }
}

void writer_destroy(struct writer *w)
{
    if (!w) return;
    writer_stop(w);
    router_destroy(w->router);
    store_close(w->store);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->ring);
    free(w->batch);
    free(w);
}

void writer_get_stats(struct writer *w, struct writer_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    out->queue_depth = w->count;
    pthread_mutex_unlock(&w->mu);
}
