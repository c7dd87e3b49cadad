/*
 * libmicrohttpd's own ceiling on the benchmark's requests: a server built with
 * the gateway's daemon flags and options (epoll, internal thread pool, turbo,
 * suspend/resume) that reads each POST body and answers 204, nothing else.
 *
 *   mhd204 PORT THREADS direct     answers from the request callback
 *   mhd204 PORT THREADS suspend    parks each request (MHD_suspend_connection)
 *                                  and lets one "writer" thread answer the
 *                                  parked ones in batches, as the gateway's
 *                                  writer does after a commit
 *
 * The gap between nginx and "direct" is the library's share of the gateway's
 * HTTP cost; the gap between "direct" and "suspend" is the cost of answering
 * after a commit on another thread. Runs until SIGTERM. Bench-only code.
 */
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct parked {
    struct MHD_Connection *c;
    struct parked *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct parked *queue; /* parked requests, newest first */
static struct MHD_Response *empty;
static int suspend_mode;

/* The stand-in writer: takes every parked request at once and resumes them. */
static void *writer(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!queue)
            pthread_cond_wait(&cv, &mu);
        struct parked *batch = queue;
        queue = NULL;
        pthread_mutex_unlock(&mu);
        while (batch) {
            struct parked *p = batch;
            batch = p->next;
            MHD_resume_connection(p->c);
            free(p);
        }
    }
    return NULL;
}

/* *ctx: NULL on the first call, 1 once the body was read, 2 once parked. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **ctx)
{
    (void)cls, (void)url, (void)method, (void)version, (void)data;
    static int seen, read_all, parked;
    if (*ctx == NULL) {
        *ctx = &seen;
        return MHD_YES;
    }
    if (*size) { /* a chunk of the body: discard it */
        *size = 0;
        return MHD_YES;
    }
    if (suspend_mode && *ctx == &seen) {
        struct parked *p = malloc(sizeof *p);
        if (!p) return MHD_NO;
        *ctx = &parked;
        p->c = c;
        MHD_suspend_connection(c);
        pthread_mutex_lock(&mu);
        int wake = queue == NULL;
        p->next = queue;
        queue = p;
        pthread_mutex_unlock(&mu);
        if (wake) pthread_cond_signal(&cv);
        return MHD_YES;
    }
    *ctx = &read_all;
    return MHD_queue_response(c, MHD_HTTP_NO_CONTENT, empty);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: mhd204 PORT THREADS direct|suspend\n");
        return 2;
    }
    suspend_mode = strcmp(argv[3], "suspend") == 0;
    empty = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO |
                     (getenv("MHD_POLL") ? MHD_USE_POLL : MHD_USE_EPOLL);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)atoi(argv[1]), NULL, NULL, on_request, NULL, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)atoi(argv[2]), MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_CONNECTION_TIMEOUT,
        30u, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        1024u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "mhd204: cannot listen on port %s\n", argv[1]);
        return 1;
    }
    pthread_t t;
    if (suspend_mode && pthread_create(&t, NULL, writer, NULL) != 0) return 1;
    sigset_t set;
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}
