package redis

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/linkwall/linkwall/internal/chat"
)

// eventVersion is the first byte of an encoded event; a node that meets
// another version (a newer node during a rolling upgrade) skips the event
// instead of misreading it.
const eventVersion = 1

// encodeEvent appends the compact binary form of ev, published by node, to
// dst:
//
//	version byte
//	uvarint len, node
//	uvarint len, room
//	varint seq
//	uvarint count, then per member: uvarint len, member
//	payload (the rest)
//
// Binary rather than JSON: the payload is already JSON and would be escaped
// again, and every node decodes every event.
func encodeEvent(dst []byte, node string, ev *chat.Event) []byte {
	str := func(s string) {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = append(dst, eventVersion)
	str(node)
	str(ev.Room)
	dst = binary.AppendVarint(dst, ev.Seq)
	dst = binary.AppendUvarint(dst, uint64(len(ev.Members)))
	for _, m := range ev.Members {
		str(m)
	}
	return append(dst, ev.Payload...)
}

var errShortEvent = errors.New("truncated event")

// decodeEvent parses what encodeEvent wrote (as go-redis returns it, a
// string). The event's strings share b's memory; its payload is a copy.
func decodeEvent(b string) (node string, ev chat.Event, err error) {
	if len(b) == 0 {
		return "", ev, errShortEvent
	}
	if b[0] != eventVersion {
		return "", ev, fmt.Errorf("event version %d, want %d", b[0], eventVersion)
	}
	b = b[1:]
	str := func() (string, bool) {
		n, k := uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := b[k : k+int(n)]
		b = b[k+int(n):]
		return s, true
	}
	var ok bool
	if node, ok = str(); !ok {
		return "", ev, errShortEvent
	}
	if ev.Room, ok = str(); !ok {
		return "", ev, errShortEvent
	}
	seq, k := varint(b)
	if k <= 0 {
		return "", ev, errShortEvent
	}
	ev.Seq, b = seq, b[k:]
	count, k := uvarint(b)
	// Each member takes at least one byte: a larger count is a lie that
	// must not size an allocation.
	if k <= 0 || count > uint64(len(b)-k) {
		return "", ev, errShortEvent
	}
	b = b[k:]
	ev.Members = make([]string, 0, count)
	for range count {
		m, ok := str()
		if !ok {
			return "", chat.Event{}, errShortEvent
		}
		ev.Members = append(ev.Members, m)
	}
	ev.Payload = append([]byte(nil), b...)
	return node, ev, nil
}

// uvarint is binary.Uvarint for a string: n and the bytes read (≤ 0 on error).
func uvarint(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1) // overflow
			}
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

// varint is binary.Varint for a string.
func varint(s string) (int64, int) {
	ux, n := uvarint(s)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, n
}
