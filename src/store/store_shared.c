#include "store/store_shared.h"

void store_shared_init(struct store_shared *sh, struct store *s)
{
    pthread_mutex_init(&sh->mu, NULL);
    sh->s = s;
}

void store_shared_fini(struct store_shared *sh)
{
    store_close(sh->s);
    sh->s = NULL;
    pthread_mutex_destroy(&sh->mu);
}
