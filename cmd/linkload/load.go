package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/procfs"

	"github.com/linkwall/linkwall/internal/cputime"
)

// linkBotID is LinkBot's fixed user id (chat.LinkBotID, part of API v1),
// repeated here so that linkload builds without the server's packages.
const linkBotID = "00000000-0000-0000-0000-00000000b07a"

// loadConfig describes one load: who chats where, and how fast.
type loadConfig struct {
	Target   string        // http://host:port
	Protocol string        // protoV1 (linkwall, the baseline) or protoCentrifugo; "" = v1
	Users    int           // users created (U)
	Rooms    int           // group rooms (R)
	Group    int           // members per room, creator included (G)
	Conns    int           // WebSocket clients, one per user (N ≤ U); 0 = U
	Senders  int           // users that send (S); 0 = every connected member
	Rate     float64       // messages per second, all senders together (M)
	Duration time.Duration // send window (-d)
	Count    int64         // stop after this many messages; 0 = no bound
	Drain    time.Duration // how long to wait for the last deliveries
	// UsersPerIP spreads session creation over loopback source addresses
	// (see api.usersPerIP); 0 uses one address.
	UsersPerIP int
	// Slice, when positive, also reports the latency of each slice of
	// this length (phase.Slices).
	Slice time.Duration
	// Warmup, when positive, precedes each measured phase on fresh
	// connections with this long at the same rate, reported apart
	// (phase.Warmup): fresh processes and connections are slow for their
	// first few hundred milliseconds, which a 10 s run's p99 would show.
	Warmup time.Duration
	// SocketTime also times each delivery to the receiver's socket
	// (phase.SocketLatency). Off by default: reading with recvmsg(2)
	// takes linkload about 0.01–0.04 more of a core at 5,000 msgs/s,
	// which on a full machine raised linkwall's p50 by 1.6–2.2 ms (runs
	// W2 in docs/benchmarks.md).
	SocketTime bool
	Progress   io.Writer // one line per second; nil for none
}

func (c *loadConfig) check() error {
	switch {
	case c.Users < 1 || c.Rooms < 1 || c.Group < 2:
		return errors.New("need -users ≥ 1, -rooms ≥ 1, -group ≥ 2")
	case c.Group > c.Users:
		return fmt.Errorf("-group %d is larger than -users %d", c.Group, c.Users)
	case c.Conns < 0 || c.Conns > c.Users:
		return fmt.Errorf("-conns must be 0..%d", c.Users)
	case c.Rate <= 0:
		return errors.New("-rate must be positive")
	case c.Duration <= 0 && c.Count <= 0:
		return errors.New("need a bound: -d or -n")
	case c.Protocol != "" && c.Protocol != protoV1 && c.Protocol != protoCentrifugo:
		return fmt.Errorf("-protocol %q: want %s or %s", c.Protocol, protoV1, protoCentrifugo)
	}
	return nil
}

// load is one set of users, rooms and open connections against a target,
// on which phases of traffic run.
type load struct {
	cfg  loadConfig
	api  *api
	run  string // random id: markers of other runs are not ours
	base time.Time

	users     []user
	rooms     []roomInfo
	connected []int64 // connected members per room: deliveries per message
	clients   []*wsClient
	senders   []*wsClient
	rr        int          // next sender, round robin
	nextN     int64        // next message number, owned by the pacer
	issued    atomic.Int64 // nextN for the readers: numbers ≥ it are not ours
	unsent    atomic.Int64 // handed to writers, not yet written (or failed)
	marker    []byte

	sent, acked, rejected  atomic.Int64
	expected, received     atomic.Int64
	dups, stray            atomic.Int64
	botMsgs, otherMsgs     atomic.Int64
	serverClosed           atomic.Int64
	closing                atomic.Bool
	lat                    atomic.Pointer[hist]
	sockLat                atomic.Pointer[hist] // send to the client's socket (stampedConn)
	mu                     sync.Mutex
	errs                   map[string]int64 // error frames by code, and client-side failures
	closes                 map[string]int64 // close codes of connections the server ended
	memBefore, memAfter    map[string]float64
	connectTime            time.Duration
	helloMissing, dialErrs int
}

func newLoad(cfg loadConfig) (*load, error) {
	if cfg.Conns == 0 {
		cfg.Conns = cfg.Users
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	a, err := newAPI(cfg.Target, cfg.UsersPerIP)
	if err != nil {
		return nil, err
	}
	l := &load{cfg: cfg, api: a, run: randID(), base: time.Now(),
		errs: map[string]int64{}, closes: map[string]int64{}}
	l.marker = []byte("[lw~" + l.run + "~")
	l.lat.Store(new(hist))
	l.sockLat.Store(new(hist))
	return l, nil
}

func randID() string {
	var b [3]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// now is the load's clock: monotonic nanoseconds since start, the unit of
// the timestamps carried in message texts.
func (l *load) now() int64 { return int64(time.Since(l.base)) }

func (l *load) count(m map[string]int64, key string) {
	l.mu.Lock()
	m[key]++
	l.mu.Unlock()
}

// member returns the user index of room r's j-th member.
func (l *load) member(r, j int) int { return (r*l.cfg.Group + j) % l.cfg.Users }

// setup creates users and rooms and connects the clients.
func (l *load) setup(ctx context.Context) error {
	cfg := l.cfg
	if cfg.Protocol == protoCentrifugo {
		l.setupCentrifugo()
	} else if err := l.createUsersAndRooms(ctx); err != nil {
		return err
	}
	l.connected = make([]int64, cfg.Rooms)
	l.clients = make([]*wsClient, cfg.Conns)
	for i := range l.clients {
		l.clients[i] = &wsClient{l: l, u: l.users[i], inRoom: make([]bool, cfg.Rooms),
			hello: make(chan struct{}), done: make(chan struct{}), sendRoom: -1}
	}
	for r := range cfg.Rooms {
		for j := range cfg.Group {
			if i := l.member(r, j); i < cfg.Conns && !l.clients[i].inRoom[r] {
				l.clients[i].inRoom[r] = true
				l.connected[r]++
			}
		}
	}
	l.api.closeIdle() // the sign-up connections are not part of the measurement
	l.memBefore, _ = l.api.scrapeMetrics(ctx)
	if err := l.connect(ctx); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond) // let the server settle before reading its memory
	l.memAfter, _ = l.api.scrapeMetrics(ctx)

	// Senders: spread evenly over the rooms, each sending to one room.
	want := cfg.Senders
	if want <= 0 {
		want = cfg.Conns
	}
	for i, misses := 0, 0; len(l.senders) < want && misses < cfg.Rooms; i++ {
		r, k := i%cfg.Rooms, i/cfg.Rooms
		if k >= cfg.Group {
			misses++
			continue
		}
		idx := l.member(r, k)
		if idx >= cfg.Conns || l.clients[idx].sendRoom >= 0 || l.clients[idx].conn == nil {
			continue
		}
		c := l.clients[idx]
		c.sendRoom = r
		c.out = make(chan int64, 4096)
		c.wdone = make(chan struct{})
		l.senders = append(l.senders, c)
	}
	if len(l.senders) == 0 {
		return errors.New("no connected sender")
	}
	for i, c := range l.senders {
		go c.write(mrand.New(mrand.NewPCG(uint64(i), uint64(l.base.UnixNano()))))
	}
	return nil
}

// createUsersAndRooms signs the load's users up and creates its group
// rooms through API v1.
func (l *load) createUsersAndRooms(ctx context.Context) error {
	cfg := l.cfg
	var err error
	if l.users, err = l.api.createUsers(ctx, "lw"+l.run, cfg.Users); err != nil {
		return fmt.Errorf("create users: %w", err)
	}
	l.rooms = make([]roomInfo, cfg.Rooms)
	for r := range l.rooms {
		owner := l.users[l.member(r, 0)]
		var members []string
		for j := 1; j < cfg.Group; j++ {
			members = append(members, l.users[l.member(r, j)].ID)
		}
		if l.rooms[r], err = l.api.createGroup(ctx, owner, fmt.Sprintf("load %s #%d", l.run, r), members); err != nil {
			return fmt.Errorf("create room %d: %w", r, err)
		}
	}
	return nil
}

// connect dials every client, a few at a time, and waits for its hello.
func (l *load) connect(ctx context.Context) error {
	nd := &net.Dialer{Timeout: 10 * time.Second}
	d := &websocket.Dialer{
		HandshakeTimeout: 15 * time.Second,
		// A frame carries a group commit's messages for one member, often
		// over 4 KB: read it in one read(2), not in 4 KB pieces. At 6,000
		// msgs/s this took linkload from 79k to 50k reads a second.
		ReadBufferSize:  frameBufSize,
		WriteBufferSize: 2048,
		WriteBufferPool: &sync.Pool{},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if l.cfg.SocketTime {
				c = stampConn(c, l.base)
			}
			return c, nil
		},
	}
	start := time.Now()
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	next := make(chan *wsClient)
	for range 32 {
		wg.Go(func() {
			for c := range next {
				dial := l.dialV1
				if l.cfg.Protocol == protoCentrifugo {
					dial = l.dialCentrifugo
				}
				conn, err := dial(ctx, d, c)
				if err != nil {
					mu.Lock()
					l.dialErrs++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					close(c.done)
					continue
				}
				c.conn = conn
				c.sock, _ = conn.NetConn().(*stampedConn)
				go c.read()
				select {
				case <-c.hello:
				case <-c.done:
				case <-time.After(10 * time.Second):
					mu.Lock()
					l.helloMissing++
					mu.Unlock()
				}
			}
		})
	}
	for _, c := range l.clients {
		next <- c
	}
	close(next)
	wg.Wait()
	l.connectTime = time.Since(start)
	if l.dialErrs > 0 {
		return fmt.Errorf("%d of %d connections failed: %w", l.dialErrs, len(l.clients), firstErr)
	}
	return nil
}

// dialV1 connects c as its user; the server subscribes it to its rooms.
func (l *load) dialV1(ctx context.Context, d *websocket.Dialer, c *wsClient) (*websocket.Conn, error) {
	return l.api.dial(ctx, d, c.u)
}

// close ends the senders, closes every connection with 1000 and waits for
// the readers.
func (l *load) close() {
	l.closing.Store(true)
	for _, c := range l.senders {
		close(c.out)
	}
	for _, c := range l.senders {
		<-c.wdone
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "load done")
	for _, c := range l.clients {
		if c.conn != nil {
			c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		}
	}
	deadline := time.After(3 * time.Second)
	for _, c := range l.clients {
		select {
		case <-c.done:
		case <-deadline:
		}
		if c.conn != nil {
			c.conn.Close()
		}
	}
	// Idle keep-alive connections would hold up the server's graceful
	// shutdown (compare stops its children right after a load).
	l.api.closeIdle()
}

// wsClient is one WebSocket connection of the load: one reader goroutine,
// and for senders one writer goroutine fed by the pacer.
type wsClient struct {
	l        *load
	u        user
	conn     *websocket.Conn
	sock     *stampedConn // conn's socket, if it has receive timestamps
	inRoom   []bool
	seen     []uint64 // bitset of message numbers received, to find duplicates
	hello    chan struct{}
	gotHello bool
	helloID  uint32        // Centrifugo: the reply that stands for hello
	done     chan struct{} // closed when the reader ends
	// wmu orders the writes of the sender and, for Centrifugo, the
	// reader's answers to pings.
	wmu sync.Mutex

	sendRoom int        // room this client sends to, -1 if it does not send
	out      chan int64 // message numbers to send
	wdone    chan struct{}
}

var (
	nl          = []byte{'\n'}
	keyCMID     = []byte(`"client_msg_id":"`)
	keyText     = []byte(`"text":"`)
	typeMessage = []byte(`"type":"message"`)
	typeError   = []byte(`"type":"error"`)
	typeHello   = []byte(`"type":"hello"`)
	botID       = []byte(`"` + linkBotID + `"`)
)

// frameBufSize is the size of a client's socket read buffer and of the
// buffer its reader takes objects out of. A frame carries a group
// commit's messages for one member, often over 4 KB, and everything
// queued for it while a server catches up.
const frameBufSize = 64 << 10

func (c *wsClient) read() {
	defer close(c.done)
	buf := make([]byte, frameBufSize)
	for {
		_, r, err := c.conn.NextReader()
		if err == nil {
			err = c.readFrame(r, &buf)
		}
		if err != nil {
			c.l.ended(err)
			return
		}
	}
}

// readFrame hands each newline-separated object of one frame to line as
// soon as it has arrived, keeping only a partial object between reads, so
// a frame of any size reads through the same buffer. Reading whole frames
// into a buffer that grew to fit them cost linkload a third of its CPU
// at the start of each load, when 200 buffers grew at once while the
// server's first frames were largest, and made those deliveries up to
// 180–280 ms late (runs U1 and U4 in docs/benchmarks.md).
func (c *wsClient) readFrame(r io.Reader, bufp *[]byte) error {
	buf, n := *bufp, 0 // buf[:n] holds the start of an object
	for {
		if n == len(buf) { // one object larger than the buffer
			buf = append(buf, make([]byte, len(buf))...)
			*bufp = buf
		}
		m, err := r.Read(buf[n:])
		now := c.l.now()
		// These bytes came with the socket's latest read or an earlier
		// one, so they reached the socket no later than its timestamp
		// (an upper bound: a read that takes several segments is stamped
		// with the last).
		var arrived int64
		if c.sock != nil {
			arrived = c.sock.arrived
		}
		data := buf[:n+m]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			c.line(data[:i], now, arrived)
			data = data[i+1:]
		}
		n = copy(buf, data)
		if err == io.EOF {
			if n > 0 {
				c.line(buf[:n], now, arrived)
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// line handles one JSON object that linkload read at now, and that reached
// its socket at arrived (0 if unknown). Only what the counts need is
// looked at: a marker at the start of a text, the acknowledgement at the
// end.
// linkload shares the machine with the server, so it reads no more of an
// object than it must: a message with links is a few kilobytes, and
// searching it for each key was most of linkload's CPU.
func (c *wsClient) line(line []byte, now, arrived int64) {
	l := c.l
	if i := bytes.Index(line, l.marker); i >= 0 {
		room, n, ts, ok := parseMarker(line[i+len(l.marker):])
		switch {
		case !ok:
			l.otherMsgs.Add(1)
		case !bytes.HasSuffix(line[:i], keyText):
			// Not at the start of a text: quoted inside another message.
			if bytes.Contains(line[:i], botID) {
				l.botMsgs.Add(1)
			} else {
				l.otherMsgs.Add(1)
			}
		case room < 0 || room >= len(c.inRoom) || !c.inRoom[room] || n < 0 || n >= l.issued.Load():
			l.stray.Add(1)
		case c.markSeen(n):
			l.dups.Add(1)
		default:
			l.lat.Load().Record(time.Duration(now - ts))
			if arrived > 0 {
				l.sockLat.Load().Record(time.Duration(arrived - ts))
			}
			if l.cfg.Protocol != protoCentrifugo && c.isAck(line, room, n) {
				l.acked.Add(1)
			}
			// Counted last: a phase's drain ends once received reaches
			// expected, and then reads the other counters.
			l.received.Add(1)
		}
		return
	}
	if l.cfg.Protocol == protoCentrifugo {
		c.cfLine(line)
		return
	}
	switch {
	case bytes.Contains(line, typeMessage):
		if bytes.Contains(line, botID) {
			l.botMsgs.Add(1)
		} else {
			l.otherMsgs.Add(1)
		}
	case bytes.Contains(line, typeError):
		l.errorFrame(line)
	case !c.gotHello && bytes.Contains(line, typeHello):
		c.gotHello = true
		close(c.hello)
	}
}

// markSeen records message n and reports whether it was already seen.
func (c *wsClient) markSeen(n int64) bool {
	w := int(n >> 6)
	if w >= len(c.seen) {
		c.seen = append(c.seen, make([]uint64, max(w+1, 2*len(c.seen))-len(c.seen))...)
	}
	bit := uint64(1) << (n & 63)
	dup := c.seen[w]&bit != 0
	c.seen[w] |= bit
	return dup
}

// isAck reports whether line ends with the client_msg_id of message n of
// room, as the sender's copy does (the field comes last in both servers).
func (c *wsClient) isAck(line []byte, room int, n int64) bool {
	var b [160]byte
	t := append(b[:0], keyCMID...)
	t = append(t, c.l.run...)
	t = append(t, '-')
	t = strconv.AppendInt(t, int64(room), 10)
	t = append(t, '-')
	t = strconv.AppendInt(t, n, 10)
	t = append(t, '"', '}')
	return bytes.HasSuffix(line, t)
}

// parseMarker reads "ROOM~N~NANOS]" after the run's marker prefix.
func parseMarker(b []byte) (room int, n, ts int64, ok bool) {
	var f [3]int64
	for k, sep := range []byte("~~]") {
		v, i := int64(0), 0
		for ; i < len(b) && i < 19 && b[i] >= '0' && b[i] <= '9'; i++ {
			v = v*10 + int64(b[i]-'0')
		}
		if i == 0 || i == len(b) || b[i] != sep {
			return 0, 0, 0, false
		}
		f[k] = v
		b = b[i+1:]
	}
	return int(f[0]), f[1], f[2], true
}

func (l *load) errorFrame(line []byte) {
	var e struct {
		Code string `json:"code"`
		Ref  string `json:"ref"`
	}
	json.Unmarshal(line, &e)
	l.count(l.errs, "frame:"+e.Code)
	// A rejected send was never delivered: it is not expected either.
	if room, ok := l.parseCMID(e.Ref); ok {
		l.rejected.Add(1)
		l.expected.Add(-l.connected[room])
	}
}

func (l *load) cmid(room int, n int64) string {
	return l.run + "-" + strconv.Itoa(room) + "-" + strconv.FormatInt(n, 10)
}

func (l *load) parseCMID(s string) (room int, ok bool) {
	rest, ok := bytes.CutPrefix([]byte(s), []byte(l.run+"-"))
	if !ok {
		return 0, false
	}
	r, _, ok := bytes.Cut(rest, []byte("-"))
	if !ok {
		return 0, false
	}
	room, err := strconv.Atoi(string(r))
	if err != nil || room < 0 || room >= len(l.connected) {
		return 0, false
	}
	return room, true
}

// ended records why a connection ended, unless the load closed it.
func (l *load) ended(err error) {
	if l.closing.Load() {
		return
	}
	l.serverClosed.Add(1)
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		l.count(l.closes, strconv.Itoa(ce.Code))
		return
	}
	l.count(l.closes, "no close frame")
}

type sendFrame struct {
	Type        string `json:"type"`
	Room        string `json:"room"`
	Text        string `json:"text"`
	ClientMsgID string `json:"client_msg_id"`
}

// write sends the messages the pacer hands out. The timestamp is taken
// right before the write, so latency is send-to-receipt.
func (c *wsClient) write(rng *mrand.Rand) {
	defer close(c.wdone)
	l, room := c.l, c.sendRoom
	f := sendFrame{Type: "send", Room: l.rooms[room].ID}
	failed := false
	for n := range c.out {
		if failed {
			l.unsent.Add(-1)
			continue
		}
		ts := l.now()
		text := "[lw~" + l.run + "~" + strconv.Itoa(room) + "~" + strconv.FormatInt(n, 10) + "~" +
			strconv.FormatInt(ts, 10) + "] " + mixText(rng)
		var b []byte
		if l.cfg.Protocol == protoCentrifugo {
			b = l.publishFrame(room, n, text)
		} else {
			f.Text, f.ClientMsgID = text, l.cmid(room, n)
			b, _ = json.Marshal(&f)
		}
		// Counted before the write, so that receivers never get ahead of it.
		l.sent.Add(1)
		l.expected.Add(l.connected[room])
		c.wmu.Lock()
		c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		err := c.conn.WriteMessage(websocket.TextMessage, b)
		c.wmu.Unlock()
		if err != nil {
			l.sent.Add(-1)
			l.expected.Add(-l.connected[room])
			if !l.closing.Load() {
				l.count(l.errs, "write failed")
			}
			failed = true
		}
		l.unsent.Add(-1)
	}
}

// counters is a snapshot of the load's counts.
type counters struct {
	sent, acked, rejected, expected, received, dups, stray, bot, closed int64
}

func (l *load) snapshot() counters {
	return counters{l.sent.Load(), l.acked.Load(), l.rejected.Load(), l.expected.Load(),
		l.received.Load(), l.dups.Load(), l.stray.Load(), l.botMsgs.Load(), l.serverClosed.Load()}
}

func (a counters) minus(b counters) counters {
	return counters{a.sent - b.sent, a.acked - b.acked, a.rejected - b.rejected, a.expected - b.expected,
		a.received - b.received, a.dups - b.dups, a.stray - b.stray, a.bot - b.bot, a.closed - b.closed}
}

// phase is the outcome of one stretch of traffic at one rate.
type phase struct {
	TargetRate      float64 `json:"target_msgs_per_s"`
	Seconds         float64 `json:"send_seconds"`
	Sent            int64   `json:"sent"`
	Acked           int64   `json:"acked"`
	Rejected        int64   `json:"rejected"`
	Expected        int64   `json:"expected_deliveries"`
	Received        int64   `json:"received_deliveries"`
	Dropped         int64   `json:"dropped"`
	Duplicates      int64   `json:"duplicates"`
	Stray           int64   `json:"stray"`
	BotMessages     int64   `json:"bot_messages"`
	ClientsDropped  int64   `json:"clients_dropped"`
	SendRate        float64 `json:"sent_msgs_per_s"`
	DeliveredPerSec float64 `json:"delivered_per_s"`
	DrainMs         float64 `json:"drain_ms"` // from the end of sending until the last delivery
	// ClientCores is the CPU linkload itself used, in cores: on a 2-core
	// machine the load generator and the server share the CPU.
	ClientCores float64 `json:"client_cpu_cores"`
	// ServerCores is the CPU the server used (process_cpu_seconds_total),
	// and DeliveriesPerCPUSecond what it delivered per second of it: a
	// figure that other jobs on a shared machine disturb much less than
	// the peak rate.
	ServerCores            float64 `json:"server_cpu_cores,omitempty"`
	DeliveriesPerCPUSecond float64 `json:"deliveries_per_server_cpu_s,omitempty"`
	// ServerAppendMs and ServerSendMs are linkwall's own means over the
	// phase: the durable append (group commit included; LinkBot's notices
	// counted too), and a person's message from receipt to queued for
	// every member (its append included). They show the server's part of
	// the end-to-end latency; the rest is writing, the network and the
	// client. Absent for the baseline.
	ServerAppendMs float64 `json:"server_append_mean_ms,omitempty"`
	ServerSendMs   float64 `json:"server_send_mean_ms,omitempty"`
	// ServerSyncMs and ServerBatch are the embedded store's: the mean
	// fdatasync of its WAL and the mean appends per group commit.
	ServerSyncMs float64 `json:"server_sync_mean_ms,omitempty"`
	ServerBatch  float64 `json:"server_batch_mean,omitempty"`
	// LoadAvg is the machine's 1-minute load average at the start and the
	// end of the phase (from /proc/loadavg): how busy the machine was.
	LoadAvg [2]float64 `json:"loadavg"`
	// MachineBusyCores is the CPU every process and the kernel used over
	// the phase, in cores of MachineCores (from /proc/stat): the server and
	// linkload share the machine, and how close it is to full sets the
	// latency's tail. MachineStealCores is the time the hypervisor gave
	// this VM's cores to others while it had work.
	MachineCores      int     `json:"machine_cores,omitempty"`
	MachineBusyCores  float64 `json:"machine_busy_cores,omitempty"`
	MachineStealCores float64 `json:"machine_steal_cores,omitempty"`
	Latency           Latency `json:"latency"`
	// SocketLatency is from the send to the moment the server's frame
	// reached the receiver's socket (the kernel's receive timestamp),
	// without the receiver's own wait for a core and reading: the server's
	// part of the latency and the network's. Absent without -socket-time,
	// and where the kernel gives no timestamps.
	SocketLatency *Latency `json:"socket_latency,omitempty"`
	Slices        []Slice  `json:"slices,omitempty"`  // with -slices
	SliceSeconds  float64  `json:"slice_s,omitempty"` // their length
	// SliceP99MedianMs and SliceP99P90Ms are the median and the 90th
	// percentile of the slices' p99s (sliceSpread).
	SliceP99MedianMs float64 `json:"slice_p99_median_ms,omitempty"`
	SliceP99P90Ms    float64 `json:"slice_p99_p90_ms,omitempty"`
	// SocketSliceP99MedianMs is the median of the slices' socket p99s.
	SocketSliceP99MedianMs float64 `json:"socket_slice_p99_median_ms,omitempty"`
	// Warmup is the stretch at the same rate that came first (-warmup),
	// not counted in the figures above.
	Warmup *phase `json:"warmup,omitempty"`
}

// machineCPU is the machine's CPU time so far, from /proc/stat; cores is
// 0 where there is none.
type machineCPU struct {
	cores       int
	busy, steal float64 // seconds
}

func readMachineCPU() machineCPU {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return machineCPU{}
	}
	st, err := fs.Stat()
	if err != nil {
		return machineCPU{}
	}
	t := st.CPUTotal
	// Guest time is counted in user already.
	return machineCPU{cores: len(st.CPU),
		busy: t.User + t.Nice + t.System + t.IRQ + t.SoftIRQ, steal: t.Steal}
}

// machineUse fills p's machine figures from readings taken before and
// after a phase of length d.
func (p *phase) machineUse(before, after machineCPU, d time.Duration) {
	if before.cores == 0 || after.cores == 0 || d <= 0 {
		return
	}
	p.MachineCores = after.cores
	p.MachineBusyCores = (after.busy - before.busy) / d.Seconds()
	p.MachineStealCores = (after.steal - before.steal) / d.Seconds()
}

// loadAvg returns the 1-minute load average, 0 where unknown.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}

// measure runs a phase on connections that have carried nothing yet:
// after the warm-up, if one is configured.
func (l *load) measure(ctx context.Context, rate float64, dur time.Duration, count int64) phase {
	var w *phase
	if l.cfg.Warmup > 0 {
		p := l.runPhase(ctx, rate, l.cfg.Warmup, 0)
		w = &p
	}
	p := l.runPhase(ctx, rate, dur, count)
	p.Warmup = w
	return p
}

// runPhase sends at rate for dur (or count messages), then waits for the
// deliveries still in flight.
func (l *load) runPhase(ctx context.Context, rate float64, dur time.Duration, count int64) phase {
	h, hs := new(hist), new(hist)
	l.lat.Store(h)
	l.sockLat.Store(hs)
	la0 := loadAvg()
	srv0, _ := l.api.scrapeMetrics(ctx)
	before := l.snapshot()
	cpu0, mach0 := cputime.Process(), readMachineCPU()
	start := time.Now()
	sl := startSlices(h, hs, start, l.cfg.Slice)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	var issued int64
	last := before
	report := func() {
		cur := l.snapshot()
		d := cur.minus(last)
		last = cur
		if l.cfg.Progress != nil {
			fmt.Fprintf(l.cfg.Progress, "[linkload] %5.1fs rate %.0f/s: sent %d/s, delivered %d/s, backlog %d, p99 %.2fms, errors %d, clients dropped %d\n",
				time.Since(start).Seconds(), rate, d.sent, d.received, cur.expected-cur.received,
				ms(h.Quantile(0.99)), l.errCount(), cur.closed)
		}
	}
send:
	for {
		select {
		case <-ctx.Done():
			break send
		case <-progress.C:
			report()
		case <-tick.C:
		}
		el := time.Since(start)
		over := dur > 0 && el >= dur
		if over {
			el = dur // the last tick issues what the window is owed
		}
		due := int64(rate * el.Seconds())
		if count > 0 {
			due = min(due, count)
		}
		for ; issued < due; issued++ {
			c := l.senders[l.rr%len(l.senders)]
			l.rr++
			// Published before the send: the echo may beat this goroutine.
			l.issued.Store(l.nextN + 1)
			l.unsent.Add(1)
			select {
			case c.out <- l.nextN:
				l.nextN++
			case <-ctx.Done():
				l.unsent.Add(-1)
				break send
			}
		}
		if over || (count > 0 && issued >= count) {
			break
		}
	}
	window := time.Since(start)
	// Wait until every sender has written what it was handed.
	for l.unsent.Load() > 0 && ctx.Err() == nil && time.Since(start) < window+l.cfg.Drain {
		time.Sleep(time.Millisecond)
	}
	sendEnd := time.Now()
	for ctx.Err() == nil && time.Since(sendEnd) < l.cfg.Drain {
		if c := l.snapshot(); c.received >= c.expected {
			break
		}
		select {
		case <-progress.C:
			report()
		case <-time.After(2 * time.Millisecond):
		}
	}
	drain := time.Since(sendEnd)
	d := l.snapshot().minus(before)
	p := phase{
		TargetRate: rate, Seconds: window.Seconds(),
		Sent: d.sent, Acked: d.acked, Rejected: d.rejected, Expected: d.expected, Received: d.received,
		Dropped: d.expected - d.received, Duplicates: d.dups, Stray: d.stray, BotMessages: d.bot,
		ClientsDropped: d.closed, DrainMs: float64(drain.Microseconds()) / 1000,
		SendRate: float64(d.sent) / window.Seconds(),
		Latency:  h.Summary(),
		Slices:   sl.stop(),
	}
	if len(p.Slices) > 0 {
		p.SliceSeconds = l.cfg.Slice.Seconds()
		p.SliceP99MedianMs, p.SliceP99P90Ms = sliceSpread(p.Slices, func(s Slice) float64 { return s.P99Ms })
		p.SocketSliceP99MedianMs, _ = sliceSpread(p.Slices, func(s Slice) float64 { return s.SocketP99Ms })
	}
	if hs.n.Load() > 0 {
		s := hs.Summary()
		p.SocketLatency = &s
	}
	p.DeliveredPerSec = float64(d.received) / (window + drain).Seconds()
	p.ClientCores = float64(cputime.Process()-cpu0) / float64(window+drain)
	p.machineUse(mach0, readMachineCPU(), time.Since(start))
	p.LoadAvg = [2]float64{la0, loadAvg()}
	if srv1, err := l.api.scrapeMetrics(ctx); err == nil {
		const key = "process_cpu_seconds_total"
		c0, ok0 := srv0[key]
		c1, ok1 := srv1[key]
		if used := c1 - c0; ok0 && ok1 && used > 0 {
			p.ServerCores = used / (window + drain).Seconds()
			p.DeliveriesPerCPUSecond = float64(d.received) / used
		}
		p.ServerAppendMs = meanMs(srv0, srv1, appendSum, appendCount)
		p.ServerSendMs = meanMs(srv0, srv1, sendSum, sendCount)
		p.ServerSyncMs = meanMs(srv0, srv1, syncSum, syncCount)
		p.ServerBatch = mean(srv0, srv1, batchSum, batchCount)
	}
	return p
}

// slicer takes a copy of a phase's histograms (end to end, and to the
// socket) every slice and keeps the difference, in its own goroutine,
// which stop ends.
type slicer struct {
	stopc  chan struct{}
	done   chan struct{}
	slices []Slice
}

// startSlices slices h and hs from start on; every is 0 for none.
func startSlices(h, hs *hist, start time.Time, every time.Duration) *slicer {
	s := &slicer{stopc: make(chan struct{}), done: make(chan struct{})}
	if every <= 0 {
		close(s.done)
		return s
	}
	go func() {
		defer close(s.done)
		prev, cur := make([]uint64, histBuckets), make([]uint64, histBuckets)
		sprev, scur := make([]uint64, histBuckets), make([]uint64, histBuckets)
		t := time.NewTicker(every)
		defer t.Stop()
		take := func() Slice {
			h.copyCounts(cur)
			hs.copyCounts(scur)
			sl := sliceOf(time.Since(start), prev, cur)
			sl.SocketP99Ms = sliceOf(0, sprev, scur).P99Ms
			return sl
		}
		for {
			select {
			case <-s.stopc:
				if sl := take(); sl.Delivered > 0 {
					s.slices = append(s.slices, sl)
				}
				return
			case <-t.C:
			}
			s.slices = append(s.slices, take())
			prev, cur = cur, prev
			sprev, scur = scur, sprev
		}
	}()
	return s
}

// stop ends the slicing and returns the slices, the last one partial.
func (s *slicer) stop() []Slice {
	close(s.stopc)
	<-s.done
	return s.slices
}

func (l *load) errCount() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, v := range l.errs {
		n += v
	}
	return n
}

func (l *load) errorsCopy() (errs, closes map[string]int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	errs, closes = map[string]int64{}, map[string]int64{}
	for k, v := range l.errs {
		errs[k] = v
	}
	for k, v := range l.closes {
		closes[k] = v
	}
	return errs, closes
}
