#include "ingest/writer.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PURGE_EVERY_MS 60000
/* Broker messages handed over per call: one lock per chunk, 256 x 176 bytes. */
#define WRITER_PUB_CHUNK 256

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

    struct write_job **batch; /* writer-thread only: the jobs of the batch */
    struct write_job **apply; /* writer-thread only: those the fast pass stores */
    struct broker_reading pub[WRITER_PUB_CHUNK]; /* writer-thread only: for the broker */
    size_t npub;
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
    w->apply = calloc(opts->batch_max, sizeof *w->apply);
    if (!w->ring || !w->batch || !w->apply) {
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

/* Looks job's packet_id up in the store; 1 (duplicate), 0 (new) or an error. */
static int packet_seen(struct writer *w, struct write_job *job)
{
    if (!job->packet_id[0]) return 0;
    int rc = store_packet_get(w->store, job->device_id, job->packet_id,
                              job->received_at - w->opts.packet_window_ms, &job->stored_response);
    if (rc == 0) {
        job->status = WRITE_DUPLICATE;
        return 1;
    }
    return rc == IOT_ENOTFOUND ? 0 : rc;
}

/* Remembers the answer of a stored job under its packet_id. */
static int packet_remember(struct writer *w, const struct write_job *job)
{
    if (!job->packet_id[0]) return 0;
    return store_packet_put(w->store, job->device_id, job->packet_id, job->response,
                            job->received_at, job->received_at - w->opts.packet_window_ms);
}

/* Runs one job inside its savepoint (the isolating pass). */
static int process_job(struct writer *w, struct write_job *job)
{
    int rc = packet_seen(w, job);
    if (rc) return rc < 0 ? rc : 0;
    if (job->nreadings == 0) {
        job->status = WRITE_NOTHING;
        return 0;
    }
    if ((rc = router_apply(w->router, w->store, &job, 1))) return rc;
    if ((rc = packet_remember(w, job))) return rc;
    if (job->device_id && (rc = store_device_touch(w->store, job->device_id, job->received_at)))
        return rc;
    job->status = WRITE_STORED;
    return 0;
}

/*
 * An earlier job of the batch that job repeats (same device and packet_id)
 * and that will be stored or is itself a duplicate, or NULL.
 */
static struct write_job *batch_original(struct writer *w, size_t upto, const struct write_job *job)
{
    if (!job->packet_id[0]) return NULL;
    for (size_t i = 0; i < upto; i++) {
        struct write_job *o = w->batch[i];
        if ((o->status == WRITE_STORED || o->status == WRITE_DUPLICATE) &&
            o->device_id == job->device_id && strcmp(o->packet_id, job->packet_id) == 0)
            return o;
    }
    return NULL;
}

/* Touches each device of the stored jobs once, with its newest receive time. */
static int touch_devices(struct writer *w, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int64_t dev = w->apply[i]->device_id, newest = w->apply[i]->received_at;
        size_t k = 0;
        while (k < i && w->apply[k]->device_id != dev)
            k++;
        if (!dev || k < i) continue; /* legacy job, or touched at its first job */
        for (k = i + 1; k < n; k++)
            if (w->apply[k]->device_id == dev && w->apply[k]->received_at > newest)
                newest = w->apply[k]->received_at;
        rc = store_device_touch(w->store, dev, newest);
    }
    return rc;
}

/*
 * The batch as one unit, without savepoints (the fast pass): duplicates are
 * sorted out first (the store's and the batch's own), then every job to
 * store goes through one router_apply, the packet ids are remembered and
 * each device is touched once. Sets each job's status; on failure the
 * caller rolls the whole transaction back and resets them.
 */
static int apply_batch(struct writer *w, size_t n)
{
    size_t napply = 0;
    for (size_t i = 0; i < n; i++) {
        struct write_job *job = w->batch[i];
        struct write_job *orig = batch_original(w, i, job);
        if (orig) {
            const char *answer =
                orig->status == WRITE_STORED ? orig->response : orig->stored_response;
            if (!(job->stored_response = strdup(answer))) return IOT_ENOMEM;
            job->status = WRITE_DUPLICATE;
            continue;
        }
        int rc = packet_seen(w, job);
        if (rc < 0) return rc;
        if (rc) continue;
        if (job->nreadings == 0) {
            job->status = WRITE_NOTHING;
            continue;
        }
        job->status = WRITE_STORED; /* if the transaction commits */
        w->apply[napply++] = job;
    }
    if (napply == 0) return 0;
    int rc = router_apply(w->router, w->store, w->apply, napply);
    for (size_t i = 0; i < napply && !rc; i++)
        rc = packet_remember(w, w->apply[i]);
    if (!rc) rc = touch_devices(w, napply);
    if (!rc) router_packet_done(w->router);
    return rc;
}

/* Hands the messages gathered so far to the broker in one call. */
static void publish_flush(struct writer *w)
{
    if (w->npub) broker_publish_batch(w->broker, w->pub, w->npub);
    w->npub = 0;
}

/* publish() copies the uuid buffers whole: the broker's must be the write job's size. */
#define SAME_SIZE(a, b) (sizeof(a) == sizeof(b))
_Static_assert(SAME_SIZE(((struct broker_reading *)0)->sensor_uuid,
                         ((struct write_reading *)0)->sensor_uuid),
               "broker_reading.sensor_uuid and write_reading.sensor_uuid differ in size");
_Static_assert(SAME_SIZE(((struct broker_reading *)0)->device_uuid,
                         ((struct write_reading *)0)->device_uuid),
               "broker_reading.device_uuid and write_reading.device_uuid differ in size");
#undef SAME_SIZE

/* Gathers job's normal, non-late readings for the broker (WRITER_PUB_CHUNK per call). */
static void publish(struct writer *w, struct write_job *job, uint64_t *published)
{
    if (!w->broker) return;
    for (size_t i = 0; i < job->nreadings; i++) {
        const struct write_reading *r = &job->readings[i];
        if (r->late || r->cls != CLASS_NORMAL) continue;
        if (w->npub == WRITER_PUB_CHUNK) publish_flush(w);
        struct broker_reading *m = &w->pub[w->npub++];
        memset(m, 0, sizeof *m);
        m->sensor_id = r->sensor_id;
        memcpy(m->sensor_uuid, r->sensor_uuid, sizeof m->sensor_uuid);
        memcpy(m->device_uuid, r->device_uuid, sizeof m->device_uuid);
        m->value = r->value;
        m->ts_ms = r->ts;
        memcpy(m->cls, "normal", 7);
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

static void reset_job(struct write_job *job)
{
    free(job->stored_response);
    job->stored_response = NULL;
    job->status = WRITE_PENDING;
    job->err = 0;
}

/* The fast pass in one transaction: 0 once committed, else rolled back. */
static int run_fast(struct writer *w, size_t n)
{
    int rc = store_tx_begin(w->store);
    if (!rc) rc = router_begin_tx(w->router, w->store);
    if (!rc) rc = apply_batch(w, n);
    if (!rc) rc = store_tx_commit(w->store);
    if (rc) {
        LOG(LOG_WARN, "batch_failed", "err=\"%s\" db=\"%s\" jobs=%zu", iot_strerror(rc),
            store_errmsg(w->store), n);
        store_tx_rollback(w->store);
        router_abort_packet(w->router);
    }
    router_end_tx(w->router, rc == 0);
    return rc;
}

/*
 * The isolating pass: one transaction, each job in its own savepoint, so a
 * job that fails is rolled back alone and never half-stored. Returns the
 * transaction's result (a failed job sets only its own status).
 */
static int run_isolated(struct writer *w, size_t n)
{
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
    return rc;
}

/*
 * One transaction for the batch. The fast pass stores it whole with one
 * call per table; if anything in it fails, the transaction is rolled back
 * and the batch runs again in the isolating pass, so the packet at fault
 * fails alone and its neighbours are stored. A lost connection fails the
 * batch at once: a second pass could not do better.
 */
static void run_batch(struct writer *w, size_t n)
{
    int64_t t0 = clock_mono_us();
    int rc = run_fast(w, n);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            reset_job(w->batch[i]);
        if (rc != IOT_EUNAVAIL) rc = run_isolated(w, n);
    }
    int64_t elapsed_us = clock_mono_us() - t0;

    uint64_t published = 0, dups = 0;
    for (size_t i = 0; i < n; i++) {
        struct write_job *job = w->batch[i];
        if (rc && job->status != WRITE_FAILED) fail_job(job, rc);
        if (job->status == WRITE_STORED) publish(w, job, &published);
        dups += job->status == WRITE_DUPLICATE;
    }
    if (w->broker) publish_flush(w);
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
    free(w->apply);
    free(w);
}

void writer_get_stats(struct writer *w, struct writer_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    out->queue_depth = w->count;
    pthread_mutex_unlock(&w->mu);
}
