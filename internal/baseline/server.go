package baseline

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Limits. The baseline keeps the same guards a real server needs, so that the
// comparison with linkwall is not flattered by skipping them.
const (
	maxBodyBytes  = 64 << 10 // largest REST request body
	maxFrameBytes = 64 << 10 // largest WebSocket frame read from a client
	maxNameRunes  = 64       // user and room names
	maxTextBytes  = 8 << 10  // message text
	maxMembers    = 1000     // members of one room, creator included
	// sendQueueLen is how many frames may wait for one connection before
	// it is dropped as slow, as in the gorilla example. A channel of slices
	// costs 24 bytes a slot on every connection, idle or not (2048 slots
	// would be 48 KB each).
	sendQueueLen   = 256
	hubQueueLen    = 1024             // fan-outs queued for the hub
	writeWait      = 10 * time.Second // time allowed to write one frame
	pongWait       = 60 * time.Second // time allowed between pongs
	pingPeriod     = pongWait * 9 / 10
	sessionCookie  = "linkwall_session"
	closeSlowQueue = "send queue full"
)

// Server is the baseline chat server. Create it with New, serve Handler, and
// Close it to stop the hub and close every connection.
type Server struct {
	log       *zap.Logger
	upgrader  websocket.Upgrader
	hub       *hub
	mux       *http.ServeMux
	closeOnce sync.Once

	mu     sync.RWMutex
	tokens map[string]*user // session token → user
	rooms  map[string]*room
	member map[string][]*room // user id → rooms, oldest first
}

type user struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Bot       bool      `json:"bot"`
	CreatedAt time.Time `json:"created_at"`
}

type room struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Name      string    `json:"name"`
	Members   []string  `json:"members"`
	Era       string    `json:"era"`
	Lang      string    `json:"lang"`
	CreatedAt time.Time `json:"created_at"`

	// mu orders a room's messages: the seq is assigned and the fan-out
	// queued under it, so every member sees seq order.
	mu  sync.Mutex
	seq int64
}

func (r *room) has(id string) bool {
	for _, m := range r.Members {
		if m == id {
			return true
		}
	}
	return false
}

// New returns a Server whose hub goroutine runs until Close.
func New(log *zap.Logger) *Server {
	s := &Server{
		log: log,
		// CheckOrigin nil: gorilla's default same-origin check.
		upgrader: websocket.Upgrader{
			ReadBufferSize:  1024,
			WriteBufferSize: 4096,
			WriteBufferPool: &sync.Pool{},
		},
		hub:    newHub(),
		tokens: make(map[string]*user),
		rooms:  make(map[string]*room),
		member: make(map[string][]*room),
		mux:    http.NewServeMux(),
	}
	s.mux.HandleFunc("POST /api/v1/session", s.handleSession)
	s.mux.HandleFunc("POST /api/v1/rooms", s.handleRooms)
	s.mux.HandleFunc("GET /ws", s.handleWS)
	s.mux.Handle("GET /metrics", promhttp.Handler())
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok"))
	})
	go s.hub.run()
	return s
}

// Handler returns the HTTP handler of the API subset.
func (s *Server) Handler() http.Handler { return s.mux }

// Close stops the hub and closes every WebSocket with 1001 (going away).
// It waits for the hub to finish.
// Close may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.hub.quit) })
	<-s.hub.done
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	name := strings.TrimSpace(req.Name)
	if name == "" || len([]rune(name)) > maxNameRunes {
		writeError(w, http.StatusBadRequest, "invalid", "name must be 1 to 64 characters")
		return
	}
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	u := &user{ID: uuid.NewString(), Name: name, CreatedAt: time.Now().UTC()}
	s.mu.Lock()
	s.tokens[token] = u
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	writeJSON(w, http.StatusCreated, map[string]any{"token": token, "user": u})
}

// auth returns the user of the request's bearer token or session cookie.
func (s *Server) auth(r *http.Request) *user {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		c, err := r.Cookie(sessionCookie)
		if err != nil {
			return nil
		}
		token = c.Value
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tokens[token]
}

func (s *Server) knownUser(id string) bool {
	for _, u := range s.tokens {
		if u.ID == id {
			return true
		}
	}
	return false
}

func (s *Server) handleRooms(w http.ResponseWriter, r *http.Request) {
	u := s.auth(r)
	if u == nil {
		writeError(w, http.StatusUnauthorized, "unauthorized", "no valid session")
		return
	}
	var req struct {
		Kind    string   `json:"kind"`
		Name    string   `json:"name"`
		Members []string `json:"members"`
		Lang    string   `json:"lang"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Kind != "group" {
		writeError(w, http.StatusBadRequest, "invalid", "the baseline only has group rooms")
		return
	}
	if len([]rune(req.Name)) > maxNameRunes {
		writeError(w, http.StatusBadRequest, "invalid", "room name longer than 64 characters")
		return
	}
	members := []string{u.ID}
	seen := map[string]bool{u.ID: true}
	for _, m := range req.Members {
		if !seen[m] {
			seen[m] = true
			members = append(members, m)
		}
	}
	if len(members) > maxMembers {
		writeError(w, http.StatusBadRequest, "too_large", "too many members")
		return
	}
	lang := req.Lang
	if lang == "" {
		lang = "en"
	}
	rm := &room{ID: uuid.NewString(), Kind: "group", Name: req.Name, Members: members,
		Era: "none", Lang: lang, CreatedAt: time.Now().UTC()}

	s.mu.Lock()
	for _, m := range members {
		if !s.knownUser(m) {
			s.mu.Unlock()
			writeError(w, http.StatusNotFound, "not_found", "no user "+m)
			return
		}
	}
	s.rooms[rm.ID] = rm
	for _, m := range members {
		s.member[m] = append(s.member[m], rm)
	}
	s.mu.Unlock()

	payload, _ := json.Marshal(map[string]any{"type": "room", "room": rm})
	s.hub.broadcast <- fanout{members: members, payload: payload}
	writeJSON(w, http.StatusCreated, map[string]any{"room": rm})
}

func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	u := s.auth(r)
	if u == nil {
		writeError(w, http.StatusUnauthorized, "unauthorized", "no valid session")
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered the client
	}
	s.mu.RLock()
	rooms := append([]*room(nil), s.member[u.ID]...)
	s.mu.RUnlock()
	hello, _ := json.Marshal(map[string]any{"type": "hello", "user": u, "rooms": rooms})
	c := &client{s: s, user: u, conn: conn, send: make(chan []byte, sendQueueLen), hello: hello}
	select {
	case s.hub.register <- c:
	case <-s.hub.done:
		conn.Close()
		return
	}
	// Both pumps run in their own goroutines and the handler returns, as in
	// the gorilla example: net/http then drops its per-connection state
	// (request, 4 KB bufio reader and writer), which matters at 10k idle
	// connections.
	go c.writePump()
	go c.readPump()
}

// Wire types of the frames the baseline reads and writes.
type (
	inFrame struct {
		Type        string `json:"type"`
		Room        string `json:"room"`
		Text        string `json:"text"`
		ClientMsgID string `json:"client_msg_id"`
	}
	sender struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		Bot  bool   `json:"bot"`
	}
	message struct {
		ID     string     `json:"id"`
		Room   string     `json:"room"`
		Seq    int64      `json:"seq"`
		Sender sender     `json:"sender"`
		Text   string     `json:"text"`
		Links  []struct{} `json:"links"`
		Era    string     `json:"era"`
		SentAt time.Time  `json:"sent_at"`
	}
	messageFrame struct {
		Type        string   `json:"type"`
		Message     *message `json:"message"`
		ClientMsgID string   `json:"client_msg_id,omitempty"`
	}
	errorFrame struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
		Ref     string `json:"ref"`
	}
)

// client is one WebSocket connection. Only the hub sends on or closes send;
// only writePump writes to conn.
type client struct {
	s     *Server
	user  *user
	conn  *websocket.Conn
	send  chan []byte
	hello []byte
	// closeCode is set by the hub before it closes send, and read by
	// writePump after it sees send closed.
	closeCode int
}

func (c *client) readPump() {
	defer func() {
		select {
		case c.s.hub.unregister <- c:
		case <-c.s.hub.done:
		}
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxFrameBytes)
	c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		for line := range bytes.SplitSeq(data, []byte{'\n'}) {
			if len(bytes.TrimSpace(line)) > 0 {
				c.handle(line)
			}
		}
	}
}

func (c *client) reply(v any) {
	b, _ := json.Marshal(v)
	select {
	case c.s.hub.unicast <- unicast{c: c, payload: b}:
	case <-c.s.hub.done:
	}
}

func (c *client) fail(code, msg, ref string) {
	c.reply(errorFrame{Type: "error", Code: code, Message: msg, Ref: ref})
}

func (c *client) handle(line []byte) {
	var f inFrame
	if err := json.Unmarshal(line, &f); err != nil {
		c.fail("invalid", "bad JSON frame", "")
		return
	}
	switch f.Type {
	case "ping":
		c.reply(map[string]string{"type": "pong"})
	case "send":
		c.sendMessage(f)
	default:
		c.fail("invalid", "unknown frame type", f.Type)
	}
}

func (c *client) sendMessage(f inFrame) {
	ref := f.ClientMsgID
	if ref == "" {
		ref = "send"
	}
	if f.Text == "" || len(f.Text) > maxTextBytes {
		c.fail("invalid", "text must be 1 to 8192 bytes", ref)
		return
	}
	c.s.mu.RLock()
	rm := c.s.rooms[f.Room]
	c.s.mu.RUnlock()
	if rm == nil || !rm.has(c.user.ID) {
		c.fail("forbidden", "not a member of that room", ref)
		return
	}
	m := &message{ID: uuid.NewString(), Room: rm.ID,
		Sender: sender{ID: c.user.ID, Name: c.user.Name},
		Text:   f.Text, Links: []struct{}{}, Era: rm.Era, SentAt: time.Now().UTC()}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.seq++
	m.Seq = rm.seq
	// Encoded once for all recipients, and once more for the sender's copy
	// that carries the acknowledgement.
	payload, _ := json.Marshal(messageFrame{Type: "message", Message: m})
	ack, _ := json.Marshal(messageFrame{Type: "message", Message: m, ClientMsgID: f.ClientMsgID})
	select {
	case c.s.hub.broadcast <- fanout{members: rm.Members, sender: c.user.ID, payload: payload, senderPayload: ack}:
	case <-c.s.hub.done:
	}
}

func (c *client) writePump() {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	newline := []byte{'\n'}
	for {
		select {
		case msg, ok := <-c.send:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if !ok {
				c.writeClose()
				return
			}
			w, err := c.conn.NextWriter(websocket.TextMessage)
			if err != nil {
				return
			}
			w.Write(msg)
			// Coalesce what is already queued into the same frame.
			for n := len(c.send); n > 0; n-- {
				msg, ok = <-c.send
				if !ok {
					break
				}
				w.Write(newline)
				w.Write(msg)
			}
			if err := w.Close(); err != nil {
				return
			}
			if !ok {
				c.writeClose()
				return
			}
		case <-ticker.C:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

func (c *client) writeClose() {
	reason := "server shutting down"
	if c.closeCode == websocket.ClosePolicyViolation {
		reason = closeSlowQueue
	}
	c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(c.closeCode, reason))
}

// fanout is one frame for the connections of members; the sender's own
// connections get senderPayload instead when it is set.
type fanout struct {
	members       []string
	sender        string
	payload       []byte
	senderPayload []byte
}

type unicast struct {
	c       *client
	payload []byte
}

// hub is the single goroutine that owns the map of connections, as in the
// gorilla chat example.
type hub struct {
	register   chan *client
	unregister chan *client
	broadcast  chan fanout
	unicast    chan unicast
	quit       chan struct{}
	done       chan struct{}
	clients    map[string]map[*client]struct{} // user id → connections
}

func newHub() *hub {
	return &hub{
		register:   make(chan *client),
		unregister: make(chan *client),
		broadcast:  make(chan fanout, hubQueueLen),
		unicast:    make(chan unicast, hubQueueLen),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		clients:    make(map[string]map[*client]struct{}),
	}
}

func (h *hub) remove(c *client, code int) {
	set := h.clients[c.user.ID]
	if _, ok := set[c]; !ok {
		return
	}
	delete(set, c)
	if len(set) == 0 {
		delete(h.clients, c.user.ID)
	}
	c.closeCode = code
	close(c.send)
}

// deliver queues p for c, dropping c when its queue is full: a slow reader
// must not hold up everyone else.
func (h *hub) deliver(c *client, p []byte) {
	select {
	case c.send <- p:
	default:
		c.s.log.Debug("dropping slow connection", zap.String("user", c.user.ID), zap.String("reason", closeSlowQueue))
		h.remove(c, websocket.ClosePolicyViolation)
	}
}

func (h *hub) run() {
	defer close(h.done)
	for {
		select {
		case c := <-h.register:
			set := h.clients[c.user.ID]
			if set == nil {
				set = make(map[*client]struct{})
				h.clients[c.user.ID] = set
			}
			set[c] = struct{}{}
			h.deliver(c, c.hello)
		case c := <-h.unregister:
			h.remove(c, websocket.CloseNormalClosure)
		case u := <-h.unicast:
			if _, ok := h.clients[u.c.user.ID][u.c]; ok {
				h.deliver(u.c, u.payload)
			}
		case f := <-h.broadcast:
			for _, m := range f.members {
				p := f.payload
				if m == f.sender && f.senderPayload != nil {
					p = f.senderPayload
				}
				for c := range h.clients[m] {
					h.deliver(c, p)
				}
			}
		case <-h.quit:
			for _, set := range h.clients {
				for c := range set {
					h.remove(c, websocket.CloseGoingAway)
				}
			}
			return
		}
	}
}
