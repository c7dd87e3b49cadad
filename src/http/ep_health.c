/* GET /health: liveness plus the state of the database and the broker. */
#include "http/http_int.h"

int ep_health(struct request *rq)
{
    struct http_server *s = rq->srv;
    struct store *db = store_shared_acquire(s->d.db);
    int db_ok = store_ping(db) == 0;
    store_shared_release(s->d.db);
    const char *broker = s->d.broker ? broker_health_name(broker_health(s->d.broker)) : "disabled";
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "status", db_ok ? "ok" : "error", "db",
                             db_ok ? "ok" : "error", "broker", broker, "version", IOT_VERSION);
    return reply_json(rq, db_ok ? 200 : 503, body);
}
