// Package sqlite is linkwall's embedded chat.Store: one SQLite file,
// dir/linkwall.db, opened with the pure-Go modernc.org/sqlite driver.
//
// Durability: the database runs in WAL mode with synchronous=FULL on the
// write connection, so a message is on stable storage before Append returns.
// Appends are group-committed by one writer goroutine, so concurrent
// senders share one transaction and one sync.
package sqlite
