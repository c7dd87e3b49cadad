/*
 * Cost of packet_decode per packet, without HTTP or a database.
 *
 * Usage: build/bench/decode_bench [PACKETS [EMIT_FILE]]
 *   PACKETS    decodes per round (default 200000); the best of 5 rounds is
 *              reported, in ns per packet
 *   EMIT_FILE  bodies written by bench/gen_bodies.sh (HEADER<TAB>KEY<TAB>BODY
 *              per line), decoded in turn; default: one built-in body of the
 *              standard workload (10 readings, 627 bytes, no timestamps)
 *
 * Instruction counts, steadier than time on a shared machine:
 *   valgrind --tool=callgrind --toggle-collect=packet_decode \
 *       build/bench/decode_bench 1000
 * and divide the Ir total by 1000 (`make bench-decode` prints both).
 */
#include "core/err.h"
#include "ingest/packet_decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char builtin[] = "{\"device_uuid\":\"sim-8513163f-d000001\",\"readings\":["
                              "{\"sensor_uuid\":\"sim-8513163f-d000001-s001\",\"value\":19.88},"
                              "{\"sensor_uuid\":\"sim-8513163f-d000001-s002\",\"value\":58.0},"
                              "{\"sensor_uuid\":\"sim-8513163f-d000001-s003\",\"value\":561},"
                              "{\"sensor_uuid\":\"sim-8513163f-d000001-s004\",\"value\":1015.6},"
                              "{\"sensor_uuid\":\"sim-8513163f-d000001-s005\",\"value\":3.559},"
                              "{\"sensor_uuid\":\"sim-8513163f-d000001-s006\",\"value\":19.50},"
                              "{\"sensor_uuid\":\"sim-8513163f-d000001-s007\",\"value\":49.3},"
                              "{\"sensor_uuid\":\"sim-8513163f-d000001-s008\",\"value\":652},"
                              "{\"sensor_uuid\":\"sim-8513163f-d000001-s009\",\"value\":1012.0},"
                              "{\"sensor_uuid\":\"sim-8513163f-d000001-s010\",\"value\":3.611}]}";

struct body {
    char *text;
    size_t len;
};

/* Reads the third TAB-separated field of every line; returns the count. */
static size_t load(const char *path, struct body **out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(2);
    }
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    struct body *b = NULL;
    while ((got = getline(&line, &lcap, f)) > 0) {
        char *t = strchr(line, '\t');
        t = t ? strchr(t + 1, '\t') : NULL;
        if (!t) continue;
        t++;
        size_t len = strcspn(t, "\n");
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            b = realloc(b, cap * sizeof *b);
            if (!b) exit(2);
        }
        b[n].text = strndup(t, len);
        b[n].len = len;
        if (!b[n].text) exit(2);
        n++;
    }
    free(line);
    fclose(f);
    *out = b;
    return n;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long packets = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
    struct body one = {(char *)builtin, sizeof builtin - 1};
    struct body *bodies = &one;
    size_t nb = 1;
    if (argc > 2) nb = load(argv[2], &bodies);
    if (packets < 1 || nb == 0) {
        fprintf(stderr, "usage: %s [PACKETS [EMIT_FILE]]\n", argv[0]);
        return 2;
    }
    size_t readings = 0, bytes = 0;
    double best = 0;
    for (int round = 0; round < 5; round++) {
        double t0 = now_ns();
        for (long i = 0; i < packets; i++) {
            const struct body *b = &bodies[(size_t)i % nb];
            struct decoded_packet p;
            char detail[256];
            const char *code;
            if (packet_decode(b->text, b->len, 1000, &p, detail, sizeof detail, &code)) {
                fprintf(stderr, "body %zu: %s\n", (size_t)i % nb, detail);
                return 1;
            }
            if (round == 0) {
                readings += p.n;
                bytes += b->len;
            }
            decoded_packet_fini(&p);
        }
        double ns = (now_ns() - t0) / (double)packets;
        if (round == 0 || ns < best) best = ns;
    }
    printf("packet_decode: %.0f ns/packet (best of 5 x %ld; %.1f readings, %.0f bytes "
           "per packet)\n",
           best, packets, (double)readings / (double)packets, (double)bytes / (double)packets);
    return 0;
}
