/* Crash points: named places where a test build of sagad can be made to die
 * on purpose, to prove that every state it can crash in is recoverable
 * (SQLite's countdown failure injection, applied to the whole process).
 *
 * A build configured with -DSG_CRASH_POINTS=ON (make test does) defines
 * SG_CRASH_POINTS; then, with SAGAD_CRASH_AT=<name>:<n> in the environment,
 * the n-th pass (n >= 1, counted over all threads) through the point <name>
 * writes one line "sagad: crash point <name>:<n>" to stderr and calls
 * _exit(77): no atexit handlers, no store close, no flush, as if the
 * process had been killed there. Without the option sg_crash_point()
 * compiles to nothing, so release builds carry no trace of it.
 *
 * The points, in one list (tests/integration/test_crash_points.py reads it
 * from here, and fails for a name that no file in src/ passes through):
 *   store_committed        src/store/writer.c: a transaction committed, its
 *                          completions not handed back to the loop yet
 *   http_before            src/engine/saga.c call_http: before sg_http_post
 *   http_after             src/engine/saga.c on_http_done: on entry
 *   publish_before         src/engine/saga.c publish: before sg_bus_publish
 *   publish_after          src/engine/saga.c on_ack: on entry
 *   commit_before_delivery src/engine/saga.c on_committed: a write with
 *                          compensations committed, none delivered yet
 *   compensation_send      src/engine/outbox.c attempt: before sending
 *   compensation_ack       src/engine/outbox.c on_bus_ack / on_http_ack
 *   recovery               src/engine/engine.c on_pending_event and
 *                          on_unfinished: each row recovery loads
 *   retry_wait             where a step's retry backoff timer is armed */
#ifndef SG_CRASH_H
#define SG_CRASH_H

#define SG_CRASH_POINT_LIST(X)                                                                     \
    X(store_committed)                                                                             \
    X(http_before)                                                                                 \
    X(http_after)                                                                                  \
    X(publish_before)                                                                              \
    X(publish_after)                                                                               \
    X(commit_before_delivery)                                                                      \
    X(compensation_send)                                                                           \
    X(compensation_ack)                                                                            \
    X(recovery)                                                                                    \
    X(retry_wait)

#ifdef SG_CRASH_POINTS
/* Counts a pass through point `name` (a string literal from the list
 * above) and dies on the armed pass. Thread-safe; the first call of any
 * point reads SAGAD_CRASH_AT, and a value that names no listed point or
 * has no count >= 1 stops the process with status 2 and a message (a typo
 * must not look like a point never reached). */
void sg_crash_pass(const char *name);
#define sg_crash_point(name) sg_crash_pass(name)
#else
#define sg_crash_point(name) ((void)0)
#endif

#endif
