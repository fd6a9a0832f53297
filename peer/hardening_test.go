package peer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/crdt"
	"github.com/gossipmesh/mesh/meshpb"
)

// These tests feed hostile input to the exchange handler (state.answer,
// which Machine.Answer and the gRPC handler Peer.Sync call) and check that
// each is refused with a clear error and leaves the state untouched, or is
// accepted and bounded.

// frozen captures everything a refused message must leave as it was.
type frozen struct {
	members *crdt.Map[string, member]
	digest  uint64
	version crdt.VersionVector
	clock   crdt.Clock
	view    []string
	removed int
	stats   Stats
}

func freeze(s *state) frozen {
	return frozen{s.members.Clone(), s.digest, s.members.Version(), s.clock, slices.Clone(s.view), len(s.removedAt), s.stats}
}

func (f frozen) same(s *state) bool {
	return s.members.Equal(f.members) && s.digest == f.digest && s.members.Version().Compare(f.version) == crdt.Equal &&
		s.clock == f.clock && slices.Equal(s.view, f.view) && len(s.removedAt) == f.removed && s.stats == f.stats
}

// handlerPeer wraps st in a Peer (never run) whose clock reads now, so
// that requests go through the gRPC handler and its status codes.
func handlerPeer(t *testing.T, st *state, now time.Time) *Peer {
	t.Helper()
	p := NewPeer(PeerConfig{SelfEndpoint: st.self, PingPeriod: p, Transport: refusingTransport{}, Clock: fixedClock{now}})
	p.m.st = st
	t.Cleanup(p.Stop)
	return p
}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

type refusingTransport struct{}

func (refusingTransport) Sync(context.Context, string, *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	return nil, errors.New("connection refused")
}
func (refusingTransport) Forget(string) {}
func (refusingTransport) Close() error  { return nil }

func TestHostileEntriesRefused(t *testing.T) {
	net, names, now := cluster(t, 3)
	st := net[names[0]]
	hp := handlerPeer(t, st, now)
	ok := &meshpb.Entry{Addr: "10.0.0.9:7946", Time: 5, Writer: "10.0.0.9:7946#1"}
	long := strings.Repeat("a", 300)
	full := func(es ...*meshpb.Entry) *meshpb.SyncRequest {
		return &meshpb.SyncRequest{Full: true, Delta: append([]*meshpb.Entry{ok}, es...)}
	}
	spread := make([]*meshpb.Entry, 0, st.cfg.MaxDeltaEntries+1)
	for i := range st.cfg.MaxDeltaEntries + 1 {
		spread = append(spread, &meshpb.Entry{Addr: fmt.Sprintf("10.1.%d.%d:1", i/250, i%250), Time: uint64(i + 1), Writer: "10.0.0.9:7946#1", State: meshpb.State_STATE_FAILED})
	}
	cases := []struct {
		name string
		req  *meshpb.SyncRequest
		code codes.Code
		want string
	}{
		{"empty address", full(&meshpb.Entry{Time: 1, Writer: "x#1"}), codes.InvalidArgument, "not host:port"},
		{"no port", full(&meshpb.Entry{Addr: "10.0.0.8", Time: 1, Writer: "10.0.0.8#1"}), codes.InvalidArgument, "not host:port"},
		{"no host", full(&meshpb.Entry{Addr: ":7946", Time: 1, Writer: ":7946#1"}), codes.InvalidArgument, "has no host"},
		{"port 0", full(&meshpb.Entry{Addr: "10.0.0.8:0", Time: 1, Writer: "10.0.0.8:0#1"}), codes.InvalidArgument, "port must be a number in 1..65535"},
		{"port 70000", full(&meshpb.Entry{Addr: "10.0.0.8:70000", Time: 1, Writer: "10.0.0.8:70000#1"}), codes.InvalidArgument, "port must be"},
		{"unclosed IPv6", full(&meshpb.Entry{Addr: "[::1:7946", Time: 1, Writer: "[::1:7946#1"}), codes.InvalidArgument, "not host:port"},
		{"300-byte host", full(&meshpb.Entry{Addr: long + ":1", Time: 1, Writer: long + ":1#1"}), codes.InvalidArgument, "above MaxAddrBytes"},
		{"empty writer, alive", full(&meshpb.Entry{Addr: "10.0.0.8:1", Time: 1}), codes.InvalidArgument, "only a peer itself"},
		{"empty writer, failed", full(&meshpb.Entry{Addr: "10.0.0.8:1", Time: 1, State: meshpb.State_STATE_FAILED}), codes.InvalidArgument, "empty writer"},
		{"huge writer, failed", full(&meshpb.Entry{Addr: "10.0.0.8:1", Time: 1, Writer: long, State: meshpb.State_STATE_FAILED}), codes.InvalidArgument, "above MaxWriterBytes"},
		{"huge credentials", full(&meshpb.Entry{Addr: "10.0.0.8:1", Time: 1, Writer: "10.0.0.8:1#1", Cert: make([]byte, MaxCredentialBytes), Sig: []byte{1}}), codes.InvalidArgument, "above MaxCredentialBytes"},
		{"stamp at MaxTime", full(&meshpb.Entry{Addr: "10.0.0.8:1", Time: crdt.MaxTime, Writer: "10.0.0.8:1#1"}), codes.InvalidArgument, "ahead of this peer's clock"},
		{"stamp above MaxTime", full(&meshpb.Entry{Addr: "10.0.0.8:1", Time: math.MaxUint64, Writer: "10.0.0.8:1#1"}), codes.InvalidArgument, "ahead of this peer's clock"},
		{"more entries than MaxDeltaEntries", &meshpb.SyncRequest{Full: true, Delta: spread}, codes.ResourceExhausted, "above MaxDeltaEntries (1024)"},
		{"push with a bad entry", &meshpb.SyncRequest{Push: true, Delta: []*meshpb.Entry{{Addr: "x"}}}, codes.InvalidArgument, "not host:port"},
		{"another cluster", &meshpb.SyncRequest{Cluster: "evil", Full: true}, codes.FailedPrecondition, "cluster name mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := freeze(st)
			_, err := hp.Sync(t.Context(), tc.req)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sync = %v, want %v containing %q", err, tc.code, tc.want)
			}
			if !before.same(st) {
				t.Fatal("state changed after a refused request")
			}
		})
	}

	// Accepted but bounded: credentials on a FAILED entry are dropped (never
	// checked, so never stored or relayed), and a delta over the limit is
	// accepted when all its entries share one time, as an honest cut sends.
	fail := &meshpb.Entry{Addr: "10.0.0.7:1", Time: 3, Writer: "10.0.0.9:7946#1", State: meshpb.State_STATE_FAILED, Cert: []byte("junk"), Sig: []byte("junk")}
	if _, err := st.answer(&meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{fail}}, now); err != nil {
		t.Fatal(err)
	}
	if e, _ := st.members.Lookup("10.0.0.7:1"); e.Value.cred != nil {
		cert, sig := e.Value.credentials()
		t.Fatalf("FAILED entry kept credentials %q %q", cert, sig)
	}
	for _, e := range spread {
		e.Time = 7
	}
	if _, err := st.answer(&meshpb.SyncRequest{Full: true, Delta: spread}, now); err != nil {
		t.Fatalf("an over-limit delta of one Lamport time (an honest cut) was refused: %v", err)
	}
}

// A rogue cannot push Lamport clocks to MaxTime in one message: a stamp or
// clock more than maxClockJump ahead is refused or ignored, so a message
// moves a clock by at most 2^32 and freezing takes 2^31 messages.
func TestRogueCannotFreezeClocks(t *testing.T) {
	net, names, now := cluster(t, 4)
	target := net[names[0]]
	for _, c := range []uint64{crdt.MaxTime, math.MaxUint64, target.clock.Time() + maxClockJump + 1} {
		before := target.clock
		if _, err := target.answer(&meshpb.SyncRequest{Full: true, Clock: c}, now); err != nil {
			t.Fatal(err)
		}
		if target.clock != before {
			t.Fatalf("clock field %d moved the clock from %d to %d", c, before.Time(), target.clock.Time())
		}
	}
	const messages = 1000
	rogue := "10.0.0.66:7946"
	start := target.clock.Time() // a hybrid clock: wall time in ms to begin with
	for i := range messages {
		t0 := target.clock.Time() + maxClockJump
		e := &meshpb.Entry{Addr: rogue, Time: t0, Writer: rogue + "#1", Meta: &meshpb.PeerMeta{Name: fmt.Sprint(i)}}
		if _, err := target.answer(&meshpb.SyncRequest{Full: true, Clock: t0, Delta: []*meshpb.Entry{e}}, now); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	got := target.clock.Time()
	if limit := start + uint64(messages+1)*maxClockJump; got > limit {
		t.Fatalf("after %d maximal messages the clock is %d, above %d", messages, got, limit)
	}
	left := float64(crdt.MaxTime-got) / maxClockJump
	t.Logf("after %d maximal jumps the clock is %d (%.1e of MaxTime); reaching MaxTime needs %.2e more messages, %.0f days at 1000/s",
		messages, got, float64(got)/crdt.MaxTime, left, left/1000/86400)

	// A meta update made after the attack still reaches everyone, the
	// pushed peer included, and the others agree among themselves. The
	// pushed peer keeps the rogue's entry, which the others refuse: it is
	// the rogue's only observer that holds it, and one observer's alert
	// never removes a member.
	if err := net[names[2]].setMeta(&meshpb.PeerMeta{Name: "after the attack"}, now); err != nil {
		t.Fatal(err)
	}
	refused, rounds := 0, 0
	for ; ; rounds++ {
		agreed := true
		for _, a := range names {
			agreed = agreed && (a == target.self || net[a].digest == net[names[1]].digest) && net[a].snapshot()[names[2]].GetName() == "after the attack"
		}
		if agreed {
			break
		}
		if rounds > 20000 {
			t.Fatalf("no agreement 20000 rounds after the attack (%d exchanges refused)", refused)
		}
		now = now.Add(p)
		refused += tickTolerant(net, now)
	}
	t.Logf("after the attack the others agreed and all held the update in %d rounds; %d exchanges refused the far-ahead entry meanwhile", rounds, refused)
}

// tickTolerant is tick that counts refused answers instead of failing.
func tickTolerant(net map[string]*state, now time.Time) (refused int) {
	names := slices.Sorted(maps.Keys(net))
	for _, a := range names {
		st := net[a]
		for _, ex := range st.round(now) {
			for ex != nil {
				to := net[ex.addr]
				if to == nil {
					st.onError(ex, errors.New("connection refused"), now)
					break
				}
				resp, err := to.answer(proto.Clone(ex.req).(*meshpb.SyncRequest), now)
				if err != nil {
					refused++
					st.onError(ex, err, now)
					break
				}
				if ex, err = st.onResponse(ex, proto.Clone(resp).(*meshpb.SyncResponse), now); err != nil {
					refused++
				}
			}
		}
	}
	return refused
}

// Anyone may declare a live member failed (that is failure detection), so a
// rogue can hide a victim; the victim refutes as soon as the tombstone
// reaches it. Measured: how many rounds the victim stays hidden after one
// forged tombstone, and how much of the time a rogue that forges one every
// round keeps it hidden.
func TestTombstoneForLivePeerIsRefuted(t *testing.T) {
	const n = 8
	net, names, now := cluster(t, n)
	victim := names[n-1]
	forge := func(at *state) {
		e, _ := at.members.Lookup(victim)
		fail := &meshpb.Entry{Addr: victim, Time: e.Stamp.Time + 1, Writer: "10.0.0.66:7946#1", State: meshpb.State_STATE_FAILED}
		if _, err := at.answer(&meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{fail}}, now); err != nil {
			t.Fatal(err)
		}
	}
	hidden := func() int {
		h := 0
		for _, a := range names {
			if _, ok := net[a].members.Get(victim); !ok {
				h++
			}
		}
		return h
	}
	forge(net[names[0]])
	rounds, most := 0, hidden()
	for ; hidden() > 0; rounds++ {
		if rounds > 20 {
			t.Fatalf("victim still hidden from %d peers after 20 rounds", hidden())
		}
		now = now.Add(p)
		tick(t, net, now)
		most = max(most, hidden())
	}
	t.Logf("one forged tombstone: victim hidden for %d rounds, from at most %d of %d peers", rounds, most, n)

	// A persistent rogue forges at a random peer every round.
	rng := rand.New(rand.NewPCG(5, 5))
	const attack = 100
	peerRounds := 0
	for range attack {
		forge(net[names[rng.IntN(n-1)]])
		now = now.Add(p)
		tick(t, net, now)
		peerRounds += hidden()
	}
	after := 0
	for ; hidden() > 0; after++ {
		if after > 20 {
			t.Fatal("victim still hidden 20 rounds after the attack stopped")
		}
		now = now.Add(p)
		tick(t, net, now)
	}
	t.Logf("forging every round for %d rounds: victim hidden in %.1f%% of (peer, round) pairs; visible to all %d rounds after the attack stopped; %d refutations",
		attack, 100*float64(peerRounds)/float64(attack*n), after, net[victim].stats.Refutations)
	if net[victim].stats.Refutations < attack/2 {
		t.Fatalf("victim refuted only %d times", net[victim].stats.Refutations)
	}
}

// A flood of fake members stops at MaxMembers: the message that would go
// beyond is refused whole with an error naming the limit, the state is
// untouched, the honest members keep working, and the room comes back as
// the fakes are removed and their tombstones purged.
func TestFloodOfFakeMembersIsBounded(t *testing.T) {
	net, names, now := cluster(t, 3)
	st := net[names[0]]
	const limit = 40
	st.cfg.MaxMembers = limit
	st.cfg.TombstoneTTL = 10 * p
	hp := handlerPeer(t, st, now)
	accepted, refused := 0, 0
	for batch := range 200 { // 10,000 fakes in batches of 50
		var es []*meshpb.Entry
		for i := range 50 {
			addr := fmt.Sprintf("192.0.2.%d:%d", i, 1000+batch)
			st := meshpb.State_STATE_ALIVE
			w := addr + "#1"
			if i%2 == 1 {
				st, w = meshpb.State_STATE_FAILED, "10.0.0.66:7946#1"
			}
			es = append(es, &meshpb.Entry{Addr: addr, Time: uint64(batch + 1), Writer: w, State: st})
		}
		hp.calls.Wait() // the relays of earlier messages fail in the background
		before := freeze(st)
		_, err := hp.Sync(t.Context(), &meshpb.SyncRequest{Full: true, Delta: es[:1+batch%50]})
		hp.calls.Wait()
		switch {
		case err == nil:
			accepted++
		case status.Code(err) == codes.ResourceExhausted && strings.Contains(err.Error(), "exceed MaxMembers (40"):
			refused++
			if !before.same(st) {
				t.Fatal("state changed after a refused flood message")
			}
		default:
			t.Fatalf("batch %d: %v", batch, err)
		}
		if held := len(st.list()); held > limit || held != st.members.Len()+len(st.removedAt) {
			t.Fatalf("batch %d: %d entries held (%d live + %d tombstones), limit %d", batch, held, st.members.Len(), len(st.removedAt), limit)
		}
	}
	t.Logf("flood of 200 messages: %d accepted, %d refused; %d entries held (limit %d)", accepted, refused, len(st.list()), limit)
	if refused == 0 {
		t.Fatal("the flood never reached MaxMembers")
	}
	// The honest members still gossip; they observe the fakes, whose
	// probes are refused, alert, and the fakes' tombstones are purged.
	// Every honest peer observes every fake here (Observers above N): a
	// fake with fewer than two honest observers is never removed
	// (docs/SECURITY.md).
	for _, a := range names {
		net[a].cfg.Observers = 64
		net[a].ov, net[a].subjects = nil, nil
	}
	for range 60 { // well beyond expiry and TombstoneTTL (10 rounds)
		now = now.Add(p)
		tick(t, net, now)
	}
	if got := liveKeys(st); !slices.Equal(got, names) {
		t.Fatalf("after the flood %s sees %v, want %v", st.self, got, names)
	}
	if held := len(st.list()); held > len(names)+1 {
		t.Fatalf("%d entries still held after expiry and TombstoneTTL", held)
	}
}

// slowTransport routes Syncs to a partner Machine, answering after delay,
// or never (delay < 0), always honouring ctx like a gRPC client.
type slowTransport struct {
	delay atomic.Int64 // a time.Duration

	mu      sync.Mutex
	partner *Machine
}

func (s *slowTransport) Sync(ctx context.Context, addr string, req *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	d := time.Duration(s.delay.Load())
	if d < 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(d):
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.partner.Answer(req, time.Now())
}

func (s *slowTransport) Forget(string) {}
func (s *slowTransport) Close() error  { return nil }

// A partner that answers slowly or never does not delay rounds, and is
// removed once its observer has not reached it for Expiry: its probes
// time out, even at the longest wait (4 × RPCTimeout). One that answers
// within RPCTimeout stays, and so does one whose answers come late but
// within the longest wait, never alerted on: the peer measures them and
// waits longer, and a late answer shows the partner reachable. The
// partner runs its rounds, and its own calls reach the peer at once.
func TestSlowOrSilentPartner(t *testing.T) {
	for _, tc := range []struct {
		name    string
		delay   time.Duration
		removed bool
	}{
		{"never answers", -1, true},
		{"answers after 5 RPCTimeouts", 5 * p, true},
		{"answers after 3 RPCTimeouts", 3 * p, false},
		{"answers within RPCTimeout", p / 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				partnerAddr := "10.0.0.2:1"
				tr := &slowTransport{partner: NewMachine(PeerConfig{SelfEndpoint: partnerAddr, PingPeriod: p, Rand: rand.New(rand.NewPCG(2, 2))}, time.Now())}
				pr := NewPeer(PeerConfig{SelfEndpoint: "10.0.0.1:1", PingPeriod: p, Transport: tr, Rand: rand.New(rand.NewPCG(1, 1))})
				go pr.Run()
				defer pr.Stop()
				stop := make(chan struct{})
				defer close(stop)
				go func() {
					for {
						select {
						case <-stop:
							return
						case <-time.After(p):
						}
						tr.mu.Lock()
						outs := append(tr.partner.Round(time.Now()), tr.partner.TakePushes()...)
						tr.mu.Unlock()
						for _, o := range outs {
							for o != nil {
								resp, err := pr.Sync(t.Context(), o.Request)
								tr.mu.Lock()
								if err != nil {
									tr.partner.Fail(o, err, time.Now())
									o = nil
								} else {
									o, _ = tr.partner.Deliver(o, resp, time.Now())
								}
								tr.mu.Unlock()
							}
						}
					}
				}()
				pr.AddSeed(partnerAddr)
				time.Sleep(3 * p)
				synctest.Wait()
				if _, ok := pr.GetMembers()[partnerAddr]; !ok {
					t.Fatal("partner did not join")
				}
				tr.delay.Store(int64(tc.delay))
				start, rounds := time.Now(), pr.Stats().Rounds
				const span = 20
				time.Sleep(span*p + p/2)
				synctest.Wait()
				if got := pr.Stats().Rounds - rounds; got != span {
					t.Fatalf("%d rounds in %v, want %d: rounds were delayed", got, time.Since(start), span)
				}
				_, member := pr.GetMembers()[partnerAddr]
				st := pr.Stats()
				t.Logf("%s: after %d periods: member %v, %d suspicions, %d sync errors", tc.name, span, member, st.Suspicions, st.SyncErrors)
				if member == tc.removed {
					t.Fatalf("partner member = %v after %d periods, want %v", member, span, !tc.removed)
				}
				if !tc.removed && st.Suspicions > 0 {
					t.Fatalf("%d suspicions of a partner that answers: its late answers must show it reachable", st.Suspicions)
				}
			})
		})
	}
}

func TestMaxMembersConfig(t *testing.T) {
	if got := (PeerConfig{}).withDefaults().MaxMembers; got != DefaultMaxMembers {
		t.Fatalf("default MaxMembers = %d", got)
	}
	err := PeerConfig{SelfEndpoint: "10.0.0.1:1", MaxMembers: -1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "MaxMembers: -1 is negative") {
		t.Fatalf("Validate = %v", err)
	}
	if got := NewPeer(PeerConfig{SelfEndpoint: "10.0.0.1:1", MaxMembers: -1}).Config().MaxMembers; got != DefaultMaxMembers {
		t.Fatalf("NewPeer with MaxMembers -1 uses %d, want the default", got)
	}
}

// dialingTransport answers every Sync at once, once connected; connecting
// to an address takes dial, in Connect or, if Connect was not called, in
// the first Sync, always honouring ctx like a gRPC client.
type dialingTransport struct {
	dial time.Duration

	mu   sync.Mutex
	up   map[string]bool
	told map[string]bool // addresses a leave reached
}

func (d *dialingTransport) Connect(ctx context.Context, addr string) error {
	d.mu.Lock()
	up := d.up[addr]
	d.mu.Unlock()
	if up {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d.dial):
	}
	d.mu.Lock()
	d.up[addr] = true
	d.mu.Unlock()
	return nil
}

func (d *dialingTransport) Sync(ctx context.Context, addr string, req *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	if err := d.Connect(ctx, addr); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range req.GetDelta() {
		if e.GetState() == meshpb.State_STATE_LEFT {
			d.told[addr] = true
		}
	}
	return &meshpb.SyncResponse{}, nil
}

func (d *dialingTransport) Forget(string) {}
func (d *dialingTransport) Close() error  { return nil }

// A leaver tells members it holds no connection to: each gets DialTimeout
// to connect before the call's RPCTimeout, as exchanges do, so a
// connection that takes longer than RPCTimeout to set up still hears of
// the leave.
func TestLeaveConnectsWithinDialTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, names, _ := cluster(t, 4)
		tr := &dialingTransport{dial: 3 * p / 2, up: map[string]bool{}, told: map[string]bool{}}
		pr := NewPeer(PeerConfig{SelfEndpoint: names[0], PingPeriod: p, Transport: tr})
		pr.m.st = net[names[0]]
		ctx, cancel := context.WithTimeout(context.Background(), 10*p)
		defer cancel()
		if err := pr.Leave(ctx); err != nil {
			t.Fatalf("Leave: %v", err)
		}
		for _, a := range names[1:] {
			if !tr.told[a] {
				t.Errorf("%s was not told of the leave (connecting takes %v, RPCTimeout %v, DialTimeout %v)",
					a, tr.dial, pr.cfg.RPCTimeout, pr.cfg.DialTimeout)
			}
		}
	})
}
