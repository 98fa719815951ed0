/* The SQLite backend's SQL: the schema (created fresh, or upgraded in
 * place from an older sagad's version) and every statement the
 * connections prepare, by id (sqlite_int.h). */
#include "sqlite_int.h"

#define STR_(x) #x
#define STR(x) STR_(x)

_Static_assert(SG_SQ_SETTLED == SG_SAGA_COMPLETED && SG_SQ_SETTLED == SG_EVENT_DELIVERED,
               "the status indexes leave out one status number");

/* Columns of a saga row, in the order sg__sq_row_to_saga reads them. */
#define SAGA_COLS                                                                                  \
    "id, def_name, request, idem_key, status, comp_status, error, created_us, updated_us, "        \
    "nsteps, def_version, trace_id, trace_flags, tracestate"
/* Columns of an outbox row, in the order sg__sq_row_to_event reads them. */
#define EVENT_COLS                                                                                 \
    "id, saga_id, topic, target, payload, created_us, deadline_us, compensation, step_index, "     \
    "status, attempts, last_error, updated_us, method, headers, timeout_ms"

/* One keyset page of sagas, newest first: the row value comparison with
 * the cursor (?2, ?3) lets SQLite seek in a (…, created_us, id) index,
 * walked backwards; ?1 is the page size, ?4 a status, ?5 a definition name. Each
 * filter has its own statement (rather than "?5 IS NULL OR def_name=?5")
 * so that the planner, which sees no bound values, can pick the index of
 * that filter. */
#define LIST_SQL(where)                                                                            \
    "SELECT " SAGA_COLS " FROM sagas " where " ORDER BY created_us DESC, id DESC LIMIT ?1"
#define AFTER "(created_us, id) < (?2, ?3)"
/* The term that lets a statement use a status index: they leave out the
 * settled rows (status 1: a COMPLETED saga, a DELIVERED event), and
 * SQLite uses a partial index only for a WHERE clause that has its term
 * word for word. */
#define OPEN "status<>" STR(SG_SQ_SETTLED)
/* The same over the outbox (?4: an event status). */
#define EVENTS_SQL(where)                                                                          \
    "SELECT " EVENT_COLS " FROM outbox " where " ORDER BY created_us DESC, id DESC LIMIT ?1"

/* Step rows: ?1 the saga's id, then 9 parameters a row (idx, name and
 * the state bind_step_state binds). */
#define STEP_INSERT                                                                                \
    "INSERT INTO steps(saga_id, idx, name, status, attempts, started_us, finished_us, error, "     \
    "response, next_us) VALUES"
#define STEP_ROW0 "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"
#define STEP_ROW1 "(?1,?11,?12,?13,?14,?15,?16,?17,?18,?19)"
#define STEP_ROW2 "(?1,?20,?21,?22,?23,?24,?25,?26,?27,?28)"
#define STEP_ROW3 "(?1,?29,?30,?31,?32,?33,?34,?35,?36,?37)"

/* The comp_status a saga's compensation events call for (the rule of
 * Q_COMP_DONE), in an UPDATE of sagas. */
#define COMP_STATUS                                                                                \
    "(CASE WHEN EXISTS(SELECT 1 FROM outbox o WHERE o.saga_id=sagas.id AND o.compensation=1 AND "  \
    "+o.status=3) THEN 3 WHEN EXISTS(SELECT 1 FROM outbox o WHERE o.saga_id=sagas.id AND "         \
    "o.compensation=1 AND +o.status=0) THEN 1 ELSE 2 END)"

/* Retention (sg_write_purge): the chunk of sagas that go, oldest first,
 * ?1 the cut-off, ?2 the chunk. Settled: COMPLETED (1), or FAILED (2)
 * with comp_status NONE (0) or COMPLETED (2), and no outbox row PENDING
 * (0) or PARKED (3) left (a step event an ended saga still holds is
 * withdrawn at the next start first). Both times before the cut-off: the
 * range of created_us is what sagas_created seeks (a purge reads from the
 * oldest end and stops after ?2 matches); updated_us, checked on the row,
 * is the saga's last change (its compensations move it too; a step's
 * times never pass it once the saga has ended). The NOT EXISTS looks a
 * saga's few outbox rows up through outbox_saga (the unary + keeps the
 * planner off the status index). Each of the three statements picks the
 * same chunk: the first two delete no saga and leave the rule's columns
 * alone. */
#define PURGE_PICK                                                                                 \
    "SELECT id FROM sagas WHERE created_us<?1 AND updated_us<?1 AND (status=1 OR (status=2 AND "   \
    "comp_status IN (0,2))) AND NOT EXISTS(SELECT 1 FROM outbox o WHERE o.saga_id=sagas.id AND "   \
    "+o.status IN (0,3)) ORDER BY created_us, id LIMIT ?2"

static const struct {
    const char *name; /* for error messages */
    const char *sql;
} queries[Q_COUNT] = {
    [Q_BEGIN_W] = {"begin", "BEGIN IMMEDIATE"},
    [Q_BEGIN_R] = {"begin", "BEGIN"},
    [Q_COMMIT] = {"commit", "COMMIT"},
    [Q_ROLLBACK] = {"rollback", "ROLLBACK"},
    [Q_SAVEPOINT] = {"savepoint", "SAVEPOINT w"},
    [Q_RELEASE] = {"release", "RELEASE w"},
    [Q_ROLLBACK_TO] = {"rollback to", "ROLLBACK TO w"},
    [Q_SAGA_INSERT] = {"insert saga", "INSERT INTO sagas(" SAGA_COLS
                                      ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"},
    /* A saga's step rows, up to SG_SQ_STEP_ROWS a statement: one
     * statement for the three steps of the STA saga instead of three. */
    [Q_STEP_INSERT] = {"insert step", STEP_INSERT STEP_ROW0},
    [Q_STEP_INSERT2] = {"insert step", STEP_INSERT STEP_ROW0 "," STEP_ROW1},
    [Q_STEP_INSERT3] = {"insert step", STEP_INSERT STEP_ROW0 "," STEP_ROW1 "," STEP_ROW2},
    [Q_STEP_INSERT4] = {"insert step",
                        STEP_INSERT STEP_ROW0 "," STEP_ROW1 "," STEP_ROW2 "," STEP_ROW3},
    [Q_SAGA_UPDATE] = {"update saga", "UPDATE sagas SET status=?2, comp_status=?3, error=?4, "
                                      "updated_us=?5 WHERE id=?1"},
    /* The same for a saga whose status stays (most updates: a step moved
     * on): status is not assigned, so SQLite leaves sagas_status alone
     * instead of deleting and re-inserting the same entry. No row changed
     * means another status (or no saga): Q_SAGA_UPDATE then. */
    [Q_SAGA_TOUCH] = {"update saga", "UPDATE sagas SET comp_status=?3, error=?4, updated_us=?5 "
                                     "WHERE id=?1 AND status=?2"},
    [Q_STEP_UPDATE] = {"update step",
                       "UPDATE steps SET status=?3, attempts=?4, started_us=?5, finished_us=?6, "
                       "error=?7, response=?8, next_us=?9 WHERE saga_id=?1 AND idx=?2"},
    /* Two adjacent steps of one saga (?2 and ?10 differ by one: a step
     * done and the next one started) in one statement, over the range of
     * the primary key that holds exactly those two rows. */
    [Q_STEP_UPDATE2] = {"update step",
                        "UPDATE steps SET status=iif(idx=?2,?3,?11), attempts=iif(idx=?2,?4,?12), "
                        "started_us=iif(idx=?2,?5,?13), finished_us=iif(idx=?2,?6,?14), "
                        "error=iif(idx=?2,?7,?15), response=iif(idx=?2,?8,?16), "
                        "next_us=iif(idx=?2,?9,?17) WHERE saga_id=?1 AND idx BETWEEN "
                        "min(?2,?10) AND max(?2,?10)"},
    [Q_EVENT_INSERT] = {"insert event",
                        "INSERT INTO outbox(" EVENT_COLS
                        ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"},
    [Q_EVENT_UPDATE] = {"update event", "UPDATE outbox SET status=?2, attempts=?3, last_error=?4, "
                                        "updated_us=?5 WHERE id=?1"},
    /* The same for a step event (most updates): the compensation rule
     * does not apply to it. No row changed means a compensation (or no
     * event): Q_EVENT_UPDATE and Q_COMP_DONE then. */
    [Q_STEP_EVENT_UPDATE] = {"update event",
                             "UPDATE outbox SET status=?2, attempts=?3, last_error=?4, "
                             "updated_us=?5 WHERE id=?1 AND compensation=0"},
    /* The compensation rule of sg_write_event_update: a saga's
     * comp_status follows its compensation events (?1 is one of them):
     * PARKED (3) while one is parked, else PENDING (1) while one is pending
     * (0), else COMPLETED (2). The unary + keeps the planner on outbox_saga
     * (a saga's few events) rather than a status index. The saga is
     * found first, by a subquery run once: for an event that is not a
     * compensation (most updates) it is NULL and the statement stops
     * there, at the cost of one lookup. */
    [Q_COMP_DONE] = {"settle compensation status",
                     "UPDATE sagas SET comp_status=" COMP_STATUS ", updated_us=max(updated_us, ?2) "
                     "WHERE id=(SELECT saga_id FROM outbox WHERE id=?1 AND compensation=1) AND "
                     "comp_status<>" COMP_STATUS},
    /* Guards: they match the row only in the expected state (a write whose
     * guard matches nothing fails alone with SG_ECONFLICT). */
    [Q_SAGA_EXPECT] = {"check saga state", "UPDATE sagas SET status=status WHERE id=?1 AND "
                                           "status=?2 AND comp_status=?3"},
    [Q_EVENT_EXPECT] = {"check event state",
                        "UPDATE outbox SET status=status WHERE id=?1 AND status=?2"},
    /* A definition version is written once: the same text again touches
     * the row (one change: nothing to do), another text matches nothing
     * (no change: the write fails with SG_ECONFLICT). */
    [Q_EVENT_TRIED] = {"record a first attempt",
                       "UPDATE outbox SET started_us=?2 WHERE id=?1 AND started_us=0"},
    [Q_DEF_INSERT] = {"insert definition",
                      "INSERT INTO definitions(name, version, body, created_us) "
                      "VALUES(?1,?2,?3,?4) ON CONFLICT(name, version) DO UPDATE SET "
                      "body=excluded.body WHERE body=excluded.body"},
    [Q_PURGE_STEPS] = {"purge steps", "DELETE FROM steps WHERE saga_id IN (" PURGE_PICK ")"},
    [Q_PURGE_OUTBOX] = {"purge events", "DELETE FROM outbox WHERE saga_id IN (" PURGE_PICK ")"},
    [Q_PURGE_SAGAS] = {"purge sagas", "DELETE FROM sagas WHERE id IN (" PURGE_PICK ")"},
    [Q_GET] = {"get saga", "SELECT " SAGA_COLS " FROM sagas WHERE id=?1"},
    [Q_GET_IDEM] = {"get saga by key", "SELECT " SAGA_COLS " FROM sagas WHERE idem_key=?1"},
    [Q_STEPS] = {"get steps", "SELECT idx, name, status, attempts, started_us, finished_us, "
                              "next_us, "
                              "error, response FROM steps WHERE saga_id=?1 ORDER BY idx"},
    /* A saga's compensations through outbox_saga (a saga has few outbox
     * rows), by step and then age: the reader keeps each step's newest. */
    [Q_COMPS] = {"get compensations",
                 "SELECT step_index, status, attempts, created_us, updated_us, last_error, "
                 "started_us FROM "
                 "outbox WHERE saga_id=?1 AND compensation=1 ORDER BY step_index, created_us, "
                 "id"},
    [Q_LIST] = {"list sagas", LIST_SQL("")},
    [Q_LIST_AFTER] = {"list sagas", LIST_SQL("WHERE " AFTER)},
    [Q_LIST_ST] = {"list sagas", LIST_SQL("WHERE status=?4")},
    [Q_LIST_ST_AFTER] = {"list sagas", LIST_SQL("WHERE status=?4 AND " AFTER)},
    [Q_LIST_T] = {"list sagas", LIST_SQL("WHERE def_name=?5")},
    [Q_LIST_T_AFTER] = {"list sagas", LIST_SQL("WHERE def_name=?5 AND " AFTER)},
    [Q_LIST_ST_T] = {"list sagas", LIST_SQL("WHERE status=?4 AND def_name=?5")},
    [Q_LIST_ST_T_AFTER] = {"list sagas", LIST_SQL("WHERE status=?4 AND def_name=?5 AND " AFTER)},
    /* The status filters above serve COMPLETED, the status of most sagas,
     * by walking sagas_created or sagas_type; these seek in sagas_status
     * for every other (?4 is never 1 here). */
    [Q_LIST_OPEN] = {"list sagas", LIST_SQL("WHERE status=?4 AND " OPEN)},
    [Q_LIST_OPEN_AFTER] = {"list sagas", LIST_SQL("WHERE status=?4 AND " OPEN " AND " AFTER)},
    [Q_LIST_OPEN_T] = {"list sagas", LIST_SQL("WHERE status=?4 AND " OPEN " AND def_name=?5")},
    [Q_LIST_OPEN_T_AFTER] = {"list sagas",
                             LIST_SQL("WHERE status=?4 AND " OPEN " AND def_name=?5 AND " AFTER)},
    [Q_UNFINISHED] = {"load unfinished", "SELECT " SAGA_COLS " FROM sagas WHERE status=0 AND " OPEN
                                         " ORDER BY created_us, id"},
    /* Through outbox_status, one range per status, then sorted. */
    [Q_PENDING_EVENTS] = {"load pending events",
                          "SELECT " EVENT_COLS " FROM outbox WHERE (status=0 OR status=3) AND " OPEN
                          " ORDER BY created_us, id"},
    [Q_GET_EVENT] = {"get event", "SELECT " EVENT_COLS " FROM outbox WHERE id=?1"},
    /* Recovery, a page at a time, oldest first (the keyset of the listing,
     * ascending), with each saga's unsettled step events. */
    [Q_UNFINISHED_PAGE] = {"load unfinished",
                           "SELECT " SAGA_COLS " FROM sagas WHERE status=0 AND " OPEN
                           " AND (created_us, id) > (?1, ?2) ORDER BY created_us, id LIMIT ?3"},
    [Q_STEP_EVENTS] = {"load step events", "SELECT " EVENT_COLS " FROM outbox WHERE saga_id=?1 "
                                           "AND compensation=0 AND status=0 ORDER BY "
                                           "created_us, id"},
    [Q_COMPENSATIONS] = {"load compensations",
                         "SELECT " EVENT_COLS " FROM outbox WHERE compensation=1 AND (status=0 "
                         "OR status=3) AND " OPEN " ORDER BY created_us, id"},
    /* A step event whose saga has ended was settled with it: withdrawn. */
    [Q_WITHDRAW_ORPHANS] = {"withdraw orphan events",
                            "UPDATE outbox SET status=2 WHERE status=0 AND " OPEN
                            " AND compensation=0 AND saga_id IN (SELECT id FROM sagas WHERE "
                            "status<>0)"},
    [Q_ORPHANS_EXIST] = {"look for orphan events",
                         "SELECT 1 FROM outbox WHERE status=0 AND " OPEN
                         " AND compensation=0 AND saga_id IN (SELECT id FROM sagas WHERE "
                         "status<>0) LIMIT 1"},
    /* Outbox listing, newest first, by the same keyset as the sagas. */
    [Q_EVENTS] = {"list events", EVENTS_SQL("")},
    [Q_EVENTS_AFTER] = {"list events", EVENTS_SQL("WHERE " AFTER)},
    [Q_EVENTS_ST] = {"list events", EVENTS_SQL("WHERE status=?4")},
    [Q_EVENTS_ST_AFTER] = {"list events", EVENTS_SQL("WHERE status=?4 AND " AFTER)},
    [Q_EVENTS_OPEN] = {"list events", EVENTS_SQL("WHERE status=?4 AND " OPEN)},
    [Q_EVENTS_OPEN_AFTER] = {"list events", EVENTS_SQL("WHERE status=?4 AND " OPEN " AND " AFTER)},
    /* In primary key order: by name, then version. */
    /* The events by status but DELIVERED, from the covering outbox_status,
     * and as status -1 all of them, from the entries of an index rather
     * than the table's rows: DELIVERED are the rest. One statement, one
     * snapshot. */
    [Q_OUTBOX_COUNTS] = {"count events", "SELECT status, count(*) FROM outbox WHERE " OPEN
                                         " GROUP BY status UNION ALL SELECT -1, count(*) FROM "
                                         "outbox"},
    [Q_DEFS] = {"load definitions", "SELECT name, version, body FROM definitions ORDER BY name, "
                                    "version"},
    /* Rewrites page 1 unchanged: a transaction that must write, to probe
     * a store that failed (an empty one commits even on a full disk). */
    [Q_PROBE] = {"probe", "PRAGMA user_version=" STR(SG_SQ_SCHEMA_VERSION)},
};

const char *sg__sq_sql(int q)
{
    return queries[q].sql;
}

const char *sg__sq_name(int q)
{
    return queries[q].name;
}

/* ---- schema ---------------------------------------------------------------- */

/* The keyset indexes of the listings, ascending. A listing walks them
 * backwards for newest first (the plans are the same as with DESC
 * columns: no sort, a seek for a cursor), while new rows, whose
 * created_us is the largest, go at their right end, where SQLite appends
 * to the last page. Descending columns (sagad before this) put every new
 * row at the left end of the index, where each full page is split and
 * rebalanced with its neighbours: about twice the pages written per
 * transaction for each of these indexes.
 *
 * The status indexes hold only the rows that are not settled (schema 6):
 * a saga enters sagas_status RUNNING and leaves it COMPLETED, so its
 * entries stay a few hot pages instead of a growing COMPLETED range that
 * every saga also appended to (a third fewer pages written per saga in
 * those two indexes); a listing by the settled status walks
 * sagas_created (or sagas_type, outbox_created), where nearly every row
 * has it. */
#define IDX_SAGAS_CREATED "sagas_created ON sagas(created_us, id)"
#define IDX_SAGAS_STATUS "sagas_status ON sagas(status, created_us, id) WHERE " OPEN
#define IDX_SAGAS_TYPE "sagas_type ON sagas(def_name, created_us, id)"
#define IDX_OUTBOX_CREATED "outbox_created ON outbox(created_us, id)"
#define IDX_OUTBOX_STATUS "outbox_status ON outbox(status, created_us, id) WHERE " OPEN

/* The sagas table (named so that the upgrade to 4 can build it beside the
 * old one; there without IF NOT EXISTS, so that a table already in the
 * way fails the upgrade rather than receiving the rows). idem_key is
 * unique through the partial index sagas_idem: a saga without a key
 * (most) adds no entry to it, where a UNIQUE column (schema 3 and before)
 * indexed every NULL. */
/* clang-format off */
#define SAGAS_TABLE(create, name)                                                                  \
    create " " name "("                                                                            \
    " id TEXT PRIMARY KEY,"                                                                        \
    " def_name TEXT,"                                                                              \
    " def_version INTEGER NOT NULL DEFAULT 1," /* the definition's version it runs on */           \
    " request BLOB NOT NULL,"                  /* exact bytes as posted */                         \
    " idem_key TEXT,"                                                                              \
    " status INTEGER NOT NULL,"                                                                    \
    " comp_status INTEGER NOT NULL,"                                                               \
    " error TEXT,"                                                                                 \
    " created_us INTEGER NOT NULL,"                                                                \
    " updated_us INTEGER NOT NULL,"                                                                \
    " nsteps INTEGER NOT NULL,"                                                                    \
    " trace_id TEXT," /* W3C trace id, 32 hex; NULL before tracing */                             \
    " trace_flags INTEGER NOT NULL DEFAULT 0,"                                                     \
    " tracestate TEXT);"
/* clang-format on */
/* Its indexes. Every status lookup of the outbox (recovery, orphans)
 * goes through outbox_status; a partial outbox_pending (schema 3 and
 * before) cost every event an entry more and a removal on delivery. */
#define SAGAS_INDEXES                                                                              \
    "CREATE UNIQUE INDEX IF NOT EXISTS sagas_idem ON sagas(idem_key) WHERE idem_key IS NOT NULL;"  \
    "CREATE INDEX IF NOT EXISTS " IDX_SAGAS_CREATED ";"                                            \
    "CREATE INDEX IF NOT EXISTS " IDX_SAGAS_STATUS ";"                                             \
    "CREATE INDEX IF NOT EXISTS " IDX_SAGAS_TYPE ";"

/* The current schema, for a new file. A file from an older sagad gets
 * the same tables, columns and indexes through the upgrades below (added
 * columns come last there; every statement names its columns). */
/* clang-format off */
const char sg__sq_schema[] =
    SAGAS_TABLE("CREATE TABLE IF NOT EXISTS", "sagas")
    "CREATE TABLE IF NOT EXISTS steps("
    " saga_id TEXT NOT NULL,"
    " idx INTEGER NOT NULL,"
    " name TEXT,"
    " status INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " started_us INTEGER NOT NULL,"
    " finished_us INTEGER NOT NULL,"
    " error TEXT,"
    " response BLOB,"
    " next_us INTEGER NOT NULL DEFAULT 0," /* next attempt after a backoff */
    " PRIMARY KEY(saga_id, idx)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS outbox("
    " id TEXT PRIMARY KEY,"
    " saga_id TEXT NOT NULL,"
    " topic TEXT,"
    " target TEXT,"
    " payload BLOB,"
    " created_us INTEGER NOT NULL,"
    " deadline_us INTEGER NOT NULL,"
    " compensation INTEGER NOT NULL,"
    " step_index INTEGER NOT NULL,"
    " status INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " last_error TEXT,"
    " updated_us INTEGER NOT NULL DEFAULT 0,"
    " method TEXT,"                            /* an HTTP compensation's; NULL = POST */
    " headers TEXT,"                           /* its extra header lines, '\n'-joined */
    " timeout_ms INTEGER NOT NULL DEFAULT 0,"  /* per attempt; 0 = the engine's */
    " started_us INTEGER NOT NULL DEFAULT 0);" /* a compensation's first attempt */
    "CREATE TABLE IF NOT EXISTS definitions("
    " name TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " body TEXT NOT NULL," /* canonical JSON of the definition */
    " created_us INTEGER NOT NULL,"
    " PRIMARY KEY(name, version)) WITHOUT ROWID;"
    SAGAS_INDEXES
    "CREATE INDEX IF NOT EXISTS outbox_saga ON outbox(saga_id);"
    "CREATE INDEX IF NOT EXISTS " IDX_OUTBOX_CREATED ";"
    "CREATE INDEX IF NOT EXISTS " IDX_OUTBOX_STATUS ";";
/* clang-format on */

/* From schema 1 (sagad before retries and parking) to 2. */
static const char upgrade_v2[] =
    "ALTER TABLE steps ADD COLUMN next_us INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE outbox ADD COLUMN last_error TEXT;"
    "ALTER TABLE outbox ADD COLUMN updated_us INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX IF NOT EXISTS " IDX_OUTBOX_CREATED ";"
    "CREATE INDEX IF NOT EXISTS " IDX_OUTBOX_STATUS ";";

/* From 2 to 3 (definitions with versions): sagas stored before ran on
 * version 1 of their type; their compensations were POSTs with the
 * engine's timeout. */
static const char upgrade_v3[] =
    "ALTER TABLE sagas ADD COLUMN def_version INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE outbox ADD COLUMN method TEXT;"
    "ALTER TABLE outbox ADD COLUMN headers TEXT;"
    "ALTER TABLE outbox ADD COLUMN timeout_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE outbox ADD COLUMN started_us INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE IF NOT EXISTS definitions(name TEXT NOT NULL, version INTEGER NOT NULL,"
    " body TEXT NOT NULL, created_us INTEGER NOT NULL, PRIMARY KEY(name, version))"
    " WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS " IDX_SAGAS_TYPE ";";

/* From 3 to 4 (trace context): sagas stored before have no trace. */
static const char upgrade_v4[] =
    "ALTER TABLE sagas ADD COLUMN trace_id TEXT;"
    "ALTER TABLE sagas ADD COLUMN trace_flags INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sagas ADD COLUMN tracestate TEXT;";

/* From 4 to 5 (fewer index entries per saga): the sagas table is built
 * again without the UNIQUE column (SQLite cannot drop a constraint), rows
 * and rowids copied as they are; its indexes come back with it, and the
 * key's as the partial sagas_idem. The upgrade runs in the open's
 * transaction: it applies whole or not at all. */
/* clang-format off */
static const char upgrade_v5[] =
    SAGAS_TABLE("CREATE TABLE", "sagas_v5")
    "INSERT INTO sagas_v5(rowid, " SAGA_COLS ") SELECT rowid, " SAGA_COLS " FROM sagas;"
    "DROP TABLE sagas;"
    "ALTER TABLE sagas_v5 RENAME TO sagas;"
    SAGAS_INDEXES
    "DROP INDEX IF EXISTS outbox_pending;";
/* clang-format on */

/* From 5 to 6 (status indexes without the settled rows). */
static const char upgrade_v6[] = "DROP INDEX IF EXISTS sagas_status;"
                                 "CREATE INDEX " IDX_SAGAS_STATUS ";"
                                 "DROP INDEX IF EXISTS outbox_status;"
                                 "CREATE INDEX " IDX_OUTBOX_STATUS ";";

const char *sg__sq_upgrade(int from)
{
    static const char *const steps[SG_SQ_SCHEMA_VERSION] = {
        [1] = upgrade_v2, [2] = upgrade_v3, [3] = upgrade_v4, [4] = upgrade_v5, [5] = upgrade_v6};
    return from >= 1 && from < SG_SQ_SCHEMA_VERSION ? steps[from] : NULL;
}

/* The indexes a file of the current version may still have with
 * descending columns (made by an older sagad): sg__sq_relayout rebuilds
 * them ascending. Same names, columns and plans, so this needs no new
 * schema version: a sagad of the same version reads either layout. */
static const char *const relayout[][2] = {
    {"sagas_created", "CREATE INDEX " IDX_SAGAS_CREATED},
    {"sagas_status", "CREATE INDEX " IDX_SAGAS_STATUS},
    {"sagas_type", "CREATE INDEX " IDX_SAGAS_TYPE},
    {"outbox_created", "CREATE INDEX " IDX_OUTBOX_CREATED},
    {"outbox_status", "CREATE INDEX " IDX_OUTBOX_STATUS},
};

const char *sg__sq_relayout(size_t i, const char **create)
{
    if (i >= sizeof relayout / sizeof relayout[0]) return NULL;
    *create = relayout[i][1];
    return relayout[i][0];
}
