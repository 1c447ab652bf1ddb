// Package server is linkwall's chat server: the HTTP API v1, the WebSocket
// hub that fans events out to connections, the middleware chain every sent
// message passes (validation, rate limit, membership, the link bot, the
// durable store, the broker, LinkBot's replies), and the Prometheus metrics.
//
// The server depends only on the interfaces of package chat: a chat.Store
// keeps everything durably and a chat.Broker fans events out. Without a
// broker the server delivers straight to its own hub; a multi-node broker
// (Redis) instead feeds events from every node into Hub().Deliver.
//
// docs/protocol.md documents every endpoint, frame, error and limit.
package server
