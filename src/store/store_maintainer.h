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
 * Builds the maintainer without starting its thread. Takes ownership of s
 * (closed by store_maintainer_destroy, also on failure). Returns 0 or IOT_ENOMEM.
 */
int store_maintainer_create(struct store *s, int64_t every_ms, struct store_maintainer **out);
/* Starts the thread. Returns 0, or IOT_EIO with the reason in err. */
int store_maintainer_start(struct store_maintainer *m, char *err, size_t errlen);
/* Stops the thread and runs a last pass. Accepts NULL, a maintainer never started, twice. */
void store_maintainer_stop(struct store_maintainer *m);
/* Stops it if running, closes the store, frees. Accepts NULL. */
void store_maintainer_destroy(struct store_maintainer *m);

#endif
