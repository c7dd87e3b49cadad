/*
 * A thread that runs store_maintain on a connection of its own, every
 * interval: on SQLite it checkpoints the WAL, so that checkpoints (and their
 * fsyncs) never run inside the writer's commit on the request path.
 */
#ifndef IOT_STORE_MAINTAINER_H
#define IOT_STORE_MAINTAINER_H

#include "store/store.h"

#include <stdint.h>

struct store_maintainer;

/*
 * Takes ownership of s (closed by stop, also on failure). Returns 0, or
 * IOT_ENOMEM/IOT_EIO with the reason (which call failed, and its error) in err.
 */
int store_maintainer_start(struct store *s, int64_t every_ms, struct store_maintainer **out,
                           char *err, size_t errlen);
/* Runs a last pass, stops the thread, closes the store. Accepts NULL. */
void store_maintainer_stop(struct store_maintainer *m);

#endif
