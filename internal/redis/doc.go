// Package redis is linkwall's scale-out adapter: a chat.Store kept entirely
// in Redis and a chat.Broker that fans events out between nodes, so that
// several `linkwall serve --redis URL` nodes share users, sessions, rooms,
// per-room sequence numbers, history and eras, and any node can serve any
// user.
//
// # Data layout
//
// Every key starts with a prefix: "lw:" unless WithPrefix or the URL
// parameter key_prefix (redis://HOST:PORT/DB?key_prefix=demo:) says
// otherwise, so several deployments can share one Redis database.
//
//	lw:u:ID           user (JSON)
//	lw:s:HEX          session: the owner's user JSON, keyed by the token hash
//	lw:users          users in creation order (sorted set, lexical)
//	lw:ur:ID          a user's rooms in creation order (sorted set, lexical)
//	lw:r:ID           room (hash: kind, name, era, lang, created, members, seq)
//	lw:r:ID:m         the room's messages (stream; entry id SEQ-0)
//	lw:r:ID:d         client_msg_id → seq of the retained messages (hash)
//	lw:dm:A|B         the direct room of a pair of users (SET NX semantics)
//	lw:order          tie-breaker counter for creation order
//	lw:events         the broker's event stream
//
// Writes that must be atomic run as one Lua script each: creating a user
// with its session, creating a room (the direct pair key makes a direct room
// idempotent, even when two nodes race), and Append (deduplicate the
// client_msg_id, increment the room's seq, add the stream entry, record the
// client_msg_id, trim). Redis runs scripts one at a time, so seq is gapless
// and ordered per room across all nodes.
//
// # Retention and resume
//
// Each room keeps its last DefaultMaxMessages (10,000) messages, or as many
// as WithMaxMessages or the URL parameter max_messages says; Append trims older ones in batches of trimBatch. `resume` and GET …/messages reach back that far.
// A client that asks for messages after a seq that has been trimmed gets
// what is still there: the page starts at the oldest retained message, so
// its first seq is larger than after+1 and the client can see that older
// history is gone. No error: a client that was away for long must still be
// able to resume. Sending the same client_msg_id again is recognised for as
// long as the original message is retained.
//
// # Fan-out
//
// The Broker delivers an event to the local hub at once and adds it to the
// lw:events stream (capped at eventBacklog entries). Every node reads that
// stream from the last entry it has seen, so a node whose Redis connection
// drops for a moment picks up where it stopped instead of losing the events
// published meanwhile (plain PUBLISH/SUBSCRIBE would lose them). Every
// node reads every event and its hub keeps those of its own connections:
// fine for a handful of nodes; many more would want per-room channels.
// Events of one room may arrive from two nodes out of seq order; the hub
// orders them by seq and fills gaps from the store.
//
// # Durability
//
// A message is acknowledged when Redis has accepted the Append script: it is
// then in Redis's memory and visible to every node, and no linkwall node
// crash can lose it. Whether it survives a crash of Redis itself depends on
// Redis's persistence. docker-compose.yml runs Redis with the append-only
// file and appendfsync everysec: a Redis crash (or power loss) loses at most
// the last second of writes, acknowledged ones included; a clean Redis
// restart loses nothing. After such a loss a room's seq counter restarts
// below seqs that clients have already seen, and those clients skip the
// re-used seqs as duplicates until they reload; appendfsync always closes
// that window at the cost of one fsync per write. Redis without persistence
// (--save "" --appendonly no, as CI runs it) forgets everything on restart.
//
// # Redis down
//
// The client uses short timeouts and no automatic retries (a retried Append
// whose first try did run would store the message twice), so while Redis is
// unreachable every Store method fails within about a second with a
// chat.EUnavailable error, Ping fails (so /readyz answers 503) and the
// server refuses sends with an error frame. go-redis redials on the next
// command, and the Broker's reader retries with backoff, so a node recovers
// by itself when Redis returns.
//
// The package targets one Redis primary (optionally with replicas or
// Sentinel); scripts that create rooms touch keys of several users, so it
// does not run on Redis Cluster.
package redis
