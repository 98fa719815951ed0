/* The PostgreSQL backend's SQL: the schema and every statement the
 * connections prepare, by id (postgres_int.h).
 *
 * What it relies on, chosen so that PostgreSQL-compatible distributed
 * databases (CockroachDB, YugabyteDB) accept it too: plain tables with
 * primary keys and secondary indexes (no partial or expression indexes,
 * no triggers, no stored procedures, no sequences), BIGINT, TEXT
 * (COLLATE "C": ids and names compare as bytes, as in SQLite) and BYTEA,
 * INSERT ... ON CONFLICT ... DO UPDATE ... WHERE, row-value comparison
 * for keyset pages, data-modifying WITH (UPDATE/INSERT ... RETURNING),
 * SELECT ... FOR UPDATE, GREATEST, savepoints, REPEATABLE READ read-only
 * transactions, prepared statements with binary parameters and results,
 * and (interim, single owner) a session-level pg_try_advisory_lock. */
#include "postgres_int.h"

#define SAGA_COLS                                                                                  \
    "id, def_name, request, idem_key, status, comp_status, error, created_us, updated_us, "        \
    "nsteps, def_version, trace_id, trace_flags, tracestate"
#define EVENT_COLS                                                                                 \
    "id, saga_id, topic, target, payload, created_us, deadline_us, compensation, step_index, "     \
    "status, attempts, last_error, updated_us, method, headers, timeout_ms"

/* A write that must match a row: no row makes the statement fail with
 * division_by_zero (SQLSTATE 22012), which exec_batch maps to the write's
 * own failure (SG_ENOTFOUND, or SG_ECONFLICT for a guard). An error,
 * unlike a row count, stops a pipeline on the server at once, so a batch
 * can be sent with its COMMIT in one round trip. */
#define MUST(stmt) "WITH u AS (" stmt " RETURNING 1) SELECT 1/count(*) FROM u"
/* A guard locks its row without writing a new version of it. */
#define GUARD(where) "WITH u AS (SELECT 1 FROM " where " FOR UPDATE) SELECT 1/count(*) FROM u"
/* Column c of a row found by its primary key equals parameter p (never
 * NULL): a check on that row, which no index may serve. Written "c = p",
 * it lets the planner take an index that leads with c and holds the key
 * further on (sagas_owner, sagas_status, outbox_status) and walk every
 * entry of c = p to find the key. On a table not yet analyzed (a new
 * database, before autovacuum's first pass) that plan costs the same as
 * the primary key's, and the writer keeps the generic plan it makes at a
 * statement's sixth run until the table is analyzed: one sagad's saga
 * updates read every index entry of its own sagas, slower with each saga
 * stored (issue 10; tests/unit/store/test_pg_plans.c). IS NOT DISTINCT
 * FROM is never an index condition. */
#define SAME(c, p) c " IS NOT DISTINCT FROM " p

/* One keyset page, newest first: $1 the page size, ($2, $3) the cursor,
 * $4 a status, $5 a definition name; one statement per filter. */
#define LIST_SQL(where)                                                                            \
    "SELECT " SAGA_COLS " FROM sagas " where " ORDER BY created_us DESC, id DESC LIMIT $1"
#define EVENTS_SQL(where)                                                                          \
    "SELECT " EVENT_COLS " FROM outbox " where " ORDER BY created_us DESC, id DESC LIMIT $1"
#define AFTER "(created_us, id) < ($2, $3)"

/* The comp_status a saga's compensation events call for: PARKED (3)
 * while one is parked, else PENDING (1) while one is pending (0), else
 * COMPLETED (2). */
#define COMP_STATUS                                                                                \
    "(CASE WHEN EXISTS(SELECT 1 FROM outbox o WHERE o.saga_id=sagas.id AND o.compensation=1 AND "  \
    "o.status=3) THEN 3 WHEN EXISTS(SELECT 1 FROM outbox o WHERE o.saga_id=sagas.id AND "          \
    "o.compensation=1 AND o.status=0) THEN 1 ELSE 2 END)"

static const struct {
    const char *name;
    const char *params;
    const char *sql;
} queries[P_COUNT] = {
    [P_BEGIN] = {"begin", "", "BEGIN"},
    [P_COMMIT] = {"commit", "", "COMMIT"},
    [P_ROLLBACK] = {"rollback", "", "ROLLBACK"},
    [P_SAVEPOINT] = {"savepoint", "", "SAVEPOINT w"},
    [P_RELEASE] = {"release", "", "RELEASE SAVEPOINT w"},
    [P_ROLLBACK_TO] = {"rollback to", "", "ROLLBACK TO SAVEPOINT w"},
    [P_SAGA_INSERT] = {"insert saga", "ttbbiibiiiititit",
                       "INSERT INTO sagas(" SAGA_COLS
                       ", owner, epoch) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$14,$15,$16,$12,"
                       "$13)"},
    [P_STEP_INSERT] = {"insert step", "titiiiibbi",
                       "INSERT INTO steps(saga_id, idx, name, status, attempts, started_us, "
                       "finished_us, error, response, next_us) VALUES($1,$2,$3,$4,$5,$6,$7,$8,"
                       "$9,$10)"},
    /* Only a saga of this process's ($6): one another process took (a
     * redrive, a redelivery) is not found here. */
    [P_SAGA_UPDATE] = {"update saga", "tiibit",
                       MUST("UPDATE sagas SET status=$2, comp_status=$3, error=$4, updated_us=$5 "
                            "WHERE id=$1 AND " SAME("owner", "$6"))},
    [P_STEP_UPDATE] = {"update step", "tiiiiibbi",
                       MUST("UPDATE steps SET status=$3, attempts=$4, started_us=$5, "
                            "finished_us=$6, error=$7, response=$8, next_us=$9 WHERE saga_id=$1 "
                            "AND idx=$2")},
    [P_EVENT_INSERT] = {"insert event", "tttbbiiiiiibitbi",
                        "INSERT INTO outbox(" EVENT_COLS
                        ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)"},
    [P_EVENT_UPDATE] = {"update event", "tiibi",
                        MUST("UPDATE outbox SET status=$2, attempts=$3, last_error=$4, "
                             "updated_us=$5 WHERE id=$1")},
    /* The compensation rule of sg_write_event_update ($1 the event):
     * nothing for a step event (the subquery finds no saga). */
    [P_COMP_DONE] = {"settle compensation status", "ti",
                     "UPDATE sagas SET comp_status=" COMP_STATUS
                     ", updated_us=GREATEST(updated_us, $2) WHERE id=(SELECT saga_id FROM outbox "
                     "WHERE id=$1 AND compensation=1) AND comp_status<>" COMP_STATUS},
    [P_SAGA_EXPECT] = {"check saga state", "tii",
                       GUARD("sagas WHERE id=$1 AND " SAME("status", "$2") " AND comp_status=$3")},
    [P_EVENT_EXPECT] = {"check event state", "ti",
                        GUARD("outbox WHERE id=$1 AND " SAME("status", "$2"))},
    /* Written once: the same text again updates the row to itself, another
     * text matches nothing (the write fails with SG_ECONFLICT). */
    [P_DEF_INSERT] = {"insert definition", "titi",
                      MUST("INSERT INTO definitions(name, version, body, created_us) "
                           "VALUES($1,$2,$3,$4) ON CONFLICT(name, version) DO UPDATE SET "
                           "body=excluded.body WHERE definitions.body=excluded.body")},
    [P_EVENT_TRIED] = {"record a first attempt", "ti",
                       "UPDATE outbox SET started_us=$2 WHERE id=$1 AND started_us=0"},
    [P_WITHDRAW_ORPHANS] = {"withdraw orphan events", "t",
                            "UPDATE outbox SET status=2 WHERE status=0 AND compensation=0 AND "
                            "saga_id IN (SELECT id FROM sagas WHERE status<>0 AND owner=$1)"},
    [P_SAGA_CLAIM] = {"claim saga", "tti", MUST("UPDATE sagas SET owner=$2, epoch=$3 WHERE id=$1")},
    /* Retention (sg_write_purge): up to $2 settled sagas whose created_us
     * and updated_us are before $1, oldest first through sagas_created,
     * with their steps and outbox rows (the rule of SQLite's PURGE_PICK).
     * Any owner's: a settled saga takes no more writes. The chunk is
     * picked once and its saga rows locked first, in index order; SKIP
     * LOCKED passes over a saga another transaction holds (a redrive, a
     * concurrent purge by another sagad), so purges never wait on each
     * other or on a lease holder's writes, and a saga changed meanwhile is
     * checked again by PostgreSQL as it now is. The command tag counts
     * the sagas deleted. */
    [P_PURGE] =
        {"purge sagas", "ii",
         "WITH doomed AS (SELECT id FROM sagas WHERE created_us<$1 AND updated_us<$1 AND "
         "(status=1 OR (status=2 AND comp_status IN (0,2))) AND NOT EXISTS(SELECT 1 FROM "
         "outbox o WHERE o.saga_id=sagas.id AND o.status IN (0,3)) ORDER BY created_us, id "
         "LIMIT $2 FOR UPDATE OF sagas SKIP LOCKED), s AS (DELETE FROM steps WHERE saga_id IN "
         "(SELECT id FROM doomed)), o AS (DELETE FROM outbox WHERE saga_id IN (SELECT id "
         "FROM doomed)) DELETE FROM sagas WHERE id IN (SELECT id FROM doomed)"},
    /* First in every transaction: renews this process's lease ($1, $2) by
     * $3 ms and marks the batch ($4) while the lease row is still this
     * process's, even past its expiry: a takeover deletes the row in the
     * transaction that moves the sagas, so a row still there means no one
     * took them (the database was out of reach for everyone, say).
     * Matching nothing means another process did: the transaction is
     * fenced off. */
    [P_LEASE] = {"renew the lease", "tiii",
                 MUST("UPDATE sg_leases SET expires_us=" SG_PG_NOW_US "+$3*1000, seq=$4 WHERE "
                      "owner=$1 AND epoch=$2")},
    /* Each batch marks itself: after a connection lost with its COMMIT
     * unanswered, the mark tells whether it committed. */
    /* Writes a row unchanged: a transaction that must write, to probe a
     * store that failed. */
    [P_PROBE] = {"probe", "", "UPDATE sg_schema SET version=version WHERE id=1"},

    [P_BEGIN_R] = {"begin", "", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"},
    [P_GET] = {"get saga", "t", "SELECT " SAGA_COLS " FROM sagas WHERE id=$1"},
    [P_GET_IDEM] = {"get saga by key", "b", "SELECT " SAGA_COLS " FROM sagas WHERE idem_key=$1"},
    [P_STEPS] = {"get steps", "t",
                 "SELECT idx, name, status, attempts, started_us, finished_us, next_us, error, "
                 "response FROM steps WHERE saga_id=$1 ORDER BY idx"},
    [P_COMPS] = {"get compensations", "t",
                 "SELECT step_index, status, attempts, created_us, updated_us, last_error, "
                 "started_us FROM outbox WHERE saga_id=$1 AND compensation=1 ORDER BY "
                 "step_index, created_us, id"},
    [P_LIST] = {"list sagas", "iitit", LIST_SQL("")},
    [P_LIST_AFTER] = {"list sagas", "iitit", LIST_SQL("WHERE " AFTER)},
    [P_LIST_ST] = {"list sagas", "iitit", LIST_SQL("WHERE status=$4")},
    [P_LIST_ST_AFTER] = {"list sagas", "iitit", LIST_SQL("WHERE status=$4 AND " AFTER)},
    [P_LIST_T] = {"list sagas", "iitit", LIST_SQL("WHERE def_name=$5")},
    [P_LIST_T_AFTER] = {"list sagas", "iitit", LIST_SQL("WHERE def_name=$5 AND " AFTER)},
    [P_LIST_ST_T] = {"list sagas", "iitit", LIST_SQL("WHERE status=$4 AND def_name=$5")},
    [P_LIST_ST_T_AFTER] = {"list sagas", "iitit",
                           LIST_SQL("WHERE status=$4 AND def_name=$5 AND " AFTER)},
    /* Recovery reads: only this process's sagas ($1 or $4, its owner id). */
    [P_UNFINISHED] = {"load unfinished", "t",
                      "SELECT " SAGA_COLS " FROM sagas WHERE status=0 AND owner=$1 ORDER BY "
                      "created_us, id"},
    [P_UNFINISHED_PAGE] = {"load unfinished", "itit",
                           "SELECT " SAGA_COLS " FROM sagas WHERE status=0 AND owner=$4 AND "
                           "(created_us, id) > ($1, $2) ORDER BY created_us, id LIMIT $3"},
    [P_STEP_EVENTS] = {"load step events", "t",
                       "SELECT " EVENT_COLS " FROM outbox WHERE saga_id=$1 AND compensation=0 "
                       "AND status=0 ORDER BY created_us, id"},
    [P_PENDING_EVENTS] = {"load pending events", "t",
                          "SELECT " EVENT_COLS " FROM outbox WHERE (status=0 OR status=3) AND "
                          "saga_id IN (SELECT id FROM sagas WHERE owner=$1) ORDER BY created_us, "
                          "id"},
    [P_COMPENSATIONS] = {"load compensations", "t",
                         "SELECT " EVENT_COLS " FROM outbox WHERE compensation=1 AND (status=0 "
                         "OR status=3) AND saga_id IN (SELECT id FROM sagas WHERE owner=$1) "
                         "ORDER BY created_us, id"},
    [P_ORPHANS_EXIST] = {"look for orphan events", "t",
                         "SELECT 1 FROM outbox WHERE status=0 AND compensation=0 AND saga_id IN "
                         "(SELECT id FROM sagas WHERE status<>0 AND owner=$1) LIMIT 1"},
    [P_GET_EVENT] = {"get event", "t", "SELECT " EVENT_COLS " FROM outbox WHERE id=$1"},
    [P_EVENTS] = {"list events", "iiti", EVENTS_SQL("")},
    [P_EVENTS_AFTER] = {"list events", "iiti", EVENTS_SQL("WHERE " AFTER)},
    [P_EVENTS_ST] = {"list events", "iiti", EVENTS_SQL("WHERE status=$4")},
    [P_EVENTS_ST_AFTER] = {"list events", "iiti", EVENTS_SQL("WHERE status=$4 AND " AFTER)},
    [P_DEFS] = {"load definitions", "",
                "SELECT name, version, body FROM definitions ORDER BY name, version"},
    [P_OUTBOX_COUNTS] = {"count events", "", "SELECT status, count(*) FROM outbox GROUP BY status"},
};

const char *sg__pg_sql(int q)
{
    return queries[q].sql;
}

const char *sg__pg_name(int q)
{
    return queries[q].name;
}

const char *sg__pg_params(int q)
{
    return queries[q].params;
}

/* Ids and names are COLLATE "C" so that keyset order and the definitions'
 * order are byte order, as in SQLite, whatever the database's locale.
 * Values that may hold any bytes (request and response bodies, payloads,
 * error texts that quote a peer, headers, targets, idempotency keys) are
 * BYTEA: TEXT would refuse invalid UTF-8 and NUL. */
const char sg__pg_schema[] =
    "CREATE TABLE IF NOT EXISTS sagas("
    " id TEXT COLLATE \"C\" PRIMARY KEY,"
    " def_name TEXT COLLATE \"C\","
    " def_version BIGINT NOT NULL DEFAULT 1,"
    " request BYTEA NOT NULL,"
    " idem_key BYTEA UNIQUE,"
    " status BIGINT NOT NULL,"
    " comp_status BIGINT NOT NULL,"
    " error BYTEA,"
    " created_us BIGINT NOT NULL,"
    " updated_us BIGINT NOT NULL,"
    " nsteps BIGINT NOT NULL,"
    " owner TEXT COLLATE \"C\"," /* the lease of the process running it */
    " epoch BIGINT NOT NULL DEFAULT 0,"
    " trace_id TEXT," /* W3C trace id, 32 hex; NULL before tracing */
    " trace_flags BIGINT NOT NULL DEFAULT 0,"
    " tracestate TEXT);"
    "CREATE TABLE IF NOT EXISTS steps("
    " saga_id TEXT COLLATE \"C\" NOT NULL,"
    " idx BIGINT NOT NULL,"
    " name TEXT,"
    " status BIGINT NOT NULL,"
    " attempts BIGINT NOT NULL,"
    " started_us BIGINT NOT NULL,"
    " finished_us BIGINT NOT NULL,"
    " error BYTEA,"
    " response BYTEA,"
    " next_us BIGINT NOT NULL DEFAULT 0,"
    " PRIMARY KEY(saga_id, idx));"
    "CREATE TABLE IF NOT EXISTS outbox("
    " id TEXT COLLATE \"C\" PRIMARY KEY,"
    " saga_id TEXT COLLATE \"C\" NOT NULL,"
    " topic TEXT,"
    " target BYTEA,"
    " payload BYTEA,"
    " created_us BIGINT NOT NULL,"
    " deadline_us BIGINT NOT NULL,"
    " compensation BIGINT NOT NULL,"
    " step_index BIGINT NOT NULL,"
    " status BIGINT NOT NULL,"
    " attempts BIGINT NOT NULL,"
    " last_error BYTEA,"
    " updated_us BIGINT NOT NULL DEFAULT 0,"
    " method TEXT,"
    " headers BYTEA,"
    " timeout_ms BIGINT NOT NULL DEFAULT 0,"
    " started_us BIGINT NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS definitions("
    " name TEXT COLLATE \"C\" NOT NULL,"
    " version BIGINT NOT NULL,"
    " body TEXT NOT NULL,"
    " created_us BIGINT NOT NULL,"
    " PRIMARY KEY(name, version));"
    /* One row per process's lease (design §7); seq marks its last batch. */
    "CREATE TABLE IF NOT EXISTS sg_leases(owner TEXT COLLATE \"C\" PRIMARY KEY, epoch BIGINT NOT "
    "NULL, expires_us BIGINT NOT NULL, seq BIGINT NOT NULL DEFAULT 0);"
    /* Epochs: a counter row (no sequences: not every compatible database
     * has them). */
    "CREATE TABLE IF NOT EXISTS sg_counters(name TEXT PRIMARY KEY, value BIGINT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS sagas_owner ON sagas(owner, status, created_us, id);"
    "CREATE INDEX IF NOT EXISTS sagas_created ON sagas(created_us, id);"
    "CREATE INDEX IF NOT EXISTS sagas_status ON sagas(status, created_us, id);"
    "CREATE INDEX IF NOT EXISTS sagas_type ON sagas(def_name, created_us, id);"
    "CREATE INDEX IF NOT EXISTS outbox_saga ON outbox(saga_id);"
    "CREATE INDEX IF NOT EXISTS outbox_created ON outbox(created_us, id);"
    "CREATE INDEX IF NOT EXISTS outbox_status ON outbox(status, created_us, id);";

/* From 1 to 2 (trace context): sagas stored before have no trace. */
const char sg__pg_upgrade_v2[] = "ALTER TABLE sagas ADD COLUMN IF NOT EXISTS trace_id TEXT,"
                                 " ADD COLUMN IF NOT EXISTS trace_flags BIGINT NOT NULL DEFAULT 0,"
                                 " ADD COLUMN IF NOT EXISTS tracestate TEXT";
