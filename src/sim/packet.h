/*
 * Packet bodies for POST /ingest/packets, as a device would send them:
 * {"device_uuid", "packet_id"?, "readings":[{"sensor_uuid","value","ts"?}]}.
 * A device samples its sensors round robin; the readings of one packet are
 * 1 ms apart, newest last. A fraction of readings are sent late: with a
 * time before their sensor's newest, as a device that flushes a buffer
 * after a network outage would.
 */
#ifndef IOT_SIM_PACKET_H
#define IOT_SIM_PACKET_H

#include "core/buf.h"
#include "sim/fleet.h"
#include "sim/rng.h"
#include "sim/signal.h"

#include <stdint.h>
#include <zlib.h>

struct sim_packet_opts {
    size_t readings;      /* per packet; 0 = one per sensor of the device */
    double late_fraction; /* 0..1 */
    int timestamps;       /* 1: each reading carries "ts"; 0: the gateway stamps them */
    int packet_ids;       /* 1: each packet carries a unique "packet_id" */
    struct sim_signal_opts sig;
};

/* What the generator put in the packets (the gateway's verdict may differ). */
struct sim_packet_stats {
    uint64_t packets, readings, late, spikes, warnings, criticals;
};

/*
 * Replaces out's content with the next packet of device d at time now_ms
 * (UTC ms); seq makes the packet_id unique within a run. Adds to *st.
 * 0 or IOT_ENOMEM.
 */
int sim_packet_build(struct sim_device *d, const struct sim_packet_opts *o, struct sim_rng *r,
                     int64_t now_ms, uint64_t seq, struct buf *out, struct sim_packet_stats *st);

/*
 * A gzip encoder kept from one packet to the next: set up at its first use,
 * reset (deflateReset, same bytes as a fresh one) for each later one.
 * Zero-initialised; sim_gzipper_fini frees it.
 */
struct sim_gzipper {
    z_stream z;
    int ready; /* z is set up */
};

/*
 * Replaces out's content with the gzip encoding of in[0..n), with g's
 * encoder. 0, IOT_ENOMEM or IOT_EIO.
 */
int sim_gzipper_run(struct sim_gzipper *g, const char *in, size_t n, struct buf *out);
/* Frees g's encoder; g can be used again. Accepts a zeroed g. */
void sim_gzipper_fini(struct sim_gzipper *g);

/* The same, one-shot. 0, IOT_ENOMEM or IOT_EIO. */
int sim_gzip(const char *in, size_t n, struct buf *out);

#endif
