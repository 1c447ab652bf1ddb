package redis

import (
	"bytes"
	"slices"
	"testing"

	"github.com/linkwall/linkwall/internal/chat"
)

func TestEventRoundTrip(t *testing.T) {
	for _, ev := range []chat.Event{
		{},
		{Room: "r", Seq: 1, Members: []string{"a"}, Payload: []byte(`{"type":"message"}`)},
		{Room: "room-with-a-long-id", Seq: 1 << 40, Members: []string{"a", "", "c\x00d"}, Payload: []byte("x\ny")},
		{Room: "r", Seq: -5, Members: make([]string, 300)},
	} {
		b := encodeEvent(nil, "node-1", &ev)
		node, got, err := decodeEvent(string(b))
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", ev, err)
		}
		if node != "node-1" || got.Room != ev.Room || got.Seq != ev.Seq ||
			!slices.Equal(got.Members, ev.Members) || !bytes.Equal(got.Payload, ev.Payload) {
			t.Errorf("round trip of %+v gave node %q, %+v", ev, node, got)
		}
	}
}

func TestDecodeEventRejects(t *testing.T) {
	good := string(encodeEvent(nil, "n", &chat.Event{Room: "r", Seq: 3, Members: []string{"a", "b"}, Payload: []byte("p")}))
	for name, b := range map[string]string{
		"empty":           "",
		"other version":   "\x02" + good[1:],
		"cut in node":     good[:2],
		"cut in members":  good[:len(good)-3],
		"huge count":      "\x01\x01n\x01r\x06\xff\xff\xff\xff\x0f",
		"huge length":     "\x01\xff\xff\xff\xff\xff\xff\xff\xff\x7fn",
		"varint overflow": "\x01\x01n\x01r\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
	} {
		if _, _, err := decodeEvent(b); err == nil {
			t.Errorf("%s: decodeEvent(%q) succeeded", name, b)
		}
	}
}

// FuzzDecodeEvent: decoding never panics, never claims more members than
// bytes, and what decodes re-encodes to the same bytes.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(string(encodeEvent(nil, "n", &chat.Event{Room: "r", Seq: 3, Members: []string{"a", "b"}, Payload: []byte(`{"type":"room"}`)})))
	f.Add(string(encodeEvent(nil, "", &chat.Event{})))
	f.Add("\x01\x01n\x01r\x06\xff\xff\xff\xff\x0f")
	f.Fuzz(func(t *testing.T, b string) {
		node, ev, err := decodeEvent(b)
		if err != nil {
			return
		}
		if len(ev.Members) > len(b) {
			t.Fatalf("%d members from %d bytes", len(ev.Members), len(b))
		}
		if again := string(encodeEvent(nil, node, &ev)); again != b {
			// Varints have one canonical encoding each, so only a
			// non-minimal varint in the input may differ.
			node2, ev2, err := decodeEvent(again)
			if err != nil || node2 != node || ev2.Room != ev.Room || ev2.Seq != ev.Seq ||
				!slices.Equal(ev2.Members, ev.Members) || !bytes.Equal(ev2.Payload, ev.Payload) {
				t.Fatalf("re-encoding %q gave %q, which decodes differently (%v)", b, again, err)
			}
		}
	})
}
