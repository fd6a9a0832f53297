package peer

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/crdt"
	"github.com/gossipmesh/mesh/meshpb"
)

// These tests drive the protocol (sync.go) by direct calls in virtual
// time: no sockets, no goroutines, no sleeps.

const p = 100 * time.Millisecond

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var seeds uint64

// newTestState returns a state with its own seed: every process (and so
// every restart) draws its own incarnation id.
func newTestState(addr string) *state {
	seeds++
	cfg := PeerConfig{SelfEndpoint: addr, PingPeriod: p, Rand: rand.New(rand.NewPCG(seeds, 2))}.withDefaults()
	return newState(cfg, t0)
}

// deliver runs ex from st against the states in net, as a transport
// would, following up a second step when there is one. A missing
// destination fails like a dead peer.
func deliver(t *testing.T, net map[string]*state, from *state, ex *exchange, now time.Time) {
	t.Helper()
	for ex != nil {
		to := net[ex.addr]
		if to == nil {
			from.onError(ex, errors.New("connection refused"), now)
			return
		}
		resp, err := to.answer(proto.Clone(ex.req).(*meshpb.SyncRequest), now)
		if err != nil {
			from.onError(ex, err, now)
			return
		}
		if ex, err = from.onResponse(ex, proto.Clone(resp).(*meshpb.SyncResponse), now); err != nil {
			t.Fatalf("onResponse: %v", err)
		}
	}
}

// tick runs one round of every state in net at now, in address order.
func tick(t *testing.T, net map[string]*state, now time.Time) {
	t.Helper()
	names := make([]string, 0, len(net))
	for a := range net {
		names = append(names, a)
	}
	slices.Sort(names)
	for _, a := range names {
		st := net[a]
		for _, ex := range st.round(now) {
			deliver(t, net, st, ex, now)
		}
		flushPushes(t, net, names, now)
	}
}

// flushPushes delivers every queued push, and the pushes those cause.
func flushPushes(t *testing.T, net map[string]*state, names []string, now time.Time) {
	t.Helper()
	for more := true; more; {
		more = false
		for _, a := range names {
			pushes := net[a].pushes
			net[a].pushes = nil
			for _, ex := range pushes {
				more = true
				deliver(t, net, net[a], ex, now)
			}
		}
	}
}

func liveKeys(s *state) []string {
	var out []string
	for a, m := range s.members.Live() {
		if !m.pending {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

func cluster(t *testing.T, n int) (map[string]*state, []string, time.Time) {
	t.Helper()
	net := map[string]*state{}
	var names []string
	for i := range n {
		a := fmt.Sprintf("10.0.0.%d:7946", i+1)
		names = append(names, a)
		net[a] = newTestState(a)
		if i > 0 {
			if err := net[a].addSeed(names[0], t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	now := t0
	for range 20 {
		now = now.Add(p)
		tick(t, net, now)
	}
	want := slices.Sorted(slices.Values(names))
	for _, a := range names {
		if got := liveKeys(net[a]); !slices.Equal(got, want) {
			t.Fatalf("%s sees %v after 20 rounds, want %v", a, got, want)
		}
	}
	return net, names, now
}

func TestStatesConvergeAndAgreeOnDigest(t *testing.T) {
	net, names, _ := cluster(t, 8)
	for _, a := range names {
		if net[a].digest != net[names[0]].digest {
			t.Fatalf("digest of %s = %x, of %s = %x", a, net[a].digest, names[0], net[names[0]].digest)
		}
	}
}

func TestSteadyStateSendsNoEntries(t *testing.T) {
	net, names, now := cluster(t, 8)
	st := net[names[3]]
	for _, ex := range st.round(now.Add(p)) {
		if ex.req.GetFull() || len(ex.req.GetDelta()) > 0 || len(ex.req.GetVersion()) > 0 {
			t.Fatalf("steady-state request carries entries or a version vector: %v", ex.req)
		}
		switch ex.kind {
		case gossipPartner:
			if !ex.req.GetAllHold() || len(ex.req.GetHolders()) != 0 {
				t.Fatalf("gossip request of a converged cluster lists holders %x (all_hold %v), want all_hold alone", ex.req.GetHolders(), ex.req.GetAllHold())
			}
		case observeProbe:
			if ex.req.GetDigest() != 0 || !ex.req.GetProbe() {
				t.Fatalf("probe of a subject carries a digest or is not marked a probe: %v", ex.req)
			}
		}
		deliver(t, net, st, ex, now.Add(p))
	}
}

// A peer whose own rounds stall (CPU starvation, a paused process) must not
// alert on others on that evidence alone.
func TestStarvedPeerRemovesNobody(t *testing.T) {
	net, names, now := cluster(t, 4)
	st := net[names[1]]
	late := now.Add(20 * p) // 20 periods without a round, far past Expiry
	for _, ex := range st.round(late) {
		st.done(ex)
	}
	// And in the rounds after, its subjects' silence counts from the
	// stall's end: its probes never ran meanwhile.
	for i := range 3 {
		for _, ex := range st.round(late.Add(time.Duration(i+1) * p)) {
			st.done(ex)
		}
		if n := st.alerting(); n > 0 {
			t.Fatalf("round %d after the stall: the starved peer alerts on %d members", i+1, n)
		}
	}
	if got := liveKeys(st); !slices.Equal(got, names) {
		t.Fatalf("starved peer sees %v, want %v", got, names)
	}
	if st.stats.StarvedRounds != 1 {
		t.Fatalf("StarvedRounds = %d, want 1", st.stats.StarvedRounds)
	}
}

func TestCrashedPeerIsRemovedAndStaysRemoved(t *testing.T) {
	net, names, now := cluster(t, 6)
	victim := names[2]
	delete(net, victim)
	crash := now
	for i := 0; ; i++ {
		now = now.Add(p)
		tick(t, net, now)
		gone := true
		for _, st := range net {
			if _, ok := st.members.Get(victim); ok {
				gone = false
			}
		}
		if gone {
			t.Logf("removed by all after %v", now.Sub(crash))
			if d := now.Sub(crash); d > net[names[0]].cfg.Expiry+3*p {
				t.Fatalf("removal took %v, more than Expiry + 3 periods", d)
			}
			break
		}
		if i > 50 {
			t.Fatal("crashed peer never removed")
		}
	}
	for range 50 {
		now = now.Add(p)
		tick(t, net, now)
		for a, st := range net {
			if _, ok := st.members.Get(victim); ok {
				t.Fatalf("%s sees the dead peer again", a)
			}
		}
	}
}

func TestOwnerRefutesItsTombstone(t *testing.T) {
	net, names, now := cluster(t, 3)
	a, b := net[names[0]], net[names[1]]
	// b wrongly declares a failed.
	b.declare(a.self, meshpb.State_STATE_FAILED, now)
	if _, ok := b.members.Get(a.self); ok {
		t.Fatal("declare did not remove a at b")
	}
	for range 10 {
		now = now.Add(p)
		tick(t, net, now)
	}
	for _, n := range names {
		if _, ok := net[n].members.Get(a.self); !ok {
			t.Fatalf("%s does not see %s after it refuted", n, a.self)
		}
	}
	if a.stats.Refutations == 0 {
		t.Fatal("no refutation counted")
	}
}

// Bad input gets a clear error and leaves the state untouched.
func TestBadInputLeavesStateUntouched(t *testing.T) {
	net, names, _ := cluster(t, 3)
	st := net[names[0]]
	good := &meshpb.Entry{Addr: "10.0.0.9:7946", Time: 5, Writer: "10.0.0.9:7946", Meta: &meshpb.PeerMeta{Name: "ok"}}
	cases := []struct {
		name string
		req  *meshpb.SyncRequest
		want string
	}{
		{"bad address", &meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{good, {Addr: "no-port", Time: 1, Writer: "no-port"}}}, "not host:port"},
		{"empty address", &meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{good, {Time: 1, Writer: "x"}}}, "host:port"},
		{"live entry written by another", &meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{good, {Addr: "10.0.0.8:1", Time: 9, Writer: "10.0.0.9:7946"}}}, "only a peer itself"},
		{"zero time", &meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{good, {Addr: "10.0.0.8:1", Writer: "10.0.0.8:1"}}}, "time must be at least 1"},
		{"absurd time", &meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{good, {Addr: "10.0.0.8:1", Time: 1 << 63, Writer: "10.0.0.8:1"}}}, "ahead of this peer's clock"},
		{"clock jump", &meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{good, {Addr: "10.0.0.8:1", Time: st.clock.Time() + 1<<33, Writer: "10.0.0.8:1"}}}, "ahead of this peer's clock"},
		{"bad entry after a good one with a high time", &meshpb.SyncRequest{Full: true, Clock: st.clock.Time() + 1<<20, Delta: []*meshpb.Entry{{Addr: "10.0.0.9:7946", Time: st.clock.Time() + 1<<20, Writer: "10.0.0.9:7946"}, {Addr: "x"}}}, "host:port"},
		{"unknown state", &meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{good, {Addr: "10.0.0.8:1", Time: 3, Writer: "10.0.0.8:1", State: 7}}}, "unknown state"},
		{"huge meta", &meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{good, {Addr: "10.0.0.8:1", Time: 3, Writer: "10.0.0.8:1", Meta: &meshpb.PeerMeta{Name: strings.Repeat("x", 20<<10)}}}}, "MaxMetaBytes"},
		{"empty writer in version", &meshpb.SyncRequest{Full: true, Version: []*meshpb.WriterTime{{Time: 3}}, Delta: []*meshpb.Entry{good}}, "version vector"},
		{"other cluster", &meshpb.SyncRequest{Cluster: "other", Full: true, Delta: []*meshpb.Entry{good}}, "cluster name mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, digest, version, clock := st.members.Clone(), st.digest, st.members.Version(), st.clock
			_, err := st.answer(tc.req, t0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("answer = %v, want an error containing %q", err, tc.want)
			}
			if !st.members.Equal(before) || st.digest != digest || st.members.Version().Compare(version) != crdt.Equal || st.clock != clock {
				t.Fatal("state changed after a rejected request")
			}
		})
	}
}

// After a tombstone is purged, an owner whose entry is at or below the
// partner's floor re-stamps it and is accepted again.
func TestOwnerRestampsAboveFloor(t *testing.T) {
	a, b := newTestState("10.0.0.1:1"), newTestState("10.0.0.2:1")
	// b has purged tombstones up to Lamport time 50.
	for i := range 50 {
		b.clock.Tick()
		_ = i
	}
	b.declare("10.0.0.3:1", meshpb.State_STATE_FAILED, t0)
	b.members.Purge(func(entry) bool { return true })
	if b.members.Floor() == 0 {
		t.Fatal("no floor after purge")
	}
	net := map[string]*state{a.self: a, b.self: b}
	if err := a.addSeed(b.self, t0); err != nil {
		t.Fatal(err)
	}
	now := t0
	for range 5 {
		now = now.Add(p)
		tick(t, net, now)
	}
	if _, ok := b.members.Get(a.self); !ok {
		t.Fatalf("b (floor %d) does not accept a (entry %v)", b.members.Floor(), a.members.Version())
	}
}

func TestDeltaIsCutToMaxDeltaEntries(t *testing.T) {
	a, b := newTestState("10.0.0.1:1"), newTestState("10.0.0.2:1")
	a.cfg.MaxDeltaEntries = 4
	b.cfg.MaxDeltaEntries = 4
	for i := range 20 { // a knows 20 failed members b lacks
		a.declare(fmt.Sprintf("10.0.1.%d:1", i), meshpb.State_STATE_FAILED, t0)
	}
	net := map[string]*state{a.self: a, b.self: b}
	if err := b.addSeed(a.self, t0); err != nil {
		t.Fatal(err)
	}
	now := t0
	for i := 0; b.members.Equal(&a.members) == false; i++ {
		if i > 20 {
			t.Fatal("cut deltas never converged")
		}
		now = now.Add(p)
		for _, ex := range b.round(now) {
			if ex.addr == a.self {
				deliver(t, net, b, ex, now)
			} else {
				b.done(ex)
			}
		}
	}
}

// Converged never holds while a member holds another state, except for a
// change younger than Expiry that has not reached the asker yet (no local
// check can see that). Checked at every tick through meta updates, a crash
// and a partition.
func TestConvergedNeverLies(t *testing.T) {
	net, names, now := cluster(t, 8)
	changedAt := map[string]time.Time{}
	digestOf := map[string]uint64{}
	for _, a := range names {
		digestOf[a] = net[a].digest
	}
	check := func(reachable map[string]*state) {
		for _, a := range names {
			if st := reachable[a]; st != nil && st.digest != digestOf[a] {
				digestOf[a], changedAt[a] = st.digest, now
			}
		}
		for a, st := range reachable {
			if !st.converged() {
				continue
			}
			for _, b := range names {
				other := net[b]
				if other == nil || other == st || !st.liveMember(b) {
					continue
				}
				if other.digest != st.digest && now.Sub(changedAt[b]) > st.cfg.Expiry {
					t.Fatalf("%v: %s says converged, but member %s has held another state since %v", now.Sub(t0), a, b, changedAt[b].Sub(t0))
				}
			}
		}
	}
	run := func(rounds int, reachable map[string]*state) {
		for range rounds {
			now = now.Add(p)
			tick(t, reachable, now)
			check(reachable)
		}
	}
	waitConverged := func(reachable map[string]*state, limit int) int {
		for i := 1; i <= limit; i++ {
			run(1, reachable)
			all := true
			for _, st := range reachable {
				all = all && st.converged()
			}
			if all {
				return i
			}
		}
		t.Fatalf("not all converged within %d rounds", limit)
		return 0
	}
	t.Logf("converged after join: %d more rounds", waitConverged(net, 20))

	if err := net[names[2]].setMeta(&meshpb.PeerMeta{Name: "changed"}, now); err != nil {
		t.Fatal(err)
	}
	if net[names[2]].converged() {
		t.Fatal("a peer that just changed its meta says converged")
	}
	t.Logf("converged after a meta update: %d rounds", waitConverged(net, 20))

	// Partition: {0..3} and {4..7}; a meta change on one side.
	left, right := map[string]*state{}, map[string]*state{}
	for i, a := range names {
		if i < 4 {
			left[a] = net[a]
		} else {
			right[a] = net[a]
		}
	}
	if err := net[names[1]].setMeta(&meshpb.PeerMeta{Name: "left side"}, now); err != nil {
		t.Fatal(err)
	}
	for range 40 { // long enough for each side to drop the other
		now = now.Add(p)
		tick(t, left, now)
		tick(t, right, now)
		check(left)
		check(right)
	}
	for a, st := range left {
		if got := len(liveKeys(st)); got != 4 {
			t.Fatalf("%s sees %d members during the partition, want 4", a, got)
		}
	}
	healed := now
	for i := 0; ; i++ {
		run(1, net)
		merged := true
		for _, st := range net {
			merged = merged && len(liveKeys(st)) == len(names) && st.converged()
		}
		if merged {
			t.Logf("re-merged and converged %v after the heal", now.Sub(healed))
			break
		}
		if i > 60 {
			t.Fatal("sides did not re-merge within 60 rounds of the heal")
		}
	}
	if got := net[names[5]].snapshot()[names[1]].GetName(); got != "left side" {
		t.Fatalf("after the heal the right side sees %s's name as %q", names[1], got)
	}
}

// A peer restarted on an address that earlier left gracefully, or whose
// previous life wrote a newer entry than the new one's first, comes back
// with the new meta.
func TestRestartAfterLeaveAndAfterNewerPreviousLife(t *testing.T) {
	for _, how := range []string{"left", "newer previous life"} {
		t.Run(how, func(t *testing.T) {
			net, names, now := cluster(t, 4)
			old := net[names[3]]
			if how == "left" {
				req, to := old.leave(now)
				for _, a := range to {
					if _, err := net[a].answer(req, now); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				for i := range 30 { // the old life's clock runs far ahead
					if err := old.setMeta(&meshpb.PeerMeta{Name: fmt.Sprintf("old-%d", i)}, now); err != nil {
						t.Fatal(err)
					}
				}
				for range 10 {
					now = now.Add(p)
					tick(t, net, now)
				}
			}
			reborn := newTestState(names[3])
			if err := reborn.setMeta(&meshpb.PeerMeta{Name: "new"}, now); err != nil {
				t.Fatal(err)
			}
			if err := reborn.addSeed(names[0], now); err != nil {
				t.Fatal(err)
			}
			net[names[3]] = reborn
			for range 15 {
				now = now.Add(p)
				tick(t, net, now)
			}
			for _, a := range names {
				if got := net[a].snapshot()[names[3]].GetName(); got != "new" {
					t.Fatalf("%s sees the restarted peer as %q, want new", a, got)
				}
			}
		})
	}
}

// hmacAuthority is a toy Authority: a "certificate" is the address, and
// only holders of the key for that address can sign.
type hmacAuthority struct {
	self string
	keys map[string][]byte // address -> key; the CA's knowledge
}

func (a hmacAuthority) Sign(data []byte) ([]byte, []byte, error) {
	return []byte(a.self), mac(a.keys[a.self], data), nil
}

func (a hmacAuthority) Verify(addr string, data, cert, sig []byte) error {
	if string(cert) != addr {
		return fmt.Errorf("certificate names %q, not %q", cert, addr)
	}
	if want := mac(a.keys[addr], data); string(sig) != string(want) {
		return errors.New("bad signature")
	}
	return nil
}

func mac(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)
}

// With an Authority, only the peer named by a certificate can write its
// live entry: a rogue cannot rewrite another member's meta, even with the
// victim's writer id, and the honest cluster is unchanged.
func TestAuthorityRejectsImpersonation(t *testing.T) {
	keys := map[string][]byte{}
	net := map[string]*state{}
	var names []string
	for i := range 4 {
		a := fmt.Sprintf("10.0.0.%d:7946", i+1)
		keys[a] = []byte("key-" + a)
		names = append(names, a)
	}
	for i, a := range names {
		seeds++
		cfg := PeerConfig{SelfEndpoint: a, PingPeriod: p, Rand: rand.New(rand.NewPCG(seeds, 2)),
			Authority: hmacAuthority{self: a, keys: keys}}.withDefaults()
		net[a] = newState(cfg, t0)
		if i > 0 {
			if err := net[a].addSeed(names[0], t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	now := t0
	for range 15 {
		now = now.Add(p)
		tick(t, net, now)
	}
	for _, a := range names {
		if got := liveKeys(net[a]); !slices.Equal(got, names) {
			t.Fatalf("signed cluster: %s sees %v", a, got)
		}
	}
	victim, target := names[1], net[names[2]]
	e, _ := target.members.Lookup(victim)
	forged := &meshpb.Entry{Addr: victim, Time: e.Stamp.Time + 5, Writer: e.Stamp.Writer,
		Meta: &meshpb.PeerMeta{Name: "evil"}, Cert: []byte(victim), Sig: []byte("not a signature")}
	before, digest := target.members.Clone(), target.digest
	_, err := target.answer(&meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{forged}}, now)
	if err == nil || !strings.Contains(err.Error(), "not signed by that peer") {
		t.Fatalf("forged entry: err = %v, want a signature error", err)
	}
	if !target.members.Equal(before) || target.digest != digest {
		t.Fatal("state changed after a forged entry")
	}
	// A rogue signing with its own valid key does no better.
	rogue := hmacAuthority{self: names[3], keys: keys}
	fe := entry{Key: victim, Stamp: crdt.Stamp{Time: e.Stamp.Time + 5, Writer: e.Stamp.Writer},
		Value: member{meta: &meshpb.PeerMeta{Name: "evil"}}}
	forged.Cert, forged.Sig, _ = rogue.Sign(signedBytes(fe))
	if _, err := target.answer(&meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{forged}}, now); err == nil {
		t.Fatal("entry signed by another peer's key was accepted")
	}
	// Tombstones (failure detection) need no owner signature.
	fail := &meshpb.Entry{Addr: victim, Time: e.Stamp.Time + 6, Writer: names[3] + "#1", State: meshpb.State_STATE_FAILED}
	if _, err := target.answer(&meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{fail}}, now); err != nil {
		t.Fatalf("FAILED tombstone refused: %v", err)
	}
}

// A failure kills the entry its declarer saw, not a newer one: a slow
// declarer must not remove a member that has since written again (a new
// meta here; a restart or a refutation alike).
func TestFailureDoesNotKillNewerEntry(t *testing.T) {
	net, names, now := cluster(t, 3)
	a, b, c := net[names[0]], net[names[1]], net[names[2]]
	if err := b.setMeta(&meshpb.PeerMeta{Name: "v2"}, now); err != nil {
		t.Fatal(err)
	}
	b.pushes = nil
	newer, _ := b.members.Lookup(b.self)
	if _, err := a.applyEntries(encodeEntries([]entry{newer}), nil, now); err != nil {
		t.Fatal(err)
	}
	c.declare(b.self, meshpb.State_STATE_FAILED, now) // c never saw v2
	tomb, _ := c.members.Lookup(b.self)
	if _, err := a.applyEntries(encodeEntries([]entry{tomb}), nil, now); err != nil {
		t.Fatal(err)
	}
	if m, ok := a.members.Get(b.self); !ok || m.meta.GetName() != "v2" {
		t.Fatalf("a failure declared over b's older entry removed its newer one at a (live %v, meta %v)", ok, m.meta)
	}
	// Two peers declaring the same entry failed write the same tombstone.
	old, _ := b.members.Lookup(b.self)
	if got := failedStamp(old.Stamp); !old.Stamp.Less(got) {
		t.Fatalf("failedStamp(%v) = %v, want just above it", old.Stamp, got)
	}
	a.declare(b.self, meshpb.State_STATE_FAILED, now)
	if ta, _ := a.members.Lookup(b.self); ta.Stamp != failedStamp(newer.Stamp) {
		t.Fatalf("a declared b failed with stamp %v, want %v", ta.Stamp, failedStamp(newer.Stamp))
	}
}

// After a partition heals, each side's tombstones for the other arrive.
// Those written about members of our own side must lose on arrival (they
// renewed their entries on seeing the other side fail), so no member of a
// side ever drops a member of its own side.
func TestPartitionHealDoesNotFlapOwnSide(t *testing.T) {
	net, names, now := cluster(t, 6)
	sides := [][]string{names[:4], names[4:]}
	part := func(side []string) map[string]*state {
		m := map[string]*state{}
		for _, a := range side {
			m[a] = net[a]
		}
		return m
	}
	checkOwnSide := func(phase string) {
		t.Helper()
		for _, side := range sides {
			for _, a := range side {
				for _, b := range side {
					if a != b && !net[a].liveMember(b) {
						t.Fatalf("%s: %s dropped %s, a member of its own side", phase, a, b)
					}
				}
			}
		}
	}
	for range 30 {
		now = now.Add(p)
		for _, side := range sides {
			tick(t, part(side), now)
		}
		checkOwnSide("partitioned")
	}
	for _, a := range sides[0] {
		for _, b := range sides[1] {
			if net[a].liveMember(b) {
				t.Fatalf("after 30 partitioned rounds %s still lists %s", a, b)
			}
		}
	}
	for i := 0; ; i++ {
		now = now.Add(p)
		tick(t, net, now)
		checkOwnSide("healing")
		all := true
		for _, a := range names {
			all = all && len(liveKeys(net[a])) == len(names)
		}
		if all {
			t.Logf("re-merged %d rounds after the heal", i+1)
			return
		}
		if i > 60 {
			t.Fatal("not re-merged 60 rounds after the heal")
		}
	}
}

// The default Expiry grows with RPCTimeout: where a round trip may take
// several periods, a live member's probes come back that much later.
// An explicit Expiry is kept as given.
func TestDefaultExpiryCoversRPCTimeout(t *testing.T) {
	for _, c := range []struct {
		n           int
		rpc, expiry time.Duration
		want        time.Duration
	}{
		{n: 7, want: 5 * p},                            // default RPCTimeout: the N rule
		{n: 64, rpc: 3 * p, want: 8 * p},               // the N rule is larger
		{n: 7, rpc: 5 * p, want: 10 * p},               // 2 × RPCTimeout
		{n: 7, rpc: 5*p + p/3, want: 11 * p},           // rounded up to whole periods
		{n: 7, rpc: 5 * p, expiry: 6 * p, want: 6 * p}, // explicit: as given
	} {
		cfg := PeerConfig{SelfEndpoint: "10.0.0.1:7946", PingPeriod: p, RPCTimeout: c.rpc, Expiry: c.expiry}
		if c.expiry == 0 {
			if got := cfg.DefaultExpiry(c.n); got != c.want {
				t.Errorf("N=%d RPCTimeout=%v: DefaultExpiry = %v, want %v", c.n, c.rpc, got, c.want)
			}
		}
		m := NewMachine(cfg, t0)
		for i := 2; i <= c.n; i++ { // a view of n members
			e := entry{Key: fmt.Sprintf("10.0.1.%d:7946", i), Stamp: crdt.Stamp{Time: 1, Writer: "w"},
				Value: member{state: meshpb.State_STATE_ALIVE}}
			if ch, ok, _ := m.st.members.Put(e); ok {
				m.st.changed([]crdt.Change[string, member]{ch}, t0)
			}
		}
		if got := m.Expiry(); got != c.want {
			t.Errorf("N=%d RPCTimeout=%v Expiry=%v: the peer's Expiry is %v, want %v", len(m.st.view), c.rpc, c.expiry, got, c.want)
		}
	}
}

// tickReach is tick where a call from → to goes through only if reach
// says so; otherwise it times out, as behind a firewall that drops.
func tickReach(t *testing.T, net map[string]*state, now time.Time, reach func(from, to string) bool) {
	t.Helper()
	names := slices.Sorted(maps.Keys(net))
	run := func(from *state, ex *exchange) {
		for ex != nil {
			if !reach(from.self, ex.addr) || net[ex.addr] == nil {
				from.onError(ex, errors.New("context deadline exceeded"), now)
				return
			}
			resp, err := net[ex.addr].answer(proto.Clone(ex.req).(*meshpb.SyncRequest), now)
			if err != nil {
				from.onError(ex, err, now)
				return
			}
			if ex, err = from.onResponse(ex, proto.Clone(resp).(*meshpb.SyncResponse), now); err != nil {
				t.Fatalf("onResponse: %v", err)
			}
		}
	}
	for _, a := range names {
		for _, ex := range net[a].round(now) {
			run(net[a], ex)
		}
		for more := true; more; {
			more = false
			for _, b := range names {
				pushes := net[b].pushes
				net[b].pushes = nil
				for _, ex := range pushes {
					more = true
					run(net[b], ex)
				}
			}
		}
	}
}

// A member that can call out but cannot be reached is removed by every
// other member, stays removed however often it refutes, and is listed
// again within a few rounds of being reachable.
func TestUnreachableMemberStaysRemoved(t *testing.T) {
	net, names, now := cluster(t, 6)
	x := names[3]
	reachable := false
	reach := func(from, to string) bool { return to != x || reachable }
	others := slices.DeleteFunc(slices.Clone(names), func(a string) bool { return a == x })
	gone := func() bool {
		for _, a := range others {
			if net[a].liveMember(x) {
				return false
			}
		}
		return true
	}
	start := now
	for !gone() {
		now = now.Add(p)
		tickReach(t, net, now, reach)
		if now.Sub(start) > net[names[0]].expiry()+3*p {
			t.Fatalf("unreachable member not removed by all within Expiry + 3 periods (%v)", net[names[0]].expiry()+3*p)
		}
	}
	t.Logf("removed by all after %v", now.Sub(start))
	for range 40 {
		now = now.Add(p)
		tickReach(t, net, now, reach)
		if !gone() {
			t.Fatal("an unreachable member was listed again")
		}
	}
	if net[x].stats.Refutations == 0 || !net[x].pendingSelf {
		t.Fatalf("the member never refuted (%d) or is not pending (%v)", net[x].stats.Refutations, net[x].pendingSelf)
	}
	if _, ok := net[x].snapshot()[x]; !ok {
		t.Fatal("a pending member does not list itself")
	}
	reachable = true
	back := now
	for !slices.Equal(liveKeys(net[names[0]]), slices.Sorted(slices.Values(names))) || gone() {
		now = now.Add(p)
		tickReach(t, net, now, reach)
		if now.Sub(back) > 5*p {
			t.Fatalf("not listed again within 5 periods of being reachable: %v", liveKeys(net[names[0]]))
		}
	}
	t.Logf("listed again after %v", now.Sub(back))
}

// A member falsely declared failed in a cluster of two refutes, pending,
// and is listed again: its one observer's gossip exchange with it, which
// leaves no room for a separate probe, must let it know it was reached.
func TestFalselyFailedMemberOfTwoListedAgain(t *testing.T) {
	net, names, now := cluster(t, 2)
	a, b := net[names[0]], net[names[1]]
	e, _ := a.members.Lookup(b.self)
	fail := &meshpb.Entry{Addr: b.self, Time: e.Stamp.Time + 1, Writer: "10.0.0.66:7946#1", State: meshpb.State_STATE_FAILED}
	if _, err := a.applyEntries([]*meshpb.Entry{fail}, nil, now); err != nil {
		t.Fatal(err)
	}
	if a.liveMember(b.self) {
		t.Fatal("the tombstone did not remove b at a")
	}
	start := now
	for !a.liveMember(b.self) {
		now = now.Add(p)
		tick(t, net, now)
		if now.Sub(start) > 5*p {
			t.Fatalf("b not listed again at a within 5 periods (b refuted %d times, pending %v)", b.stats.Refutations, b.pendingSelf)
		}
	}
	if b.stats.Refutations == 0 {
		t.Fatal("b listed again without refuting")
	}
	t.Logf("listed again after %v", now.Sub(start))
}

// Two members whose link is broken both ways alert on each other, but one
// observer's alert never removes anybody.
func TestBrokenLinkRemovesNobody(t *testing.T) {
	net, names, now := cluster(t, 12)
	a := names[0]
	b := net[a].subjects[0]
	reach := func(from, to string) bool { return !(from == a && to == b || from == b && to == a) }
	for range 60 {
		now = now.Add(p)
		tickReach(t, net, now, reach)
	}
	want := slices.Sorted(slices.Values(names))
	for _, n := range names {
		if got := liveKeys(net[n]); !slices.Equal(got, want) {
			t.Fatalf("%s sees %v after 60 rounds of one broken link", n, got)
		}
	}
	if net[a].alerting() == 0 {
		t.Fatal("the broken link raised no alert: the test tests nothing")
	}
}

// A failed peer is called by the members that would observe it were it
// listed, not by everyone: false removals on a loaded machine must not
// multiply every peer's calls (and dials).
func TestFailedPeerCalledByItsWouldBeObservers(t *testing.T) {
	net, names, now := cluster(t, 30)
	victims := []string{names[3], names[11], names[20]}
	for _, v := range victims {
		delete(net, v)
	}
	for range 60 {
		now = now.Add(p)
		tick(t, net, now)
	}
	for a, st := range net {
		for _, v := range victims {
			if st.liveMember(v) {
				t.Fatalf("%s still lists crashed %s after 60 rounds", a, v)
			}
		}
	}
	callers := map[string]map[string]bool{}
	live := slices.Sorted(maps.Keys(net))
	for range 200 { // past MaxRetryInterval: every failed peer was due more than once
		now = now.Add(p)
		for _, a := range live {
			for _, ex := range net[a].round(now) {
				if ex.kind == deadProbe {
					if !net[a].wouldObserve(ex.addr) {
						t.Fatalf("%s called failed %s, which it would not observe", a, ex.addr)
					}
					if callers[ex.addr] == nil {
						callers[ex.addr] = map[string]bool{}
					}
					callers[ex.addr][a] = true
				}
				deliver(t, net, net[a], ex, now)
			}
			flushPushes(t, net, live, now)
		}
	}
	k := net[live[0]].cfg.Observers
	for _, v := range victims {
		if n := len(callers[v]); n < 1 || n > k {
			t.Errorf("failed %s was called by %d peers, want 1 to K = %d", v, n, k)
		}
	}
}
