/*
 * The wire format of a published reading (docs/broker.md): one JSON object
 * per message, the same for every engine, so that consumers in any language
 * can read it:
 *
 *   {"v":1,"sensor_id":42,"sensor_uuid":"...","device_uuid":"...",
 *    "value":21.5,"ts":"2026-11-27T17:00:00.123Z","ts_ms":1795798800123,
 *    "class":"normal"}
 *
 * plus the message id "<sensor_id>-<ts_ms>" that engines with de-duplication
 * carry beside it (NATS: the Nats-Msg-Id header).
 */
#ifndef IOT_BROKER_MSG_H
#define IOT_BROKER_MSG_H

#include "broker/broker.h"

#include <stddef.h>

#define BROKER_MSG_VERSION 1
/* Longest message id: two int64 and a dash, plus the NUL. */
#define BROKER_MSG_ID_LEN 48

/*
 * Encodes r as JSON. *out is malloc'ed (caller frees), NUL-terminated, its
 * length in *len. Returns 0, IOT_EINVAL (NULL argument, non-finite value) or
 * IOT_ENOMEM.
 */
int broker_msg_encode(const struct broker_reading *r, char **out, size_t *len);

/*
 * Decodes one message (len bytes, need not be NUL-terminated). Requires
 * sensor_id, value (finite) and ts_ms; sensor_uuid, device_uuid and class
 * are copied when present (empty otherwise, truncated never: too long is an
 * error). Unknown fields are ignored. Returns 0 or IOT_EINVAL.
 */
int broker_msg_decode(const char *data, size_t len, struct broker_reading *out);

/* Writes the message id "<sensor_id>-<ts_ms>" into out. */
void broker_msg_id(const struct broker_reading *r, char out[BROKER_MSG_ID_LEN]);

#endif
