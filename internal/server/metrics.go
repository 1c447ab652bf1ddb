package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/linkwall/linkwall/bot"
)

// metrics are the server's Prometheus series. Labelled children are
// resolved once here so that the hot path only does atomic adds.
type metrics struct {
	connections   prometheus.Gauge
	messages      prometheus.Counter
	deliveries    prometheus.Counter
	slowConsumers prometheus.Counter
	rateLimited   prometheus.Counter
	links         map[bot.Outcome]prometheus.Counter
	sendLatency   prometheus.Histogram
	appendLatency prometheus.Histogram
	catchUps      map[string]prometheus.Counter
	catchUpRing   prometheus.Counter // messages a catch-up took from the ring
	catchUpStore  prometheus.Counter // messages a catch-up read from the store
	// directWhole, directPart and directNone count the fan-out's direct
	// writes by how much of the frame the socket took.
	directWhole, directPart, directNone prometheus.Counter
}

// Why a connection catches up (the reason label of linkwall_catchups_total).
const (
	causeResume   = "resume"   // the client asked
	causeGap      = "gap"      // a seq did not arrive within gapGrace
	causeOverflow = "overflow" // waiting live events passed their bound
)

// latencyBuckets span 100 µs to 2.5 s: the targets are in milliseconds.
var latencyBuckets = prometheus.ExponentialBucketsRange(0.0001, 2.5, 16)

func newMetrics(reg *prometheus.Registry) *metrics {
	links := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "linkwall_links_total",
		Help: "Links decided in sent messages, by outcome.",
	}, []string{"outcome"})
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "linkwall_connections",
			Help: "Open WebSocket connections.",
		}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "linkwall_messages_total",
			Help: "Messages stored (people's and LinkBot's).",
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "linkwall_deliveries_total",
			Help: "Events queued to connections on this node.",
		}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "linkwall_slow_consumers_dropped_total",
			Help: "Connections closed because their send queue passed its bound.",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "linkwall_rate_limited_total",
			Help: "Sends refused by the per-user rate limit.",
		}),
		links: make(map[bot.Outcome]prometheus.Counter),
		sendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "linkwall_send_latency_seconds",
			Help:    "From receiving a send frame to publishing its acknowledgement.",
			Buckets: latencyBuckets,
		}),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "linkwall_store_append_latency_seconds",
			Help:    "Durable store appends (on one node with the embedded store, the fan-out it starts included, its socket writes not).",
			Buckets: latencyBuckets,
		}),
	}
	for _, o := range []bot.Outcome{bot.Blocked, bot.Hyperlink, bot.CardView} {
		m.links[o] = links.WithLabelValues(string(o))
	}
	catchUps := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "linkwall_catchups_total",
		Help: "Catch-ups of one connection in one room, by reason: resume (asked), gap (a seq did not arrive in time), overflow (too many live events waited).",
	}, []string{"reason"})
	m.catchUps = make(map[string]prometheus.Counter)
	for _, r := range []string{causeResume, causeGap, causeOverflow} {
		m.catchUps[r] = catchUps.WithLabelValues(r)
	}
	catchUpMsgs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "linkwall_catchup_messages_total",
		Help: "Messages sent by catch-ups, by source: ring (recently published, in memory) or store.",
	}, []string{"source"})
	m.catchUpRing, m.catchUpStore = catchUpMsgs.WithLabelValues("ring"), catchUpMsgs.WithLabelValues("store")
	direct := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "linkwall_direct_writes_total",
		Help: "Frames the fan-out of a large group commit wrote straight to a socket, by what the socket took: all, part (the connection's writer writes the rest) or none (the writer writes it).",
	}, []string{"taken"})
	m.directWhole, m.directPart, m.directNone = direct.WithLabelValues("all"), direct.WithLabelValues("part"), direct.WithLabelValues("none")
	reg.MustRegister(m.connections, m.messages, m.deliveries, m.slowConsumers,
		m.rateLimited, links, m.sendLatency, m.appendLatency, catchUps, catchUpMsgs, direct)
	return m
}

func (m *metrics) catchUp(cause string) {
	if c, ok := m.catchUps[cause]; ok {
		c.Inc()
	}
}

func (m *metrics) catchUpRead(fromRing bool, n int) {
	if fromRing {
		m.catchUpRing.Add(float64(n))
	} else {
		m.catchUpStore.Add(float64(n))
	}
}

// registerRuntime adds the Go and process collectors to a registry the
// server created itself.
func registerRuntime(reg *prometheus.Registry) {
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

func (m *metrics) countLinks(links []bot.Link) {
	for i := range links {
		if c, ok := m.links[links[i].Outcome]; ok {
			c.Inc()
		}
	}
}
