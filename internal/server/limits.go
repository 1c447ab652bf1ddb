package server

import (
	"time"

	"golang.org/x/time/rate"
)

// Default limits. Every one is documented in docs/protocol.md; a Limits
// field left zero takes its default.
const (
	// DefaultMaxTextRunes bounds one message's text. Long enough for any
	// pasted share text, short enough that a fan-out stays cheap.
	DefaultMaxTextRunes = 4000
	// DefaultMaxNameRunes bounds user and room names (WeChat allows 16
	// Chinese characters; 32 leaves room for Latin names).
	DefaultMaxNameRunes = 32
	// DefaultMaxFrameBytes is the WebSocket read limit per inbound message.
	// 4000 runes of CJK are 12 KB of UTF-8, JSON-escaped at most 6× that for
	// pathological input; past it the connection is closed with 1009.
	DefaultMaxFrameBytes = 64 << 10
	// DefaultMaxRoomsPerUser bounds the rooms one user is in, checked for
	// the creator and everyone added: one account cannot fill the store, and
	// nobody's hello frame (every room with its members) grows without bound.
	DefaultMaxRoomsPerUser = 1000
	// DefaultMaxGroupMembers bounds a group (WeChat's own cap is 500).
	DefaultMaxGroupMembers = 500
	// DefaultSendRate and DefaultSendBurst limit messages per user, over all
	// of the user's connections: faster than anyone types, slower than a flood.
	DefaultSendRate  rate.Limit = 20
	DefaultSendBurst int        = 40
	// DefaultRateStrikes is how many rate-limited sends in a row a
	// connection may make before it is closed with CloseRateLimited.
	DefaultRateStrikes = 100
	// DefaultMaxQueueBytes bounds the bytes waiting to be written to one
	// connection. A reader this far behind is dropped with CloseSlowConsumer
	// and resumes after reconnecting; the hub never waits for it.
	DefaultMaxQueueBytes = 1 << 20
	// DefaultSessionRate and DefaultSessionBurst limit session creation per
	// client IP, so a script cannot create users without bound, while a
	// class of 60 behind one school NAT can still join at once.
	DefaultSessionRate  rate.Limit = 2
	DefaultSessionBurst int        = 60
)

// Protocol limits that are not configurable.
const (
	// maxClientMsgID bounds client_msg_id, which the store indexes.
	maxClientMsgID = 64
	// maxRoomID bounds a room ID a client names: longer ones are no room.
	maxRoomID = 64
	// minWalkthroughStep and maxWalkthroughStep bound the pause between
	// eras a walkthrough may ask for (in whole seconds).
	minWalkthroughStep = time.Second
	maxWalkthroughStep = time.Minute
	// maxBodyBytes bounds every REST request body.
	maxBodyBytes = 64 << 10
	// defaultPageSize and maxPageSize bound GET …/messages and each page a
	// resume reads from the store.
	defaultPageSize = 100
	maxPageSize     = 1000
	// maxUsersListed bounds GET /api/v1/users.
	maxUsersListed = 1000
	// maxStatsMessages bounds how much history /stats re-evaluates.
	maxStatsMessages = 100_000
	// maxWhyLookback is how many recent messages /why searches.
	maxWhyLookback = 200
	// previewRate and previewBurst limit POST /api/v1/preview per client IP:
	// it needs no session, and the page's Preview asks for every era and
	// chat kind (10 requests) each time the text changes.
	previewRate  rate.Limit = 20
	previewBurst int        = 60
	// resumeRate limits resumes per connection once its burst, as many as
	// the rooms a user may be in (MaxRoomsPerUser), is spent: a page
	// resumes every room at once after connecting, and each resume costs
	// a store read, even of a room that does not exist.
	resumeRate rate.Limit = 100
)

// WebSocket timing. The writer pings every 9/10 of pongWait; a peer that
// sends nothing (not even a pong) for pongWait is considered gone.
const (
	// writeWait bounds one write (a coalesced batch or a control frame).
	writeWait = 10 * time.Second
	// pongWait is how long the reader waits for any frame; pongs extend it.
	// The writer pings every 9/10 of it, so pongs arrive in time.
	pongWait = 60 * time.Second
	// authWait bounds how long a connection that authenticates by frame
	// (no credentials at the upgrade, or ?auth=frame) may take to send its
	// auth frame; an unauthenticated socket costs a goroutine until then.
	authWait = 10 * time.Second
	// handshakeWait bounds the WebSocket upgrade handshake.
	handshakeWait = 10 * time.Second
	// gapGrace is how long a connection waits for a missing seq to arrive
	// live (events of concurrent senders can overtake each other) before it
	// fetches the gap from the store.
	gapGrace = 50 * time.Millisecond
	// roomCacheTTL bounds how stale a cached room (era, lang) may be when
	// another node changed it.
	roomCacheTTL = 2 * time.Second
)

// Limits on connections that have not authenticated yet.
const (
	// maxAuthFrameBytes is the read limit for the auth frame: a token is at
	// most maxTokenLen bytes, so anything bigger is not an auth frame.
	maxAuthFrameBytes = 1 << 10
	// maxUnauthenticated bounds the sockets waiting for their auth frame at
	// once; past it /ws answers 503 before upgrading, so a flood of idle
	// sockets cannot hold more than this many goroutines.
	maxUnauthenticated = 1024
	// MaxConnsPerUser bounds one user's connections on a node: every tab
	// and device of a person fits, while one session cannot open sockets
	// without bound or multiply each fan-out to it.
	MaxConnsPerUser = 32
)

// WebSocket buffer sizes: small, because 10,000 idle connections must fit
// in 10 KB each; writes borrow a pooled buffer only while writing.
const (
	readBufferSize  = 1024
	writeBufferSize = 4096
)

// Limits are the server's size and rate limits.
type Limits struct {
	MaxTextRunes    int
	MaxNameRunes    int
	MaxFrameBytes   int64
	MaxRoomsPerUser int
	MaxGroupMembers int
	SendRate        rate.Limit
	SendBurst       int
	RateStrikes     int
	MaxQueueBytes   int
	SessionRate     rate.Limit
	SessionBurst    int
	// AuthWait, PongWait and ResumeWait default to authWait, pongWait and
	// resumeWait; tests shorten or lengthen them.
	AuthWait   time.Duration
	PongWait   time.Duration
	ResumeWait time.Duration
}

// withDefaults returns l with every zero field set to its default.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxTextRunes, DefaultMaxTextRunes)
	def(&l.MaxNameRunes, DefaultMaxNameRunes)
	def(&l.MaxRoomsPerUser, DefaultMaxRoomsPerUser)
	def(&l.MaxGroupMembers, DefaultMaxGroupMembers)
	def(&l.SendBurst, DefaultSendBurst)
	def(&l.RateStrikes, DefaultRateStrikes)
	def(&l.MaxQueueBytes, DefaultMaxQueueBytes)
	def(&l.SessionBurst, DefaultSessionBurst)
	if l.MaxFrameBytes <= 0 {
		l.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if l.SendRate <= 0 {
		l.SendRate = DefaultSendRate
	}
	if l.SessionRate <= 0 {
		l.SessionRate = DefaultSessionRate
	}
	if l.AuthWait <= 0 {
		l.AuthWait = authWait
	}
	if l.PongWait <= 0 {
		l.PongWait = pongWait
	}
	if l.ResumeWait <= 0 {
		l.ResumeWait = resumeWait
	}
	return l
}
