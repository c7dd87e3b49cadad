/*
 * A store connection shared by several threads (the HTTP workers' reads:
 * resolver misses, status queries, health pings), serialised by a mutex.
 */
#ifndef IOT_STORE_SHARED_H
#define IOT_STORE_SHARED_H

#include "store/store.h"

#include <pthread.h>

struct store_shared {
    pthread_mutex_t mu;
    struct store *s;
};

/* Takes ownership of s. */
void store_shared_init(struct store_shared *sh, struct store *s);
void store_shared_fini(struct store_shared *sh); /* closes the store */

static inline struct store *store_shared_acquire(struct store_shared *sh)
{
    pthread_mutex_lock(&sh->mu);
    return sh->s;
}
static inline void store_shared_release(struct store_shared *sh)
{
    pthread_mutex_unlock(&sh->mu);
}

#endif
