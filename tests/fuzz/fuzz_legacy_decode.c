/*
 * Fuzzes legacy_decode, both forms: POST /ingest/readings (one reading,
 * {"sensor_id","value","timestamp"?}) and /ingest/readings/bulk
 * ({"readings":[...]}). Every input is decoded both ways.
 *
 * Invariants: no read past the body, no leak; failure is IOT_EINVAL with a
 * known code and a non-empty detail (or IOT_ENOMEM; the detail may quote
 * non-UTF-8 body bytes, which reply.c replaces); success gives
 * exactly one reading (single) or 1..max (bulk), sensor ids that are 0 or a
 * positive integer no larger than 2^53, finite values, timestamps in range.
 */
#include "core/err.h"
#include "ingest/packet_decode.h"

#include "fuzz_util.h"

#include <math.h>

#define MAX_READINGS 64
#define TS_MIN       (-62135596800000LL)
#define TS_MAX       253402300799999LL

static void decode(const uint8_t *data, size_t size, int bulk)
{
    struct decoded_packet p;
    char detail[256] = "";
    const char *code = NULL;
    int rc = legacy_decode((const char *)data, size, bulk, MAX_READINGS, &p, detail, sizeof detail,
                           &code);
    if (rc == IOT_ENOMEM) return;
    if (rc) {
        FUZZ_CHECK(rc == IOT_EINVAL, "rc %d (bulk %d)", rc, bulk);
        FUZZ_CHECK(code && (strcmp(code, DECODE_INVALID_JSON) == 0 ||
                            strcmp(code, DECODE_INVALID_REQUEST) == 0),
                   "code %s", code ? code : "(null)");
        FUZZ_CHECK(detail[0] != '\0', "empty detail");
        FUZZ_CHECK(p.readings == NULL && p.n == 0, "readings left after a failure");
        return;
    }
    FUZZ_CHECK(p.readings && p.n >= 1 && p.n <= (bulk ? MAX_READINGS : 1), "n = %zu (bulk %d)", p.n,
               bulk);
    FUZZ_CHECK(p.device_uuid[0] == '\0' && p.packet_id[0] == '\0', "legacy packet has a device");
    for (size_t i = 0; i < p.n; i++) {
        const struct decoded_reading *r = &p.readings[i];
        FUZZ_CHECK(r->index == (int)i, "index %d at %zu", r->index, i);
        FUZZ_CHECK(r->sensor_id >= 0 && r->sensor_id <= 9007199254740992LL, "sensor_id %lld",
                   (long long)r->sensor_id);
        FUZZ_CHECK(!r->uuid_ok, "legacy reading with a uuid");
        if (r->value_ok) FUZZ_CHECK(isfinite(r->value), "value %g", r->value);
        if (r->ts_state == TS_OK)
            FUZZ_CHECK(r->ts >= TS_MIN && r->ts <= TS_MAX, "ts %lld", (long long)r->ts);
    }
    decoded_packet_fini(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode(data, size, 0);
    decode(data, size, 1);
    return 0;
}
