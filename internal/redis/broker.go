package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/linkwall/linkwall/internal/chat"
)

const (
	// eventBacklog caps the event stream (approximately: Redis trims whole
	// nodes of it). It is what a node can catch up on after losing its
	// Redis connection: at 1,000 messages a second (two events each) that
	// is ten seconds; memory stays near eventBacklog × the event size
	// (~0.5 KiB), about 10 MiB.
	eventBacklog = 20_000
	// readBatch bounds the events taken by one XREAD.
	readBatch = 512
	// readBlock is how long one XREAD waits for new events; the Broker's
	// own connection is closed by Close, so this does not delay shutdown.
	readBlock = 5 * time.Second
	// Backoff between reads while Redis is unreachable.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Broker is a chat.Broker for several nodes sharing one Redis. Publish
// delivers to this node's hub at once and appends the event to the shared
// event stream; a reader goroutine delivers the events of the other nodes.
// Close stops the reader.
type Broker struct {
	client  *goredis.Client // XADD, shared with the Store
	sub     *goredis.Client // XREAD BLOCK, its own connection so Close can cut it
	key     string
	node    string
	deliver func(chat.Event)
	log     *zap.Logger

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

var _ chat.Broker = (*Broker)(nil)

// NewBroker returns a Broker publishing through s's Redis (and key prefix)
// as node nodeID, which must be unique among the nodes. deliver hands an
// event to this node's hub (server.Hub.Deliver); it is called from one
// goroutine, for this node's events from Publish's caller, and must not
// block. The reader starts at the end of the stream as it is now, so every
// event published after NewBroker returns is delivered.
func NewBroker(ctx context.Context, s *Store, nodeID string, deliver func(chat.Event), logger *zap.Logger) (*Broker, error) {
	if nodeID == "" || deliver == nil {
		return nil, errors.New("redis: NewBroker needs a node id and a deliver function")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	opts := *s.opts
	opts.PoolSize, opts.MinIdleConns, opts.MaxIdleConns = 1, 0, 1
	b := &Broker{
		client:  s.client,
		sub:     goredis.NewClient(&opts),
		key:     s.eventsKey(),
		node:    nodeID,
		deliver: deliver,
		log:     logger.With(zap.String("node", nodeID)),
		done:    make(chan struct{}),
	}
	last, err := b.lastID(ctx)
	if err != nil {
		b.sub.Close()
		return nil, fmt.Errorf("redis: start broker: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go b.run(runCtx, last)
	return b, nil
}

// lastID returns the id of the newest event, or 0-0 for none.
func (b *Broker) lastID(ctx context.Context) (string, error) {
	ms, err := b.client.XRevRangeN(ctx, b.key, "+", "-", 1).Result()
	if err != nil {
		return "", storeErr(ctx, "read event stream", err)
	}
	if len(ms) == 0 {
		return "0-0", nil
	}
	return ms[0].ID, nil
}

// Publish delivers ev to this node's connections, then hands it to the
// other nodes. An error means the other nodes did not get it; their
// clients still see the message when they next resume or fill a gap.
func (b *Broker) Publish(ctx context.Context, ev chat.Event) error {
	b.deliver(ev)
	err := b.client.XAdd(ctx, &goredis.XAddArgs{
		Stream: b.key,
		MaxLen: eventBacklog,
		Approx: true,
		Values: []any{"e", encodeEvent(nil, b.node, &ev)},
	}).Err()
	return storeErr(ctx, "publish", err)
}

// Close stops the reader and waits for it. It is safe to call more than once.
func (b *Broker) Close() error {
	b.once.Do(func() {
		b.cancel()
		_ = b.sub.Close() // cuts a blocked XREAD short
		<-b.done
	})
	return nil
}

// run reads the event stream from after `last` until Close, delivering
// the other nodes' events in stream order. While Redis is unreachable it
// retries with backoff and then continues from the last event it saw, so
// a short outage of the connection loses nothing that is still in the
// stream.
func (b *Broker) run(ctx context.Context, last string) {
	defer close(b.done)
	backoff := minBackoff
	down := false
	for {
		streams, err := b.sub.XRead(ctx, &goredis.XReadArgs{
			Streams: []string{b.key, last},
			Count:   readBatch,
			Block:   readBlock,
		}).Result()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, goredis.Nil) {
			continue // nothing new within readBlock
		}
		if err != nil {
			if !down {
				b.log.Warn("cannot read the event stream; retrying", zap.Error(err))
				down = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if down {
			b.log.Info("reading the event stream again", zap.String("after", last))
			down = false
		}
		backoff = minBackoff
		for _, st := range streams {
			for _, m := range st.Messages {
				last = m.ID
				b.handle(m)
			}
		}
	}
}

// handle delivers one stream entry unless this node published it (it was
// delivered locally by Publish).
func (b *Broker) handle(m goredis.XMessage) {
	raw, _ := m.Values["e"].(string)
	node, ev, err := decodeEvent(raw)
	if err != nil {
		b.log.Warn("skipping an undecodable event", zap.String("id", m.ID), zap.Error(err))
		return
	}
	if node == b.node {
		return
	}
	b.deliver(ev)
}
