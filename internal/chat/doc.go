// Package chat holds linkwall's domain: users, rooms and messages, the one
// error type with its codes, and the small interfaces that the adapters
// implement — a Store (SQLite embedded, or Redis for several nodes) and a
// Broker that fans events out to the connections of a room's members.
//
// The package imports no adapter. cmd/linkwall wires the adapters together.
package chat
