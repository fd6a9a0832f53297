package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gossipmesh/mesh/peer"
)

// Event handler limits.
const (
	// DefaultHandlerTimeout is Config.HandlerTimeout's default: a handler
	// is meant to notify something and return, not to work for long.
	DefaultHandlerTimeout = 10 * time.Second
	// MaxHandlerProcs is how many processes of one handler run at once,
	// over all members; the rest wait their turn. It is per handler so
	// that a handler that hangs delays no other.
	MaxHandlerProcs = 4
	// maxPendingEvents bounds the events waiting for a handler; beyond it
	// events are dropped and counted in the log, rather than memory grow
	// without bound behind a slow handler.
	maxPendingEvents = 4096
	// handlerBuffer is the subscription buffer of the dispatcher, which
	// only queues, so it never fills in practice.
	handlerBuffer = 1024
	// maxHandlerOutput bounds the stdout and stderr kept for the log.
	maxHandlerOutput = 4 << 10
	// handlerWaitDelay bounds the wait for a handler's output after it
	// exits or is killed (a child it left behind may hold the pipes).
	handlerWaitDelay = 2 * time.Second
)

// eventTypes are the event names handlers filter on and MESH_EVENT holds.
var eventTypes = []string{"join", "update", "leave", "failed"}

// EventHandler is a program run on membership events, as `mesh agent
// --event-handler [TYPE[,TYPE...]=]PROGRAM` gives it. The program is
// executed directly, with no arguments and no shell (so it works in an
// image without one; write a script for arguments). It inherits the
// agent's environment plus MESH_EVENT (join, update, leave or failed),
// MESH_ADDR and MESH_NAME (the member's address and name), MESH_SELF (this
// agent's address) and MESH_CLUSTER, and reads the member's tags as a JSON
// object on stdin. Its exit status, and its stderr, are logged.
type EventHandler struct {
	Types   []string // a subset of join, update, leave, failed; empty: all
	Program string
}

// ParseEventHandler parses "[TYPE[,TYPE...]=]PROGRAM".
func ParseEventHandler(s string) (EventHandler, error) {
	var h EventHandler
	prog := s
	if types, p, ok := strings.Cut(s, "="); ok && !strings.ContainsRune(types, '/') {
		prog = p
		for _, t := range strings.Split(types, ",") {
			if !slices.Contains(eventTypes, t) {
				return h, fmt.Errorf("--event-handler %q: unknown event type %q; want %s (comma-separated) before '='", s, t, strings.Join(eventTypes, ", "))
			}
			if !slices.Contains(h.Types, t) {
				h.Types = append(h.Types, t)
			}
		}
	}
	if prog == "" {
		return h, fmt.Errorf("--event-handler %q: no program; want [TYPE=]PROGRAM", s)
	}
	h.Program = prog
	return h, nil
}

func (h EventHandler) String() string {
	if len(h.Types) == 0 {
		return h.Program
	}
	return strings.Join(h.Types, ",") + "=" + h.Program
}

// validate checks that the program can be run, now.
func (h EventHandler) validate() error {
	for _, t := range h.Types {
		if !slices.Contains(eventTypes, t) {
			return fmt.Errorf("--event-handler %s: unknown event type %q; want one of %s", h, t, strings.Join(eventTypes, ", "))
		}
	}
	if _, err := exec.LookPath(h.Program); err != nil {
		return fmt.Errorf("--event-handler %s: %w; give the path of an executable file", h, unwrapPath(err))
	}
	return nil
}

func (h EventHandler) wants(t peer.EventType) bool {
	return len(h.Types) == 0 || slices.Contains(h.Types, t.String())
}

func (c Config) handlerTimeout() time.Duration {
	if c.HandlerTimeout == 0 {
		return DefaultHandlerTimeout
	}
	return c.HandlerTimeout
}

// dispatcher runs the event handlers. Each (handler, member) pair has a
// queue worked by one goroutine at a time, so a member's events reach a
// handler in order, while a slow handler delays only its own later events
// of that member. A semaphore per handler bounds its processes running at
// once, so that one that hangs delays no other.
// Nothing here blocks the peer: events come from a subscription, which
// drops rather than blocks, and are only queued on arrival.
type dispatcher struct {
	handlers []EventHandler
	timeout  time.Duration
	self     string
	cluster  string
	log      *slog.Logger
	slots    []chan struct{} // by handler

	killCtx context.Context // cancelled stopGrace after the stop: kills what runs
	kill    context.CancelFunc

	mu      sync.Mutex
	queues  map[queueKey][]peer.Event // a key is present while its worker runs
	pending int
	dropped uint64
	stopped bool
	workers sync.WaitGroup
}

type queueKey struct {
	handler int
	addr    string
}

func newDispatcher(handlers []EventHandler, timeout time.Duration, self, cluster string, log *slog.Logger) *dispatcher {
	ctx, cancel := context.WithCancel(context.Background())
	d := &dispatcher{
		handlers: handlers, timeout: timeout, self: self, cluster: cluster, log: log,
		killCtx: ctx, kill: cancel, queues: map[queueKey][]peer.Event{},
	}
	for range handlers {
		d.slots = append(d.slots, make(chan struct{}, MaxHandlerProcs))
	}
	return d
}

// run queues the subscription's events until it is closed, then stops.
func (d *dispatcher) run(sub *peer.Subscription) {
	var seenDrops uint64
	for ev := range sub.C {
		if n := sub.Dropped(); n > seenDrops {
			d.log.Warn("event handlers missed events: the agent could not keep up", "dropped", n-seenDrops)
			seenDrops = n
		}
		d.enqueue(ev)
	}
	d.stop()
}

// stop stops starting handlers, gives the running ones stopGrace (or their
// timeout, if shorter) and kills the rest. Every worker has exited when it
// returns.
func (d *dispatcher) stop() {
	d.mu.Lock()
	d.stopped = true
	skipped := d.pending
	d.mu.Unlock()
	if skipped > 0 {
		d.log.Warn("event handlers not run: the agent is stopping", "events", skipped)
	}
	done := make(chan struct{})
	go func() { d.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopGrace):
		d.kill()
		<-done
	}
	d.kill()
}

func (d *dispatcher) enqueue(ev peer.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, h := range d.handlers {
		if !h.wants(ev.Type) {
			continue
		}
		if d.pending >= maxPendingEvents {
			d.dropped++
			if d.dropped&(d.dropped-1) == 0 { // 1, 2, 4, 8...: a flood logs a few lines
				d.log.Warn("event handler queue full: event dropped", "handler", h.String(), "event", ev.Type.String(), "addr", ev.Addr, "dropped_total", d.dropped)
			}
			continue
		}
		k := queueKey{i, ev.Addr}
		q, working := d.queues[k]
		d.queues[k] = append(q, ev)
		d.pending++
		if !working {
			d.workers.Add(1)
			go d.work(k)
		}
	}
}

// work runs k's queued events one after the other, and exits when the
// queue is empty or the dispatcher stopped.
func (d *dispatcher) work(k queueKey) {
	defer d.workers.Done()
	slots := d.slots[k.handler]
	for {
		select {
		case slots <- struct{}{}:
		case <-d.killCtx.Done():
			d.drop(k)
			return
		}
		d.mu.Lock()
		q := d.queues[k]
		if d.stopped || len(q) == 0 {
			// Under the lock: an event queued after this is seen by the
			// next worker enqueue starts.
			d.pending -= len(q)
			delete(d.queues, k)
			d.mu.Unlock()
			<-slots
			return
		}
		ev := q[0]
		d.queues[k] = q[1:]
		d.pending--
		d.mu.Unlock()

		d.runHandler(d.handlers[k.handler], ev)
		<-slots
	}
}

// drop forgets k's queue, so that the next event starts a worker.
func (d *dispatcher) drop(k queueKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending -= len(d.queues[k])
	delete(d.queues, k)
}

// runHandler runs h for ev and logs the outcome.
func (d *dispatcher) runHandler(h EventHandler, ev peer.Event) {
	ctx, cancel := context.WithTimeout(d.killCtx, d.timeout)
	defer cancel()
	tags := ev.Meta.GetTags()
	if tags == nil {
		tags = map[string]string{}
	}
	stdin, _ := json.Marshal(tags) // a map of strings always encodes
	var stdout, stderr boundedBuffer
	cmd := exec.CommandContext(ctx, h.Program)
	cmd.Env = append(os.Environ(),
		"MESH_EVENT="+ev.Type.String(),
		"MESH_ADDR="+ev.Addr,
		"MESH_NAME="+ev.Meta.GetName(),
		"MESH_SELF="+d.self,
		"MESH_CLUSTER="+d.cluster,
	)
	cmd.Stdin = bytes.NewReader(append(stdin, '\n'))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = handlerWaitDelay
	killGroup(cmd) // a script's children die with it
	start := time.Now()
	err := cmd.Run()
	attrs := []any{"handler", h.String(), "event", ev.Type.String(), "addr", ev.Addr, "name", ev.Meta.GetName(),
		"duration", time.Since(start).Round(time.Millisecond).String()}
	if stdout.Len() > 0 {
		attrs = append(attrs, "stdout", stdout.String())
	}
	if stderr.Len() > 0 {
		attrs = append(attrs, "stderr", stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		d.log.Info("event handler ran", append(attrs, "status", "exit 0")...)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		d.log.Warn("event handler killed: timed out", append(attrs, "status", exitStatus(cmd, err), "timeout", d.timeout.String())...)
	case d.killCtx.Err() != nil:
		d.log.Warn("event handler killed: the agent is stopping", append(attrs, "status", exitStatus(cmd, err))...)
	case errors.As(err, &ee):
		d.log.Warn("event handler failed", append(attrs, "status", exitStatus(cmd, err))...)
	default:
		d.log.Error("event handler could not run", append(attrs, "err", err)...)
	}
}

// exitStatus describes how a handler process ended: "exit 3", "signal: killed".
func exitStatus(cmd *exec.Cmd, err error) string {
	if cmd.ProcessState == nil {
		return err.Error()
	}
	if code := cmd.ProcessState.ExitCode(); code >= 0 {
		return fmt.Sprintf("exit %d", code)
	}
	return cmd.ProcessState.String()
}

// boundedBuffer keeps the first maxHandlerOutput bytes written to it.
type boundedBuffer struct {
	b         bytes.Buffer
	truncated bool
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if room := maxHandlerOutput - w.b.Len(); len(p) > room {
		w.b.Write(p[:max(room, 0)])
		w.truncated = true
	} else {
		w.b.Write(p)
	}
	return len(p), nil
}

func (w *boundedBuffer) Len() int { return w.b.Len() }

func (w *boundedBuffer) String() string {
	s := strings.TrimRight(w.b.String(), "\n")
	if w.truncated {
		s += " …(truncated)"
	}
	return s
}
