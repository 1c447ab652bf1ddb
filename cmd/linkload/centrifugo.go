package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// The protocols linkload speaks (-protocol). v1 is linkwall's API v1, which
// the baseline speaks too. centrifugo is the JSON client protocol of
// Centrifugo (v5 and v6), so that the same load, clients and figures
// measure that server as well: no users or rooms are created, each room is
// a channel, each connection subscribes to its rooms, a message is a
// publish command, and the acknowledgement is the publish reply.
const (
	protoV1         = "v1"
	protoCentrifugo = "centrifugo"
)

// cfFirstPublishID is the id of a connection's first publish command. The
// ids below it are the connect (1) and subscribe commands; a publish's id
// also says its message number and room: cfFirstPublishID + n·rooms + room.
// Command ids are 32 bits in Centrifugo's protocol.
const cfFirstPublishID = 1 << 16

// cfDialPath is where Centrifugo serves its bidirectional WebSocket.
const cfDialPath = "/connection/websocket"

// cfConnect is the connect command of an anonymous connection (the server
// is configured to allow those); cfConnected starts its reply.
var (
	cfConnect   = []byte(`{"id":1,"connect":{}}`)
	cfConnected = []byte(`{"id":1,"connect":`)
)

// connectCentrifugo opens a WebSocket to Centrifugo, same-origin, and sends
// the connect command followed by cmds (newline-separated commands, which
// Centrifugo reads in order).
func (a *api) connectCentrifugo(ctx context.Context, d *websocket.Dialer, cmds []byte) (*websocket.Conn, error) {
	scheme := "ws"
	if a.base.Scheme == "https" {
		scheme = "wss"
	}
	h := http.Header{}
	h.Set("Origin", a.origin)
	c, resp, err := d.DialContext(ctx, scheme+"://"+a.base.Host+cfDialPath, h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %d)", cfDialPath, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", cfDialPath, err)
	}
	frame := cfConnect
	if len(cmds) > 0 {
		frame = slices.Concat(cfConnect, nl, cmds)
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, frame); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return c, nil
}

// setupCentrifugo names the load's users and channels; Centrifugo has no
// accounts or rooms to create.
func (l *load) setupCentrifugo() {
	l.users = make([]user, l.cfg.Users)
	for i := range l.users {
		l.users[i] = user{ID: "lw" + l.run + "-" + strconv.Itoa(i)}
	}
	l.rooms = make([]roomInfo, l.cfg.Rooms)
	for r := range l.rooms {
		l.rooms[r] = roomInfo{ID: "lw" + l.run + "-room-" + strconv.Itoa(r)}
	}
}

type cfCommand struct {
	ID        uint32       `json:"id"`
	Subscribe *cfSubscribe `json:"subscribe,omitempty"`
	Publish   *cfPublish   `json:"publish,omitempty"`
}

type cfSubscribe struct {
	Channel string `json:"channel"`
}

type cfPublish struct {
	Channel string `json:"channel"`
	Data    struct {
		Text string `json:"text"`
	} `json:"data"`
}

// dialCentrifugo connects c and subscribes it to its rooms, in the
// connect command's frame. The reply to the last subscribe stands for
// v1's hello.
func (l *load) dialCentrifugo(ctx context.Context, d *websocket.Dialer, c *wsClient) (*websocket.Conn, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	id := uint32(1) // the connect command's
	for r, in := range c.inRoom {
		if in {
			id++
			enc.Encode(cfCommand{ID: id, Subscribe: &cfSubscribe{Channel: l.rooms[r].ID}})
		}
	}
	c.helloID = id
	return l.api.connectCentrifugo(ctx, d, bytes.TrimSuffix(buf.Bytes(), nl))
}

// publishFrame encodes message n of room as a publish command.
func (l *load) publishFrame(room int, n int64, text string) []byte {
	cmd := cfCommand{ID: cfFirstPublishID + uint32(n)*uint32(l.cfg.Rooms) + uint32(room),
		Publish: &cfPublish{Channel: l.rooms[room].ID}}
	cmd.Publish.Data.Text = text
	b, _ := json.Marshal(&cmd)
	return b
}

var (
	cfPing    = []byte("{}")
	cfReplyID = []byte(`{"id":`)
	cfError   = []byte(`"error":`)
	cfPush    = []byte(`{"push":`)
)

// cfLine handles a Centrifugo object other than one of the load's
// publications: a reply, a ping, or another push.
func (c *wsClient) cfLine(line []byte) {
	l := c.l
	switch {
	case bytes.Equal(line, cfPing):
		// The server drops a connection that does not answer its pings.
		c.wmu.Lock()
		c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		err := c.conn.WriteMessage(websocket.TextMessage, cfPing)
		c.wmu.Unlock()
		if err != nil && !l.closing.Load() {
			l.count(l.errs, "pong failed")
		}
	case bytes.HasPrefix(line, cfReplyID):
		rest := line[len(cfReplyID):]
		i := 0
		for i < len(rest) && i < 10 && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		id, err := strconv.ParseUint(string(rest[:i]), 10, 32)
		if err != nil {
			l.otherMsgs.Add(1)
			return
		}
		if bytes.Contains(rest[i:], cfError) {
			l.cfErrorReply(uint32(id), line)
			return
		}
		switch {
		case id >= cfFirstPublishID:
			l.acked.Add(1)
		case uint32(id) == c.helloID && !c.gotHello:
			c.gotHello = true
			close(c.hello)
		}
	case bytes.HasPrefix(line, cfPush):
		l.otherMsgs.Add(1)
	}
}

// cfErrorReply counts an error reply by its code; a rejected publish was
// never delivered, so it is not expected either.
func (l *load) cfErrorReply(id uint32, line []byte) {
	var e struct {
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(line, &e)
	l.count(l.errs, "reply:"+strconv.Itoa(e.Error.Code))
	if id >= cfFirstPublishID && l.cfg.Rooms > 0 {
		room := int((id - cfFirstPublishID) % uint32(l.cfg.Rooms))
		l.rejected.Add(1)
		l.expected.Add(-l.connected[room])
	}
}

// centrifugoConfig is a Centrifugo v6 configuration for a load: listen on
// addr, let anonymous connections from the same origin subscribe to any
// channel without a namespace and publish to the ones they subscribed to,
// serve /metrics for linkload's server CPU and memory figures, keep no
// history, log only errors, and send no usage statistics. Everything else,
// the 1 MB per-connection send queue among it, is Centrifugo's default.
func centrifugoConfig(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("-addr %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return "", fmt.Errorf("-addr %q: want a port number", addr)
	}
	origin := "http://" + net.JoinHostPort(host, port)
	cfg := map[string]any{
		"http_server": map[string]any{"address": host, "port": p},
		"log":         map[string]any{"level": "error"},
		"client": map[string]any{
			"allowed_origins":                       []string{origin},
			"allow_anonymous_connect_without_token": true,
		},
		"channel": map[string]any{"without_namespace": map[string]any{
			"allow_subscribe_for_anonymous": true,
			"allow_subscribe_for_client":    true,
			"allow_publish_for_anonymous":   true,
			"allow_publish_for_subscriber":  true,
		}},
		"prometheus":  map[string]any{"enabled": true},
		"usage_stats": map[string]any{"disabled": true},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	return string(b) + "\n", err
}
