// Package baseline is a minimal broadcast chat server of the gorilla/websocket
// examples/chat design — one hub goroutine owning the connection map, a read
// pump and a write pump per connection, queued frames coalesced into one
// write — that speaks the subset of linkwall's API v1 the load generator
// uses: POST /api/v1/session, POST /api/v1/rooms, GET /ws with "send"
// frames, and "message" frames back (with client_msg_id in the sender's
// copy). It has no link bot and no store: messages live only on the wire.
//
// It exists so that cmd/linkload can measure linkwall against the simplest
// server that does the same fan-out, on the same machine, in the same run.
package baseline
