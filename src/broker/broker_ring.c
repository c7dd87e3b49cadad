#include "broker/broker_ring.h"
#include "core/err.h"

#include <stdlib.h>

int broker_ring_init(struct broker_ring *r, size_t cap)
{
    r->slot = NULL;
    r->cap = r->head = r->count = 0;
    if (cap == 0) return IOT_EINVAL;
    /* calloc of this size maps fresh zero pages: nothing is touched yet */
    if (!(r->slot = calloc(cap, sizeof *r->slot))) return IOT_ENOMEM;
    r->cap = cap;
    return 0;
}

void broker_ring_fini(struct broker_ring *r)
{
    if (!r) return;
    free(r->slot);
    r->slot = NULL;
    r->cap = r->head = r->count = 0;
}
