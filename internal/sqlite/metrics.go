package sqlite

import "github.com/prometheus/client_golang/prometheus"

// storeMetrics are the store's own series: what the append latency the
// server measures is made of.
type storeMetrics struct {
	sync  prometheus.Histogram
	batch prometheus.Histogram
	// walFrames and finishes show whether the WAL restarts under load
	// (see checkpointLoop); a WAL that does not grows by megabytes a
	// second.
	walFrames prometheus.Gauge
	finishes  prometheus.Counter
	// checkpoint times each checkpoint by who ran it: the writer's hold
	// every append (finishCheckpoint), the checkpointer's none, but their
	// fsyncs share the disk with the WAL's.
	checkpoint *prometheus.HistogramVec
}

func newStoreMetrics() storeMetrics {
	return storeMetrics{
		sync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "linkwall_store_sync_seconds",
			Help:    "fdatasync of the SQLite WAL, each making every batch committed before it durable.",
			Buckets: prometheus.ExponentialBucketsRange(0.00005, 1, 16),
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "linkwall_store_batch_messages",
			Help:    "Appends committed together in one transaction (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9), // 1 … maxBatch
		}),
		walFrames: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "linkwall_store_wal_frames",
			Help: "Frames (4 KiB pages) in the SQLite WAL at the last checkpoint; it falls back when the WAL restarts.",
		}),
		finishes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "linkwall_store_checkpoint_finishes_total",
			Help: "Checkpoints the writer finished so that a WAL of 32 MiB or more restarts; each holds appends for 1-3 ms.",
		}),
		checkpoint: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "linkwall_store_checkpoint_seconds",
			Help:    "PASSIVE checkpoints of the SQLite WAL, with their fsyncs, by who ran them: the checkpointer, or the writer (appends wait for it).",
			Buckets: prometheus.ExponentialBucketsRange(0.00005, 1, 16),
		}, []string{"by"}),
	}
}

func (m *storeMetrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.sync, m.batch, m.walFrames, m.finishes, m.checkpoint}
}

// Describe implements prometheus.Collector: a server registers a store
// that is one.
func (s *Store) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range s.metrics.all() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (s *Store) Collect(ch chan<- prometheus.Metric) {
	for _, c := range s.metrics.all() {
		c.Collect(ch)
	}
}
