// Package sqlite is linkwall's embedded chat.Store: one SQLite file,
// DIR/linkwall.db, opened with the pure-Go modernc.org/sqlite driver.
//
// # Durability
//
// The database runs in WAL mode. A message is on stable storage before
// Append returns, and survives a process crash (SIGKILL, tested) and a
// power loss: the write connection commits with synchronous=NORMAL (the
// transaction's frames are written to the WAL, not synced), and a second
// goroutine, the syncer, fsyncs the WAL and only then answers the callers
// of every batch committed before that fsync began. After a power loss,
// WAL recovery replays every checksummed frame up to the last commit
// record, so a synced commit is as safe as under synchronous=FULL; SQLite
// itself still syncs the WAL before each checkpoint and its header when
// the file is reused. What this buys is a pipeline: what arrives while one
// fsync runs is committed as one batch the moment the syncer can take it
// (or meanwhile, under heavy load), instead of the writer waiting for the
// disk between batches (at 10,000 msgs/s into 2 × 100 members on the 2-core
// VM, 3 runs each: mean append 5.8-7.0 against 8.6-12.8 ms, p99 delivery
// 35-45 against 91-157 ms; docs/benchmarks.md).
//
// Until its sync, a committed message is hidden: Messages stops below a
// room's first unsynced seq, so no one reads a seq that a power loss could
// take back and give to another message. A failed fsync fails the waiting
// appends with chat.EUnavailable and every later one until a restart (the
// kernel may have dropped the pages it could not write, so a retried
// fsync proves nothing). Users, sessions and rooms, which are few and not
// hidden that way, are written in transactions with synchronous=FULL.
//
//	BenchmarkAppend, BenchmarkAppendParallel (sync=NORMAL: no fsync at all),
//	time per append, 3 runs, 2026-11-26:
//	                       no fsync    fsync by the syncer   fsync in the commit (before)
//	one caller at a time   40-45 µs    0.30-0.33 ms          0.24-0.26 ms
//	64 concurrent callers  15-17 µs    21-26 µs              22-26 µs
//
// One caller at a time pays a hand-off to the syncer; with many callers
// the batches are as large as before.
//
// The write connection does not checkpoint by itself
// (wal_autocheckpoint=0): every 500 messages it asks a checkpointer, which
// copies the WAL into the database file with a PASSIVE checkpoint on a
// connection of its own, so no append waits behind the bulk of a
// checkpoint. That connection runs with synchronous=FULL, so SQLite syncs
// the WAL before it copies any frame. Once the WAL holds 32 MiB, when
// such a checkpoint got as far as it began, the writer copies the few
// frames committed meanwhile, so that its next transaction restarts the
// WAL from its beginning: under steady load nothing else would, and the
// WAL would grow until the first pause.
//
// AppendThen runs a function of the caller's on the syncer, right after
// the fsync that made the message durable and before AppendThen returns,
// in commit order. The server fans messages out from there: a group
// commit's messages reach the connections' queues together and in seq
// order, without waiting for each caller to be scheduled again.
//
// A full disk makes Append fail with chat.EUnavailable; the batch's
// transaction is rolled back, so nothing acknowledged before is touched and
// seqs stay gap-free. Open fails with a wrapped cause when the directory or
// file cannot be created or written (it always writes the schema version,
// so a read-only database is caught at Open, not at the first message) and
// when the file is not a database. Open does not scan the whole file for
// corruption (that would cost O(size) at every start).
//
// # Group commit
//
// Appends are queued for one writer goroutine without waiting for it
// (AppendAsync does not wait at all; Append and AppendThen wait for their
// answer). The writer takes every request already queued (up to maxBatch), assigns each room's
// next seq from an in-memory counter (loaded from MAX(seq) when a room is
// first used, and dropped after a failed batch), drops duplicates by
// (room, sender, client_msg_id) against a per-room window of the room's
// last 10,000 messages held in memory (read from the database when a room
// is first used, confirmed against the stored row on a hit; schema 2
// dropped the unique index that did this, because its random page writes
// made every commit larger), writes the batch in one transaction with a
// prepared statement, commits, and hands the batch to the syncer, which
// answers every caller after the fsync.
// Close stops the writer after it has committed every request queued
// before it; later Appends get chat.EUnavailable.
//
// Other writes (users, rooms, era and language) share the single write
// connection, so SQLite never sees two writers. Reads use a separate pool
// of query-only connections, which in WAL mode never wait for the writer.
//
// One process per data directory: the seq counters live in the writer's
// memory. (A second process would not corrupt anything, since seq is the
// primary key, but its appends would fail until the counters reload.)
//
// # Schema
//
// The schema is versioned with PRAGMA user_version; migrations (schema.go)
// are applied in order inside one transaction at Open. Times are stored as
// Unix nanoseconds and read back in UTC.
package sqlite
