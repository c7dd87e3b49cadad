/*
 * TLS for the transports (SPEC §13): the server's certificate and key,
 * reloaded on SIGHUP without dropping connections, and the devices' client
 * certificates, verified against TLS_CLIENT_CA_FILE and read for the
 * device they name. GnuTLS, the library libmicrohttpd terminates TLS with.
 *
 * A transport hands its GnuTLS credentials tls_keys_retrieve as the
 * certificate callback; each handshake then takes the pair current at that
 * moment. A reload swaps the current pair; a replaced pair is kept until
 * TLS_RETIRE_MS after its replacement (a handshake that took it has ended by
 * then: every transport bounds a connection's idle time far below that) and
 * freed by a later reload or by tls_keys_destroy, so reloads leave at most
 * TLS_RETIRED_MAX pairs behind. GnuTLS's callback has no user pointer: one
 * tls_keys exists per process (tls_keys_create refuses a second).
 *
 * Thread safety: tls_keys_retrieve, tls_keys_peer_device and
 * tls_keys_reload may be called from any thread at once.
 */
#ifndef IOT_TLS_KEYS_H
#define IOT_TLS_KEYS_H

#include "core/config.h"

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <stddef.h>

#define TLS_RETIRE_MS   (15 * 60 * 1000)
#define TLS_RETIRED_MAX 8

/*
 * TLS 1.2 and 1.3 only, ECDHE key exchange, AEAD ciphers: what SPEC §13
 * calls modern. GnuTLS has no TLS compression and the transports never
 * renegotiate. AES-GCM first: with AES-NI it costs a fraction of
 * ChaCha20-Poly1305, which nettle runs in plain C here (perf: 6% of the
 * gateway's CPU under HTTPS load when ChaCha20 came first).
 */
#define TLS_PRIORITIES                                                                             \
    "SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-RSA:-DHE-RSA:-CIPHER-ALL:+AES-128-GCM:"        \
    "+AES-256-GCM:+CHACHA20-POLY1305:%SERVER_PRECEDENCE"

enum tls_client_auth { TLS_CLIENT_OFF, TLS_CLIENT_OPTIONAL, TLS_CLIENT_REQUIRED };

struct tls_keys;

/*
 * Loads TLS_CERT_FILE, TLS_KEY_FILE and TLS_CLIENT_CA_FILE (when set).
 * *out is NULL when TLS is off (no certificate configured). 0, or
 * IOT_EINVAL/IOT_EIO/IOT_ENOMEM with the reason in err.
 */
int tls_keys_create(const struct config *cfg, struct tls_keys **out, char *err, size_t errlen);
void tls_keys_destroy(struct tls_keys *k); /* accepts NULL */

/* Reads both files again; on any error the current pair stays and err says why. */
int tls_keys_reload(struct tls_keys *k, char *err, size_t errlen);

/* The gnutls_certificate_retrieve_function2 of every transport's credentials. */
int tls_keys_retrieve(gnutls_session_t s, const gnutls_datum_t *req_ca, int nreq,
                      const gnutls_pk_algorithm_t *pk, int npk, gnutls_pcert_st **pcert,
                      unsigned int *npcert, gnutls_privkey_t *key);

/*
 * A server session for a transport that does its own I/O (MQTT): the
 * pair's callback, TLS_PRIORITIES, and a request for the client's
 * certificate when TLS_CLIENT_AUTH is on. The caller sets the transport
 * functions and owns the session (gnutls_deinit). 0 or IOT_ENOMEM.
 */
int tls_keys_session_new(struct tls_keys *k, gnutls_session_t *out);

/* The client CA file's PEM text (NULL when client certificates are off), for the transports. */
const char *tls_keys_client_ca_pem(const struct tls_keys *k);
enum tls_client_auth tls_keys_client_auth(const struct tls_keys *k);

/*
 * The device a session's client certificate names: its SAN URI
 * urn:device:<uuid>, else its subject CN. 0 with the uuid in out;
 * IOT_ENOTFOUND when the client sent no certificate (or client certificates
 * are off); IOT_EINVAL when the certificate is refused (not issued by the
 * client CA, expired, not yet valid, not for client authentication, or
 * naming no valid device uuid), *why saying which.
 */
int tls_keys_peer_device(struct tls_keys *k, gnutls_session_t s, char *out, size_t cap,
                         const char **why);

#endif
