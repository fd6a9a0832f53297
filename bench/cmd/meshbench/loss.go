package main

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// loss decides which messages the transports of one cluster drop. The
// probability starts at 0 and is switched on only for the loss phase. The
// random source is seeded from -seed; which message a draw lands on still
// depends on goroutine scheduling, so only the rate, not the trace, is
// reproducible.
type loss struct {
	p   atomic.Uint64 // math.Float64bits of the drop probability
	mu  sync.Mutex
	rng *rand.Rand
}

func newLoss(seed uint64) *loss {
	return &loss{rng: rand.New(rand.NewPCG(seed, 0x6d657368))}
}

func (l *loss) set(p float64) { l.p.Store(math.Float64bits(p)) }

// drop reports whether to drop the next message.
func (l *loss) drop() bool {
	p := math.Float64frombits(l.p.Load())
	if p <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rng.Float64() < p
}
