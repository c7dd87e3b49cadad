#include "store/store_maintainer.h"
#include "core/err.h"
#include "core/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct store_maintainer {
    struct store *s;
    int64_t every_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    int running; /* the thread was started and not yet joined (owner's thread only) */
};

static void pass(struct store_maintainer *m)
{
    int rc = store_maintain(m->s);
    if (rc)
        LOG(LOG_WARN, "store_maintain_failed", "err=\"%s\" db=\"%s\"", iot_strerror(rc),
            store_errmsg(m->s));
}

static void *main_loop(void *arg)
{
    struct store_maintainer *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += m->every_ms / 1000;
        until.tv_nsec += (m->every_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&m->cv, &m->mu, &until);
        if (m->stopping) break;
        pthread_mutex_unlock(&m->mu);
        pass(m);
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

int store_maintainer_create(struct store *s, int64_t every_ms, struct store_maintainer **out)
{
    struct store_maintainer *m = calloc(1, sizeof *m);
    if (!m) {
        store_close(s);
        return IOT_ENOMEM;
    }
    m->s = s;
    m->every_ms = every_ms > 0 ? every_ms : 1;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    *out = m;
    return 0;
}

int store_maintainer_start(struct store_maintainer *m, char *err, size_t errlen)
{
    m->stopping = 0;
    int e = pthread_create(&m->thread, NULL, main_loop, m);
    if (e) {
        iot_set_err(err, errlen, "cannot create its thread: %s", strerror(e));
        return IOT_EIO;
    }
    m->running = 1;
    return 0;
}

void store_maintainer_stop(struct store_maintainer *m)
{
    if (!m || !m->running) return;
    pthread_mutex_lock(&m->mu);
    m->stopping = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    m->running = 0;
    pass(m); /* leave the WAL checkpointed for the next start or a backup */
}

void store_maintainer_destroy(struct store_maintainer *m)
{
    if (!m) return;
    store_maintainer_stop(m);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    store_close(m->s);
    free(m);
}
