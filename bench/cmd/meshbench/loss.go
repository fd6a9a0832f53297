package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
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

// lossText describes the loss phase, for the log and the report.
func (o options) lossText() string {
	s := fmt.Sprintf("%.0f%% of messages dropped for %v", 100*o.lossRate, o.lossDuration)
	if o.busy > 0 {
		s += fmt.Sprintf(" beside %d busy loops", o.busy)
	}
	return s
}

// startBusy starts n processes (this binary with -spin), each spinning on
// a core, and returns what kills them: a machine whose other tenants take
// the cores, where every peer's rounds and calls run late.
func startBusy(n int) (stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	}
	for range n {
		c := exec.Command(exe, "-spin")
		if err := c.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("start a busy loop: %w", err)
		}
		cmds = append(cmds, c)
	}
	return stop, nil
}

// spin is a busy loop's body.
func spin() {
	runtime.GOMAXPROCS(1)
	for {
	}
}
