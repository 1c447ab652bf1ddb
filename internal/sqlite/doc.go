// Package sqlite is linkwall's embedded chat.Store: one SQLite file,
// DIR/linkwall.db, opened with the pure-Go modernc.org/sqlite driver.
//
// # Durability
//
// The database runs in WAL mode and the write connection uses
// synchronous=FULL: the WAL is fsynced at every commit, so a message is on
// stable storage before Append returns and survives a process crash
// (SIGKILL, tested) and a power loss. synchronous=NORMAL would survive a
// process crash too but could lose the last commits on power loss; it was
// measured and rejected because group commit makes FULL cheap where it
// matters (shared 2-core VM, ext4; BenchmarkAppend and
// BenchmarkAppendParallel, time per append, ranges over noisy runs):
//
//	                       NORMAL        FULL
//	one caller at a time   50-70 µs      0.2-1.5 ms  (one fsync per append)
//	64 concurrent callers  18-28 µs      24-40 µs    (one fsync per batch)
//
// A lone sender waits one fsync (well under a human's notice); under load
// FULL adds 20-50% to the time per append, not a fsync each.
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
// Appends go to one writer goroutine over an unbuffered channel. The writer
// takes every request already waiting (up to maxBatch), assigns each room's
// next seq from an in-memory counter (loaded from MAX(seq) when a room is
// first used, and dropped after a failed batch), drops duplicates by
// (room, sender, client_msg_id) against a per-room window of the room's
// last 10,000 messages held in memory (read from the database when a room
// is first used, confirmed against the stored row on a hit; schema 2
// dropped the unique index that did this, because its random page writes
// made every commit larger), writes the batch in one transaction with a
// prepared statement, commits, and only then answers every caller.
// Close stops the writer after it has committed the requests it already
// took; later Appends get chat.EUnavailable.
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
