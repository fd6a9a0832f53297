package peer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gossipmesh/mesh/meshpb"
)

// hub serves many simulated peers (Machines) behind one gRPC server on
// loopback: the peer's dialer sends a connection to any live address
// here, and the call's :authority (the address dialed) picks the machine.
type hub struct {
	meshpb.UnimplementedGossipServiceServer
	mu       sync.Mutex
	machines map[string]*Machine
	now      func() time.Time
}

func (h *hub) Sync(ctx context.Context, req *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var addr string
	if a := md[":authority"]; len(a) == 1 {
		addr = a[0]
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.machines[addr]
	if m == nil {
		return nil, status.Errorf(codes.Unavailable, "%s is down", addr)
	}
	return m.Answer(req, h.now())
}

func (h *hub) up(addr string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.machines[addr] != nil
}

type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

type sample struct {
	cycle, goroutines, members, tombstones, conns, dead, writers int
	heap                                                         uint64
}

func measure(pr *Peer, cycle int) sample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	pr.mu.Lock()
	defer pr.mu.Unlock()
	st := pr.m.st
	tr := pr.transport.(*grpcTransport)
	tr.mu.Lock()
	conns := len(tr.partners)
	tr.mu.Unlock()
	return sample{cycle: cycle, goroutines: runtime.NumGoroutine(), heap: ms.HeapAlloc, members: st.members.Len(),
		tombstones: len(st.removedAt), conns: conns, dead: len(st.dead), writers: len(st.members.Version())}
}

// A real Peer, with its gRPC transport, sees 10,000 other peers join and go
// (three in four leave gracefully, one in four crashes): goroutines, heap,
// connections and every table stay flat once the tables reach their
// bounds (tombstones purge after TombstoneTTL; at most 1024 failed peers
// are remembered for healing).
func TestResourcesFlatOverJoinLeaveCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 join/leave cycles")
	}
	const cycles = 10_000
	clk := &manualClock{t: t0}
	h := &hub{machines: map[string]*Machine{}, now: clk.Now}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	meshpb.RegisterGossipServiceServer(srv, h)
	go srv.Serve(lis)
	defer srv.Stop()
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		if !h.up(addr) {
			return nil, errors.New("connection refused")
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", lis.Addr().String())
	}
	// Time is virtual but calls are real: a long RPCTimeout keeps a call
	// slowed by -race from failing, and Expiry is pinned to the N rule's
	// 5P, which a long RPCTimeout would otherwise raise to 200P.
	pr := NewPeer(PeerConfig{SelfEndpoint: "10.255.255.1:7946", PingPeriod: p, RPCTimeout: 10 * time.Second,
		Expiry: 5 * p, TombstoneTTL: 20 * p, Clock: clk, Rand: rand.New(rand.NewPCG(1, 1)),
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dialer)}})
	defer pr.Stop()

	ctx := t.Context()
	// Witnesses: two more long-lived members, which run rounds and so
	// observe the newcomers with pr. A member is removed only when a
	// majority of its observers alert, so pr alone would list every
	// crashed newcomer forever.
	var witnesses []*Machine
	for i := range 2 {
		addr := fmt.Sprintf("10.255.255.%d:7946", i+2)
		w := NewMachine(PeerConfig{SelfEndpoint: addr, PingPeriod: p, Expiry: 5 * p, TombstoneTTL: 20 * p, Rand: rand.New(rand.NewPCG(uint64(i+2), 2))}, clk.Now())
		h.mu.Lock()
		h.machines[addr] = w
		if err := w.AddSeed(pr.Addr(), clk.Now()); err != nil {
			t.Fatal(err)
		}
		h.mu.Unlock()
		witnesses = append(witnesses, w)
	}
	// witnessRound runs a round of each witness, and every call it leads
	// to: to pr through its handler, to another member directly.
	witnessRound := func(now time.Time) {
		for _, w := range witnesses {
			witnessRoundOf(t, h, pr, w, now)
		}
	}
	for range 3 {
		witnessRound(clk.advance(p))
	}
	base := measure(pr, 0)
	var samples []sample
	for i := range cycles {
		now := clk.advance(p)
		addr := fmt.Sprintf("10.%d.%d.%d:7946", 1+i/65536, i/256%256, i%256)
		h.mu.Lock()
		m := NewMachine(PeerConfig{SelfEndpoint: addr, PingPeriod: p, Rand: rand.New(rand.NewPCG(uint64(i), 3))}, now)
		h.machines[addr] = m
		if err := m.AddSeed(pr.Addr(), now); err != nil {
			t.Fatal(err)
		}
		outs := m.Round(now)
		h.mu.Unlock()
		for _, o := range outs { // the newcomer joins through the handler
			for o != nil {
				resp, err := pr.Sync(ctx, o.Request)
				h.mu.Lock()
				if err != nil {
					m.Fail(o, err, now)
					o = nil
				} else if o, err = m.Deliver(o, resp, now); err != nil {
					t.Fatalf("cycle %d: deliver: %v", i, err)
				}
				h.mu.Unlock()
			}
		}
		if _, ok := pr.GetMembers()[addr]; !ok {
			t.Fatalf("cycle %d: %s did not join", i, addr)
		}
		pr.round() // gossips over gRPC with whoever is live
		pr.calls.Wait()
		witnessRound(now)
		pr.calls.Wait()
		h.mu.Lock()
		if i%4 == 3 {
			delete(h.machines, addr) // crash: no goodbye, connections refused
			h.mu.Unlock()
		} else {
			req, _ := m.Leave(now)
			delete(h.machines, addr)
			h.mu.Unlock()
			if _, err := pr.Sync(ctx, req); err != nil {
				t.Fatalf("cycle %d: leave: %v", i, err)
			}
		}
		if (i+1)%1000 == 0 {
			s := measure(pr, i+1)
			samples = append(samples, s)
			t.Logf("cycle %5d: %4d goroutines, heap %6.2f MiB, %3d live, %4d tombstones, %4d failed remembered, %4d writers, %4d connections",
				s.cycle, s.goroutines, float64(s.heap)/(1<<20), s.members, s.tombstones, s.dead, s.writers, s.conns)
		}
	}
	// Goroutines are those of the test and of open connections (a gRPC
	// client connection runs about 4), and connections are bounded by the
	// overlay (2K + Fanout + 4: subjects, partners, pushes and probes to
	// members being removed), not by the cycles.
	bound := 2*pr.Config().Observers + pr.Config().Fanout + 4
	for _, s := range samples {
		if s.conns > bound || s.goroutines > base.goroutines+6*s.conns+10 {
			t.Errorf("cycle %d: %d goroutines with %d connections (bound %d) and %d live members (%d goroutines before the first cycle)",
				s.cycle, s.goroutines, s.conns, bound, s.members, base.goroutines)
		}
	}
	mid, last := samples[len(samples)/2-1], samples[len(samples)-1] // cycles 5,000 and 10,000
	if last.heap > mid.heap+mid.heap/4+1<<20 {
		t.Errorf("heap grew from %d at cycle %d to %d", mid.heap, mid.cycle, last.heap)
	}
	if last.conns > 64 || last.tombstones > 64 || last.dead > maxDeadProbes || last.members > 16 {
		t.Errorf("tables not bounded at the end: %+v", last)
	}
}

// witnessRoundOf runs a round of the witness w, and every call it leads
// to: to pr through its handler, to another machine of h directly.
func witnessRoundOf(t *testing.T, h *hub, pr *Peer, w *Machine, now time.Time) {
	t.Helper()
	ctx := t.Context()
	h.mu.Lock()
	outs := w.Round(now)
	h.mu.Unlock()
	for len(outs) > 0 {
		o := outs[0]
		outs = outs[1:]
		for o != nil {
			var resp *meshpb.SyncResponse
			var err error
			if o.To == pr.Addr() {
				resp, err = pr.Sync(ctx, o.Request)
			} else if h.mu.Lock(); h.machines[o.To] != nil {
				resp, err = h.machines[o.To].Answer(o.Request, now)
				h.mu.Unlock()
			} else {
				h.mu.Unlock()
				err = errors.New("connection refused")
			}
			h.mu.Lock()
			if err != nil {
				w.Fail(o, err, now)
				o = nil
			} else if o, err = w.Deliver(o, resp, now); err != nil {
				t.Fatalf("witness: deliver: %v", err)
			}
			outs = append(outs, w.TakePushes()...)
			w.TakeEvents()
			h.mu.Unlock()
		}
	}
}
