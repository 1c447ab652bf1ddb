package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/redis"
	"github.com/linkwall/linkwall/internal/server"
	"github.com/linkwall/linkwall/internal/sqlite"
)

const (
	defaultAddr = "127.0.0.1:8080"
	defaultData = "./linkwall-data"
	// defaultWalkthroughStep is the pause between eras of /walkthrough:
	// long enough for a class to read each step.
	defaultWalkthroughStep = 4 * time.Second
	// policyPoll is how often the policy file's mtime is checked.
	policyPoll = 2 * time.Second
	// shutdownWait bounds a graceful shutdown.
	shutdownWait = 10 * time.Second
	// readHeaderTimeout bounds how long a client may take to send headers.
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds a whole request, body included, so a client that
	// trickles a body cannot hold a goroutine and a descriptor; bodies are
	// at most 64 KB. The WebSocket upgrade clears it on the hijacked socket.
	readTimeout = 30 * time.Second
	// idleTimeout closes keep-alive connections that carry no request.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds a request's headers (net/http's default is
	// 1 MiB). The page's own requests carry a cookie and a token of under
	// 200 bytes; 32 KiB leaves room for proxies' headers.
	maxHeaderBytes = 32 << 10
)

// runServe implements `linkwall serve`: it runs until ctx ends (SIGINT or
// SIGTERM), then shuts down gracefully.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	m := NewMain()
	m.Stderr = stderr
	if err := m.ParseFlags(ctx, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "linkwall serve: %v\n", err)
		return 2
	}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "linkwall serve: %v\n", err)
		_ = m.Close()
		return 1
	}
	fmt.Fprintf(stdout, "linkwall is running: open http://%s/ in a browser (Ctrl-C stops it)\n", m.Addr())
	<-ctx.Done()
	if err := m.Close(); err != nil {
		fmt.Fprintf(stderr, "linkwall serve: shutdown: %v\n", err)
		return 1
	}
	return 0
}

// Main is the `serve` program: flags, wiring and lifecycle. Tests run it
// in-process on 127.0.0.1:0 with a temporary data dir.
type Main struct {
	// Settings, from flags or LINKWALL_* environment variables.
	ListenAddr      string
	DataDir         string
	Era             string
	PolicyPath      string
	AllowedOrigins  []string
	TrustedProxies  []netip.Prefix
	RedisURL        string
	DebugAddr       string // pprof listener, off when empty
	WalkthroughStep time.Duration
	Limits          server.Limits

	// Logger, if set before Run, receives the logs; else JSON on Stderr.
	Logger *zap.Logger
	Stderr io.Writer

	ln     net.Listener
	http   *http.Server
	debug  *http.Server
	store  chat.Store    // SQLite, or Redis with --redis
	broker *redis.Broker // with --redis
	bot    *bot.Bot
	server *server.Server

	stop context.CancelFunc // ends the policy watcher

	policyStamp fileStamp // the policy file as it was when loaded
	wg          sync.WaitGroup
	close       sync.Once
	err         error
}

// NewMain returns a Main with the defaults.
func NewMain() *Main {
	return &Main{
		ListenAddr:      defaultAddr,
		DataDir:         defaultData,
		WalkthroughStep: defaultWalkthroughStep,
		Stderr:          os.Stderr,
	}
}

// ParseFlags reads settings from LINKWALL_* environment variables, then
// from args (flags win).
func (m *Main) ParseFlags(_ context.Context, args []string) error {
	env := func(name, def string) string {
		if v, ok := os.LookupEnv("LINKWALL_" + name); ok {
			return v
		}
		return def
	}
	step := m.WalkthroughStep
	if v := env("WALKTHROUGH_STEP", ""); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("LINKWALL_WALKTHROUGH_STEP: %w", err)
		}
		step = d
	}
	fs := flag.NewFlagSet("linkwall serve", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.StringVar(&m.ListenAddr, "addr", env("ADDR", m.ListenAddr), "listen address `HOST:PORT` (LINKWALL_ADDR)")
	fs.StringVar(&m.DataDir, "data", env("DATA", m.DataDir), "data `DIR` for the SQLite store (LINKWALL_DATA)")
	fs.StringVar(&m.Era, "era", env("ERA", m.Era), "era `ID|DATE` of new rooms; default: the policy's (LINKWALL_ERA)")
	fs.StringVar(&m.PolicyPath, "policy", env("POLICY", m.PolicyPath), "policy `FILE` replacing the embedded one; reloaded on SIGHUP and on change (LINKWALL_POLICY)")
	proxies := fs.String("trusted-proxies", env("TRUSTED_PROXIES", ""), "comma-separated `CIDRS` of reverse proxies whose X-Forwarded-For names the client (LINKWALL_TRUSTED_PROXIES)")
	origins := fs.String("allowed-origins", env("ALLOWED_ORIGINS", strings.Join(m.AllowedOrigins, ",")), "comma-separated `ORIGINS` allowed besides the server's own, or * (LINKWALL_ALLOWED_ORIGINS)")
	fs.StringVar(&m.RedisURL, "redis", env("REDIS", m.RedisURL), "`URL` of Redis for several nodes (LINKWALL_REDIS)")
	fs.StringVar(&m.DebugAddr, "debug-addr", env("DEBUG_ADDR", m.DebugAddr), "serve /debug/pprof on this separate `HOST:PORT` (LINKWALL_DEBUG_ADDR); off by default")
	fs.DurationVar(&m.WalkthroughStep, "walkthrough-step", step, "pause between eras of /walkthrough (LINKWALL_WALKTHROUGH_STEP)")
	sendRate, err := envFloat("SEND_RATE", float64(m.Limits.SendRate))
	if err != nil {
		return err
	}
	sendBurst, err := envInt("SEND_BURST", m.Limits.SendBurst)
	if err != nil {
		return err
	}
	fs.Float64Var(&sendRate, "send-rate", sendRate, fmt.Sprintf("messages per second per user, over all of the user's connections; 0: the default %g (LINKWALL_SEND_RATE)", float64(server.DefaultSendRate)))
	fs.IntVar(&sendBurst, "send-burst", sendBurst, fmt.Sprintf("messages a user may send at once before --send-rate applies; 0: the default %d (LINKWALL_SEND_BURST)", server.DefaultSendBurst))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sendRate < 0 || sendBurst < 0 {
		return errors.New("--send-rate and --send-burst must not be negative")
	}
	m.Limits.SendRate, m.Limits.SendBurst = rate.Limit(sendRate), sendBurst
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	m.TrustedProxies = nil
	for _, c := range strings.Split(*proxies, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("--trusted-proxies: %w", err)
		}
		m.TrustedProxies = append(m.TrustedProxies, p.Masked())
	}
	m.AllowedOrigins = nil
	for _, o := range strings.Split(*origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			m.AllowedOrigins = append(m.AllowedOrigins, o)
		}
	}
	if m.WalkthroughStep < 0 {
		return errors.New("--walkthrough-step must not be negative")
	}
	if _, _, err := net.SplitHostPort(m.ListenAddr); err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	return nil
}

// envFloat and envInt read LINKWALL_<name>, or return def when it is unset.
func envFloat(name string, def float64) (float64, error) {
	v, ok := os.LookupEnv("LINKWALL_" + name)
	if !ok || v == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("LINKWALL_%s: %w", name, err)
	}
	return f, nil
}

func envInt(name string, def int) (int, error) {
	v, ok := os.LookupEnv("LINKWALL_" + name)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("LINKWALL_%s: %w", name, err)
	}
	return n, nil
}

// Run opens the store, starts the server and returns once it listens.
func (m *Main) Run(ctx context.Context) error {
	if m.Logger == nil {
		m.Logger = newLogger(m.Stderr)
		if m.RedisURL != "" {
			// Only for a logger of our own: the setting is process-wide.
			redis.RouteLibraryLogs(m.Logger)
		}
	}
	policy := bot.DefaultPolicy()
	if m.PolicyPath != "" {
		// Stamped before reading, so a change made while the server starts
		// is seen by the watcher rather than taken as the baseline.
		m.policyStamp = stampFile(m.PolicyPath)
		p, err := bot.LoadPolicyFile(m.PolicyPath)
		if err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
		policy = p
	}
	if m.Era != "" {
		if _, err := policy.ResolveEra(m.Era); err != nil {
			return fmt.Errorf("--era: %w", err)
		}
	}
	m.bot = bot.New(policy, m.Logger.Named("bot"), bot.WithOpenGraph(bot.NewOpenGraphFetcher()))

	// The Redis broker needs the hub, which exists only once the server
	// does: it delivers through hub, set right after server.New (no
	// connection can exist before, so nothing is lost meanwhile).
	var hub atomic.Pointer[server.Hub]
	var broker chat.Broker
	if m.RedisURL != "" {
		rs, err := redis.Open(ctx, m.RedisURL, m.Logger.Named("store"))
		if err != nil {
			return err
		}
		m.store = rs
		m.broker, err = redis.NewBroker(ctx, rs, uuid.NewString(), func(ev chat.Event) {
			if h := hub.Load(); h != nil {
				h.Deliver(ev)
			}
		}, m.Logger.Named("broker"))
		if err != nil {
			return err
		}
		broker = m.broker
	} else {
		store, err := sqlite.Open(ctx, m.DataDir, m.Logger.Named("store"))
		if err != nil {
			return err
		}
		m.store = store
	}
	var err error
	m.server, err = server.New(server.Config{
		Store:           m.store,
		Broker:          broker,
		Bot:             m.bot,
		Logger:          m.Logger.Named("server"),
		AllowedOrigins:  m.AllowedOrigins,
		TrustedProxies:  m.TrustedProxies,
		Limits:          m.Limits,
		DefaultEra:      m.Era,
		WalkthroughStep: m.WalkthroughStep,
	})
	if err != nil {
		return err
	}
	hub.Store(m.server.Hub())
	ln, err := net.Listen("tcp", m.ListenAddr)
	if err != nil {
		return err
	}
	m.ln = ln
	m.http = &http.Server{
		Handler:           m.server.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          zap.NewStdLog(m.Logger.Named("http")),
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("http server stopped", zap.Error(err))
		}
	}()
	if m.DebugAddr != "" {
		if err := m.serveDebug(); err != nil {
			return err
		}
	}
	if m.PolicyPath != "" {
		wctx, stop := context.WithCancel(context.Background())
		m.stop = stop
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.watchPolicy(wctx, m.policyStamp)
		}()
	}
	m.Logger.Info("serving", zap.String("addr", ln.Addr().String()), zap.String("data", m.DataDir),
		zap.String("era", m.Era), zap.String("policy", m.PolicyPath))
	return nil
}

// Addr returns the address the server listens on ("" before Run).
func (m *Main) Addr() string {
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// Close shuts down gracefully: close WebSockets with 1001 Going Away, stop
// accepting, finish requests, wait for the sockets' last messages, then
// flush and close the store.
func (m *Main) Close() error {
	m.close.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
		defer cancel()
		var errs []error
		if m.stop != nil {
			m.stop()
		}
		if m.server != nil {
			m.server.GoAway()
		}
		if m.http != nil {
			errs = append(errs, m.http.Shutdown(ctx))
		}
		if m.debug != nil {
			errs = append(errs, m.debug.Close())
		}
		if m.server != nil {
			errs = append(errs, m.server.Shutdown(ctx))
		}
		m.wg.Wait()
		if m.broker != nil {
			errs = append(errs, m.broker.Close())
		}
		if m.store != nil {
			errs = append(errs, m.store.Close())
		}
		m.err = errors.Join(errs...)
		if m.Logger != nil {
			m.Logger.Info("stopped", zap.Error(m.err))
			_ = m.Logger.Sync()
		}
	})
	return m.err
}

// watchPolicy reloads the policy file on SIGHUP and when its modification
// time or size changes. An invalid file keeps the policy in force.
func (m *Main) watchPolicy(ctx context.Context, loaded fileStamp) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(policyPoll)
	defer tick.Stop()
	log := m.Logger.With(zap.String("policy", m.PolicyPath))
	last := loaded
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: reloading the policy")
		case <-tick.C:
			now := stampFile(m.PolicyPath)
			if now.mtime.Equal(last.mtime) && now.size == last.size {
				continue
			}
			last = now
		}
		p, err := bot.LoadPolicyFile(m.PolicyPath)
		if err != nil {
			log.Error("policy not reloaded; the previous one stays in force", zap.Error(err))
			continue
		}
		m.bot.SetPolicy(p)
		log.Info("policy reloaded")
	}
}

// fileStamp tells whether a file changed: its modification time and size.
type fileStamp struct {
	mtime time.Time
	size  int64
}

func stampFile(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{size: -1}
	}
	return fileStamp{fi.ModTime(), fi.Size()}
}

// newLogger returns a production JSON logger writing to w.
func newLogger(w io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), zap.InfoLevel)
	return zap.New(core)
}

// serveDebug serves the pprof handlers on their own listener, so that they
// are never reachable through the public address.
func (m *Main) serveDebug() error {
	ln, err := net.Listen("tcp", m.DebugAddr)
	if err != nil {
		return fmt.Errorf("--debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.debug = &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.debug.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("debug server stopped", zap.Error(err))
		}
	}()
	m.Logger.Info("pprof", zap.String("addr", ln.Addr().String()))
	return nil
}
