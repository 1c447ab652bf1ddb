package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/web"
)

// Config configures a Server. Store and Bot are required.
type Config struct {
	Store  chat.Store
	Broker chat.Broker // nil: deliver to this node's hub only
	Bot    *bot.Bot
	Logger *zap.Logger // nil: no logs
	// AllowedOrigins widen the same-origin rule for WebSocket upgrades and
	// state-changing requests: exact origins ("https://example.org") or "*".
	AllowedOrigins []string
	// TrustedProxies are the addresses of reverse proxies (load balancers)
	// whose X-Forwarded-For names the real client, for per-client limits.
	TrustedProxies []netip.Prefix
	Limits         Limits
	// DefaultEra is the era of new rooms (an id or a date); "" is the
	// policy's default.
	DefaultEra string
	// WalkthroughStep is the pause between eras in /walkthrough.
	WalkthroughStep time.Duration
	// Metrics receives the server's series; nil: a new registry with the
	// Go and process collectors, served at /metrics.
	Metrics *prometheus.Registry
}

// Server is the chat server. Create it with New.
type Server struct {
	store   chat.Store
	broker  chat.Broker
	bot     *bot.Bot
	log     *zap.Logger
	limits  Limits
	step    time.Duration
	era     string // DefaultEra as given; resolved against the policy in force
	origins map[string]bool
	anyOrig bool
	// trustedProxies may name the client in X-Forwarded-For.
	trustedProxies []netip.Prefix

	hub *Hub
	seq *sequencer // orders each room's messages; nil with a multi-node broker
	// thenStore is store when it fans messages out itself; only on one
	// node, where the sequencer orders what it publishes.
	thenStore thenStore
	// fo gathers what the store's sync goroutine fans out for one sync
	// (direct.go); nil without thenStore. Sync goroutine only.
	fo *fanout
	// foFree holds the other fanout while no flush runs.
	foFree chan *fanout
	// asyncStore is store when it can also take a message without the
	// reader waiting for it: set with thenStore.
	asyncStore asyncStore
	metrics    *metrics
	registry   *prometheus.Registry
	chain      Handler
	rooms      *roomCache
	upgrader   websocket.Upgrader
	handler    http.Handler

	sendLimits    *limiterMap
	sessionLimits *limiterMap
	previewLimits *limiterMap // per client IP

	// ctx ends connections' work after Shutdown has closed them; bgCtx
	// ends background jobs (walkthroughs) as soon as Shutdown starts.
	ctx      context.Context
	cancel   context.CancelFunc
	bgCtx    context.Context
	bgCancel context.CancelFunc
	wg       sync.WaitGroup // connections and walkthroughs

	authPending atomic.Int32 // sockets waiting for their auth frame

	createMu sync.Mutex // room creations, one at a time: the room quota's check, then the write
	eraMu    sync.Mutex // era changes, one at a time: the store, then the cache and the ring's stamp

	mu      sync.Mutex
	closed  bool
	walking map[string]bool // rooms running a walkthrough
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Bot == nil {
		return nil, errors.New("server: Store and Bot are required")
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
		registerRuntime(reg)
	}
	if c, ok := cfg.Store.(prometheus.Collector); ok {
		reg.MustRegister(c) // as the server's own series are (newMetrics)
	}
	s := &Server{
		store:          cfg.Store,
		bot:            cfg.Bot,
		log:            log,
		limits:         cfg.Limits.withDefaults(),
		step:           cfg.WalkthroughStep,
		era:            cfg.DefaultEra,
		origins:        make(map[string]bool),
		trustedProxies: cfg.TrustedProxies,
		registry:       reg,
		rooms:          newRoomCache(),
		walking:        make(map[string]bool),
	}
	for _, o := range cfg.AllowedOrigins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		switch o {
		case "":
		case "*":
			s.anyOrig = true
		default:
			s.origins[strings.ToLower(o)] = true
		}
	}
	if s.era != "" {
		if _, err := cfg.Bot.Policy().ResolveEra(s.era); err != nil {
			return nil, fmt.Errorf("server: default era: %w", err)
		}
	}
	s.metrics = newMetrics(reg)
	s.hub = newHub(s.metrics)
	s.broker = cfg.Broker
	if s.broker == nil {
		s.broker = localBroker{s.hub}
		s.seq = newSequencer(s.hub)
		s.thenStore, _ = s.store.(thenStore)
		if s.thenStore != nil {
			s.asyncStore, _ = s.store.(asyncStore)
			s.fo = &fanout{}
			s.foFree = make(chan *fanout, 1)
			s.foFree <- &fanout{}
			s.thenStore.AfterThens(s.flushFanout)
		}
	} else {
		// Another node may change a room's era or lang: its room event
		// drops the cached copy, so the next message is decided under it.
		s.hub.roomChanged = s.rooms.forget
	}
	s.sendLimits = newLimiterMap(s.limits.SendRate, s.limits.SendBurst)
	s.sessionLimits = newLimiterMap(s.limits.SessionRate, s.limits.SessionBurst)
	s.previewLimits = newLimiterMap(previewRate, previewBurst)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.bgCtx, s.bgCancel = context.WithCancel(s.ctx)
	s.chain = s.buildChain()
	// Pongs must arrive before the read deadline (PongWait after the last
	// frame): a sweep every 9/10 of it pings each connection in time.
	go s.hub.pingLoop(s.ctx, s.limits.PongWait*9/10)
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: handshakeWait,
		ReadBufferSize:   readBufferSize,
		WriteBufferSize:  writeBufferSize,
		WriteBufferPool:  &sync.Pool{},
		CheckOrigin:      s.checkOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			writeJSON(w, status, errorBody{errorDetail{chat.EInvalid, reason.Error()}})
		},
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the HTTP handler serving the API, /ws, the operations
// endpoints and the browser page.
func (s *Server) Handler() http.Handler { return s.handler }

// Hub returns the hub, so a multi-node Broker can deliver events.
func (s *Server) Hub() *Hub { return s.hub }

// GoAway refuses new WebSockets, closes every open one with 1001 Going
// Away and stops walkthroughs, without waiting for anything. Call it
// before http.Server.Shutdown: a slow HTTP request must not keep the
// WebSocket clients from hearing that they should reconnect.
func (s *Server) GoAway() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.bgCancel()
	s.hub.closeAll(websocket.CloseGoingAway, "server shutting down")
}

// Shutdown does what GoAway does (if it has not been done) and waits for
// connections to finish their current message (or for ctx). Call it after
// http.Server.Shutdown has stopped new requests: then it ends the work
// contexts, which requests in flight may still use.
func (s *Server) Shutdown(ctx context.Context) error {
	s.GoAway()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.cancel()
	return err
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern string, h func(http.ResponseWriter, *http.Request, chat.User)) {
		mux.Handle(pattern, s.authed(h))
	}
	mux.HandleFunc("POST /api/v1/session", s.createSession)
	api("DELETE /api/v1/session", s.deleteSession)
	api("GET /api/v1/me", s.me)
	api("GET /api/v1/users", s.listUsers)
	api("GET /api/v1/rooms", s.listRooms)
	// Calls that store, fan out to a room or re-decide its whole history
	// (stats) draw on the user's send budget, so they cannot flood a room
	// past it. A history page is bounded (maxPageSize) and the page reads
	// history page by page, so it does not.
	budgeted := func(pattern string, h func(http.ResponseWriter, *http.Request, chat.User)) {
		api(pattern, s.sendBudget(h))
	}
	budgeted("POST /api/v1/rooms", s.createRoom)
	api("GET /api/v1/rooms/{id}", s.getRoom)
	api("GET /api/v1/rooms/{id}/messages", s.listMessages)
	budgeted("PUT /api/v1/rooms/{id}/era", s.putEra)
	budgeted("PUT /api/v1/rooms/{id}/lang", s.putLang)
	budgeted("GET /api/v1/rooms/{id}/stats", s.getStats)
	budgeted("POST /api/v1/rooms/{id}/walkthrough", s.postWalkthrough)
	mux.HandleFunc("POST /api/v1/preview", s.preview)
	mux.HandleFunc("POST /api/v1/preview/all", s.previewAll)
	mux.HandleFunc("GET /api/v1/eras", s.eras)
	mux.HandleFunc("GET /api/v1/platforms", s.platforms)
	mux.HandleFunc("GET /ws", s.serveWS)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	files := http.FileServerFS(web.Files())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/api/"):
			s.writeError(w, r, chat.Errorf(chat.ENotFound, "no such endpoint: %s %.100s", r.Method, r.URL.Path))
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		default:
			if r.URL.Path == "/" {
				markSignedIn(w, r)
			}
			files.ServeHTTP(w, r)
		}
	})
	return s.secure(mux)
}

// contentSecurityPolicy allows only the page's own scripts and styles;
// link cards may show images from anywhere.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' https: http: data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"

// secure sets the security headers on every response and refuses
// state-changing requests from foreign origins.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if !s.checkOrigin(r) {
				s.writeError(w, r, chat.Errorf(chat.EForbidden, "origin %q is not allowed", r.Header.Get("Origin")))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// checkOrigin accepts requests without Origin (not from a browser), from
// the server's own origin, and from the allowed origins.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || s.anyOrig {
		return true
	}
	if s.origins[strings.ToLower(origin)] {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.writeError(w, r, chat.Errorf(chat.EUnavailable, "store is not ready"))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ready\n"))
}

// serveWS upgrades a request to a WebSocket and starts the connection's
// reader and writer. A request with a session (header or cookie)
// authenticates at the upgrade; one without, or with ?auth=frame (a page
// tab with its own identity), authenticates with its first frame.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	// The origin first, as for REST: a foreign page learns nothing, not
	// even whether a token is valid.
	if !s.checkOrigin(r) {
		s.writeError(w, r, chat.Errorf(chat.EForbidden, "origin %q is not allowed", r.Header.Get("Origin")))
		return
	}
	byFrame := r.URL.Query().Get("auth") == "frame" || requestToken(r) == ""
	signOuts := s.hub.signOuts.Load() // before the session is checked
	var u chat.User
	if !byFrame {
		var err error
		if u, err = s.authenticate(r); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if byFrame {
		if s.authPending.Add(1) > maxUnauthenticated {
			s.authPending.Add(-1)
			s.writeError(w, r, chat.Errorf(chat.EUnavailable, "too many connections waiting to authenticate; retry later"))
			return
		}
		defer func() {
			if byFrame { // still ours: not handed to the auth goroutine
				s.authPending.Add(-1)
			}
		}()
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if closed {
		s.writeError(w, r, chat.Errorf(chat.EUnavailable, "server is shutting down"))
		return
	}
	defer s.wg.Done() // the goroutines below hold their own counts
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	if !byFrame {
		s.startConn(ws, u, requestToken(r), signOuts)
		return
	}
	byFrame = false // the goroutine releases the pending slot
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		u, tok, ok := s.awaitAuth(ws)
		s.authPending.Add(-1)
		if ok {
			s.startConn(ws, u, tok, signOuts)
		}
	}()
}

// awaitAuth reads the first frame of a connection that authenticates by
// frame: exactly {"type":"auth","token":"…"} within AuthWait. Otherwise it
// closes the socket with CloseUnauthorized (or 1001 when the server shuts
// down, 1013 when the store is down) and reports false. It returns the
// user and the token.
func (s *Server) awaitAuth(ws *websocket.Conn) (chat.User, string, bool) {
	fail := func(code int, reason string) (chat.User, string, bool) {
		msg := websocket.FormatCloseMessage(code, reason)
		_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeWait))
		_ = ws.Close()
		return chat.User{}, "", false
	}
	ws.SetReadLimit(maxAuthFrameBytes)
	_ = ws.SetReadDeadline(time.Now().Add(s.limits.AuthWait))
	// A shutdown must not wait for sockets that never authenticate.
	stop := context.AfterFunc(s.bgCtx, func() { _ = ws.SetReadDeadline(time.Now()) })
	mt, data, err := ws.ReadMessage()
	stop()
	if s.bgCtx.Err() != nil {
		return fail(websocket.CloseGoingAway, "server shutting down")
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fail(CloseUnauthorized, "no auth frame in time")
		}
		return fail(CloseUnauthorized, "first frame must be {\"type\":\"auth\",\"token\":…}")
	}
	frames, err := decodeFrames(data)
	if mt != websocket.TextMessage || err != nil || len(frames) != 1 || frames[0].bad != nil || frames[0].Type != typeAuth {
		return fail(CloseUnauthorized, "first frame must be {\"type\":\"auth\",\"token\":…}")
	}
	ctx, cancel := context.WithTimeout(s.bgCtx, s.limits.AuthWait)
	defer cancel()
	u, err := s.userByToken(ctx, frames[0].Token)
	switch code := chat.ErrorCode(err); {
	case err == nil:
	case code == chat.EUnauthorized:
		return fail(CloseUnauthorized, chat.ErrorMessage(err))
	default:
		s.log.Error("authenticating a connection", zap.Error(err))
		return fail(websocket.CloseTryAgainLater, "store unavailable")
	}
	_ = ws.SetReadDeadline(time.Time{})
	return u, frames[0].Token, true
}

// startConn registers a socket authenticated with token tok, queues its
// hello and starts its reader and writer. signOuts is the hub's count of
// sign-outs from before tok was checked.
func (s *Server) startConn(ws *websocket.Conn, u chat.User, tok string, signOuts uint64) {
	c := newConn(s, ws, u)
	if !s.hub.add(c) {
		c.cancel()
		msg := websocket.FormatCloseMessage(CloseTooManyConnections, "too many connections for this user")
		_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeWait))
		_ = ws.Close()
		return
	}
	// A sign-out delivered between the session's check and hub.add closed
	// the user's sockets without this one: check the session again. Any
	// later one finds this socket in the hub. (Sign-outs are rare, so this
	// is rarely a second read.)
	var err error
	if s.hub.signOuts.Load() != signOuts {
		_, err = s.userByToken(c.ctx, tok)
	}
	var rooms []chat.Room
	if err == nil {
		rooms, err = s.store.Rooms(c.ctx, u.ID)
	}
	switch {
	case chat.ErrorCode(err) == chat.EUnauthorized:
		c.start(nil, nil)
		c.closeWith(CloseUnauthorized, "signed out")
	case err != nil:
		s.log.Error("starting a connection", zap.Error(err))
		c.start(encodeErr(chat.Errorf(chat.EUnavailable, "cannot list rooms; reconnect later"), typeHello), nil)
		c.closeWith(closeCode(chat.EUnavailable), "store unavailable")
	default:
		c.start(encodeHello(u, rooms), rooms)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		c.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
	// A fresh goroutine for the reader: the handler's stack grew while
	// serving the upgrade and is released when it returns. The writer runs
	// only while there is something to write (conn.signal starts it).
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c.readLoop()
		c.cancel() // after the reader's last message: sends in flight are still stored (appendAsync)
	}()
}

func encodeHello(u chat.User, rooms []chat.Room) []byte {
	if rooms == nil {
		rooms = []chat.Room{}
	}
	return mustJSON(helloFrame{Type: typeHello, User: u, Rooms: rooms})
}

// clientIP is the remote address without its port, the key for per-IP limits.
// clientIP is the address per-client limits count against: the peer, or,
// when the peer is a trusted proxy, the last address in X-Forwarded-For
// that is not a trusted proxy (earlier entries are the client's to forge).
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !s.trusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		if !s.trusted(hop) {
			return hop
		}
		host = hop
	}
	return host
}

func (s *Server) trusted(addr string) bool {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.trustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// defaultEra is the era id new rooms start in.
func (s *Server) defaultEra() string {
	p := s.bot.Policy()
	if s.era != "" {
		if e, err := p.ResolveEra(s.era); err == nil {
			return e.ID
		}
	}
	return p.DefaultEra()
}
