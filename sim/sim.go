package sim

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/peer"
)

// Config describes a simulated network. Zero fields mean defaults.
type Config struct {
	// Seed picks everything random in a run: phase offsets, latencies,
	// losses, each machine's Rand and every scenario choice drawn from
	// Sim.Rand. The same seed gives the same run, event for event.
	Seed uint64
	// Peer is the template of every machine's config. SelfEndpoint, Rand,
	// Transport and Clock are set by the simulator. Default: peer defaults
	// (PingPeriod 1s, Expiry 5 × PingPeriod, RPCTimeout PingPeriod, ...).
	Peer peer.PeerConfig
	// Latency is the one-way delay of every message. Default: uniform in
	// [1ms, 10ms].
	Latency Latency
	// Loss is the probability that any one message (request or answer) is
	// lost; the caller then fails at its RPC deadline. Default 0.
	Loss float64
	// CrashBound, when set, is how long after a crash every live peer
	// must have removed the crashed peer; later is a violation. Leave it
	// zero in scenarios where loss or partitions may legitimately slow
	// detection.
	CrashBound time.Duration
	// AllowFalseRemovals counts false removals without reporting each as
	// a violation (for loss rates where some are expected).
	AllowFalseRemovals bool
	// Wire says how messages cross the network: WireCopy (the default)
	// or WireShared; the run is the same in both.
	Wire Wire
	// Repro is printed with every violation: the command that replays it.
	Repro string
	// TraceSize is how many recent records are kept for violation
	// reports. Default 1 << 14.
	TraceSize int
	// Progress, when set, receives a line about every ProgressEvery of
	// wall time during long runs. ProgressEvery defaults to 5s.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// Latency is a one-way delay distribution: Min + an exponential with mean
// Mean − Min, capped at Max (when Max > 0); or, when Mean is zero, uniform
// in [Min, Max].
type Latency struct {
	Min, Max, Mean time.Duration
}

func (l Latency) draw(r *rand.Rand) int64 {
	if l.Mean > 0 {
		d := l.Min + time.Duration(r.ExpFloat64()*float64(l.Mean-l.Min))
		if l.Max > 0 && d > l.Max {
			d = l.Max
		}
		return int64(d)
	}
	if l.Max <= l.Min {
		return int64(l.Min)
	}
	return int64(l.Min) + r.Int64N(int64(l.Max-l.Min)+1)
}

func (l Latency) String() string {
	if l.Mean > 0 {
		return fmt.Sprintf("%v+exp(mean %v)≤%v", l.Min, l.Mean, l.Max)
	}
	return fmt.Sprintf("uniform[%v,%v]", l.Min, l.Max)
}

// node is one simulated host: an address and, while up, a machine.
type node struct {
	slot    int32
	addr    string
	m       *peer.Machine
	inc     uint32 // bumped on every crash, leave and restart
	up      bool
	started int64 // when this incarnation started
	// restarted and stalled are when it last restarted and when its last
	// stall ended (never: far in the past), to excuse removals.
	restarted, stalled int64
	downAt             int64    // when it last went down
	left               bool     // went down by Leave
	everLeft           bool     // some incarnation left
	meta               uint32   // id of its current meta
	metas              []uint32 // ids of every meta it had, increasing
	slow               int64    // extra delay of each round
	paused             int64    // no rounds, no answers before this time
	// unreachable is set while no other peer's call reaches it (see
	// Unreachable); reachableAt is when that last ended.
	unreachable bool
	reachableAt int64
}

// Stats counts simulated activity.
type Stats struct {
	Events       uint64 // events processed
	Rounds       uint64 // gossip rounds run
	Messages     uint64 // Sync requests and answers sent
	Bytes        uint64 // their cost on a Gossip stream: encoding and gRPC prefix (see onStream)
	Lost         uint64 // messages lost to the loss rate
	Partitioned  uint64 // messages dropped by a partition
	Timeouts     uint64 // calls failed at their deadline
	Declarations uint64 // FAILED tombstones written by a peer itself
	Removals     uint64 // removals (FAILED events) of a running peer, excused or not
	// FalseRemovals counts removals of a running peer, one per observer,
	// that no crash, stall, unreachability or partition excuses; see the
	// package doc.
	FalseRemovals uint64
	Zombies       uint64
	Joins         uint64 // peers started or restarted
	Crashes       uint64
}

// Sim is a deterministic simulation of a mesh cluster: peer.Machine values
// over a simulated network in virtual time, driven by one event queue and
// one seeded random source. A Sim is not safe for concurrent use and
// starts no goroutines.
type Sim struct {
	cfg        Config
	peerCfg    peer.PeerConfig // defaults applied
	period     int64
	rpcTimeout int64
	epoch      time.Time
	rng        *rand.Rand

	now    int64
	seq    uint64
	q      queue
	nodes  []*node
	byAddr map[string]int32
	net    network
	chk    checker
	tr     tracer
	stats  Stats

	metaSeq   uint32
	metaBorn  []int64 // per meta id: when it was set
	lastFault int64

	wallStart    time.Time
	lastProgress time.Time
}

// never is a time far before the start.
const never = math.MinInt64 / 4

// epoch is virtual time zero. Any fixed instant would do.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// New returns a simulation with no peers.
func New(cfg Config) *Sim {
	if cfg.TraceSize <= 0 {
		cfg.TraceSize = 1 << 14
	}
	if cfg.Latency == (Latency{}) {
		cfg.Latency = Latency{Min: time.Millisecond, Max: 10 * time.Millisecond}
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 5 * time.Second
	}
	pc := effective(cfg.Peer)
	s := &Sim{
		cfg:        cfg,
		peerCfg:    pc,
		period:     int64(pc.PingPeriod),
		rpcTimeout: int64(pc.RPCTimeout),
		epoch:      epoch,
		rng:        rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		byAddr:     map[string]int32{},
		tr:         newTracer(cfg.TraceSize),
		metaBorn:   []int64{0},
		wallStart:  time.Now(),
	}
	s.net.loss = cfg.Loss
	s.lastProgress = s.wallStart
	return s
}

// effective returns c with the peer package's defaults filled in. The
// peer package does not export its defaulting, so this asks a Peer that
// is never run (it starts no goroutine and opens no connection).
func effective(c peer.PeerConfig) peer.PeerConfig {
	c.SelfEndpoint = "10.0.0.0:1"
	c.Transport = nopTransport{}
	return peer.NewPeer(c).Config()
}

type nopTransport struct{}

func (nopTransport) Sync(context.Context, string, *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	return nil, fmt.Errorf("simulated peers have no transport")
}
func (nopTransport) Forget(string) {}
func (nopTransport) Close() error  { return nil }

// Seed returns the run's seed.
func (s *Sim) Seed() uint64 { return s.cfg.Seed }

// Rand returns the run's random source, for scenarios to draw from.
func (s *Sim) Rand() *rand.Rand { return s.rng }

// Period returns the PingPeriod in effect.
func (s *Sim) Period() time.Duration { return time.Duration(s.period) }

// PeerConfig returns the machines' config template, defaults applied.
func (s *Sim) PeerConfig() peer.PeerConfig { return s.peerCfg }

// Elapsed returns the virtual time since the start.
func (s *Sim) Elapsed() time.Duration { return time.Duration(s.now) }

// Rounds returns the virtual time since the start in PingPeriods.
func (s *Sim) Rounds() float64 { return float64(s.now) / float64(s.period) }

// Stats returns the counters so far.
func (s *Sim) Stats() Stats { return s.stats }

// TraceDigest returns a hash of every record and every message of the run
// so far: equal for equal seeds and scenarios.
func (s *Sim) TraceDigest() uint64 { return s.tr.h }

// LastFault returns the virtual time of the last fault (crash, restart,
// leave, partition or heal, loss change, stall).
func (s *Sim) LastFault() time.Duration { return time.Duration(s.lastFault) }

func (s *Sim) at() time.Time { return s.epoch.Add(time.Duration(s.now)) }

// addrOf returns the address of slot i: 10.x.y.z:7946, in slot order.
func addrOf(i int) string {
	i++
	return "10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255) + ":7946"
}

// Live returns the addresses of the peers that are up, in slot order.
func (s *Sim) Live() []string {
	var out []string
	for _, n := range s.nodes {
		if n.up {
			out = append(out, n.addr)
		}
	}
	return out
}

// Down returns the addresses of the peers that crashed or left and were
// not restarted.
func (s *Sim) Down() []string {
	var out []string
	for _, n := range s.nodes {
		if !n.up {
			out = append(out, n.addr)
		}
	}
	return out
}

// Machine returns the machine running at addr, or nil when it is down.
// Driving it directly is allowed but bypasses the checkers.
func (s *Sim) Machine(addr string) *peer.Machine {
	if i, ok := s.byAddr[addr]; ok && s.nodes[i].up {
		return s.nodes[i].m
	}
	return nil
}

func (s *Sim) node(addr string) *node {
	i, ok := s.byAddr[addr]
	if !ok {
		panic(fmt.Sprintf("sim: no peer %q", addr))
	}
	return s.nodes[i]
}

func (s *Sim) schedule(at int64, e event) {
	if at < s.now {
		panic(fmt.Sprintf("sim: event scheduled in the past (%d < %d)", at, s.now))
	}
	e.at = at
	e.seq = s.seq
	s.seq++
	s.q.push(e)
}

// After schedules f to run d of virtual time from now.
func (s *Sim) After(d time.Duration, f func()) {
	s.schedule(s.now+int64(d), event{kind: evAction, slot: -1, fn: f})
}

// Every runs f every d of virtual time, first after d, while f returns true.
func (s *Sim) Every(d time.Duration, f func() bool) {
	var tick func()
	tick = func() {
		if f() {
			s.After(d, tick)
		}
	}
	s.After(d, tick)
}

// Run processes events for d of virtual time.
func (s *Sim) Run(d time.Duration) {
	s.runUntil(s.now+int64(d), nil)
}

// RunUntil processes events until done returns true (checked after every
// event) or d of virtual time passes. It reports whether done returned
// true; virtual time then stands at the event that made it so.
func (s *Sim) RunUntil(d time.Duration, done func() bool) bool {
	if done() {
		return true
	}
	return s.runUntil(s.now+int64(d), done)
}

func (s *Sim) runUntil(end int64, done func() bool) bool {
	for len(s.q) > 0 && s.q[0].at <= end {
		e := s.q.pop()
		s.now = e.at
		s.stats.Events++
		s.fire(e)
		if done != nil && done() {
			return true
		}
		if s.cfg.Progress != nil && s.stats.Events&0xffff == 0 {
			s.progress()
		}
	}
	s.now = max(s.now, end)
	return false
}

func (s *Sim) progress() {
	w := time.Now()
	if w.Sub(s.lastProgress) < s.cfg.ProgressEvery {
		return
	}
	s.lastProgress = w
	fmt.Fprintf(s.cfg.Progress, "  [wall %5.1fs] virtual %7.1f rounds, %d live, %d not converged, %d events, %.1f MB sent\n",
		w.Sub(s.wallStart).Seconds(), s.Rounds(), s.chk.liveCount, s.chk.unconverged, s.stats.Events, float64(s.stats.Bytes)/1e6)
}

func (s *Sim) fire(e event) {
	switch e.kind {
	case evRound:
		s.round(e)
	case evRequest:
		s.request(e.c)
	case evResponse:
		s.response(e.c)
	case evFail:
		s.fail(e.c)
	case evAction:
		e.fn()
	}
}

// newMeta returns a fresh meta for slot: its name carries a run-unique id,
// increasing over time, which the checkers read back.
func (s *Sim) newMeta(slot int32) (*meshpb.PeerMeta, uint32) {
	s.metaSeq++
	id := s.metaSeq
	s.metaBorn = append(s.metaBorn, s.now)
	return &meshpb.PeerMeta{Name: "peer-" + strconv.Itoa(int(slot)) + "#" + strconv.Itoa(int(id)),
		Tags: map[string]string{"zone": "z" + strconv.Itoa(int(slot)%3)}}, id
}

// metaID reads back the id newMeta put in a meta's name.
func metaID(m *meshpb.PeerMeta) (uint32, bool) {
	name := m.GetName()
	i := strings.LastIndexByte(name, '#')
	if i < 0 {
		return 0, false
	}
	id, err := strconv.ParseUint(name[i+1:], 10, 31)
	return uint32(id), err == nil && id > 0
}

func (s *Sim) fault(kind uint64, slot int32) {
	s.lastFault = s.now
	s.tr.add(rec{at: s.now, kind: recFault, a: slot, b: -1, x: kind})
}

// AddPeer starts a new peer at a new address that contacts seeds, and
// returns its address. Its first round comes after a phase offset drawn
// in [0, PingPeriod), as if started at a random instant.
func (s *Sim) AddPeer(seeds ...string) string {
	slot := int32(len(s.nodes))
	n := &node{slot: slot, addr: addrOf(int(slot)), restarted: never, stalled: never, reachableAt: never}
	s.nodes = append(s.nodes, n)
	s.byAddr[n.addr] = slot
	s.chk.grow(len(s.nodes))
	s.boot(n, seeds, s.rng.Int64N(s.period))
	return n.addr
}

// boot starts a fresh machine on n, first round after phase.
func (s *Sim) boot(n *node, seeds []string, phase int64) {
	cfg := s.peerCfg
	cfg.SelfEndpoint = n.addr
	cfg.Transport, cfg.Clock = nil, nil
	cfg.Rand = rand.New(rand.NewPCG(s.rng.Uint64(), s.rng.Uint64()))
	n.m = peer.NewMachine(cfg, s.at())
	meta, id := s.newMeta(n.slot)
	if err := n.m.SetMeta(meta, s.at()); err != nil {
		panic(fmt.Sprintf("sim: set meta of %s: %v", n.addr, err))
	}
	for _, a := range seeds {
		if err := n.m.AddSeed(a, s.at()); err != nil {
			panic(fmt.Sprintf("sim: add seed %s to %s: %v", a, n.addr, err))
		}
	}
	n.inc++
	n.up, n.left = true, false
	n.started = s.now
	n.meta = id
	n.metas = append(n.metas, id)
	n.paused, n.slow = 0, 0
	s.stats.Joins++
	s.chk.start(s, n.slot, id)
	s.drain(n)
	s.schedule(s.now+phase, event{kind: evRound, slot: n.slot, inc: n.inc})
}

// Crash stops the peer at addr silently: it answers nothing from now on
// and its calls in flight are abandoned.
func (s *Sim) Crash(addr string) {
	n := s.node(addr)
	if !n.up {
		return
	}
	s.fault(faultCrash, n.slot)
	s.down(n, true)
	s.stats.Crashes++
	if s.cfg.CrashBound > 0 {
		inc := n.inc
		s.After(s.cfg.CrashBound, func() { s.chk.crashDeadline(s, n, inc) })
	}
}

func (s *Sim) down(n *node, crashed bool) {
	n.up = false
	n.inc++
	n.m = nil
	n.downAt = s.now
	s.chk.stop(s, n.slot, crashed)
}

// Leave makes the peer at addr leave gracefully: it pushes its LEFT entry
// to every live member, then stops (Peer.Leave also stops once the pushes
// are answered; the simulated peer stops at once and its pushes stay in
// flight).
func (s *Sim) Leave(addr string) {
	n := s.node(addr)
	if !n.up {
		return
	}
	s.fault(faultLeave, n.slot)
	req, to := n.m.Leave(s.at())
	s.drain(n)
	for _, a := range to {
		s.startCall(n, nil, req, a, true)
	}
	s.down(n, false)
	n.left, n.everLeft = true, true
}

// Restart starts a fresh machine at the address of a peer that is down,
// with a new meta, seeded with a random live peer (none if none is live).
func (s *Sim) Restart(addr string) {
	n := s.node(addr)
	if n.up {
		return
	}
	s.fault(faultRestart, n.slot)
	var seeds []string
	if live := s.Live(); len(live) > 0 {
		seeds = []string{live[s.rng.IntN(len(live))]}
	}
	n.restarted = s.now
	// A restarted process runs its first round at once, as Peer.Run does.
	s.boot(n, seeds, 0)
}

// SetMeta gives the peer at addr a new meta.
func (s *Sim) SetMeta(addr string) {
	n := s.node(addr)
	if !n.up {
		return
	}
	meta, id := s.newMeta(n.slot)
	if err := n.m.SetMeta(meta, s.at()); err != nil {
		panic(fmt.Sprintf("sim: set meta of %s: %v", addr, err))
	}
	s.tr.add(rec{at: s.now, kind: recFault, a: n.slot, b: -1, x: faultMeta})
	n.meta = id
	n.metas = append(n.metas, id)
	if !n.unreachable {
		s.chk.setExpected(s, n.slot, id)
	}
	s.drain(n)
}

// Slow delays every round of the peer at addr by extra (0 restores it):
// its period becomes PingPeriod + extra. It still answers promptly.
func (s *Sim) Slow(addr string, extra time.Duration) {
	n := s.node(addr)
	s.tr.add(rec{at: s.now, kind: recFault, a: n.slot, b: -1, x: faultSlow})
	n.slow = int64(extra)
}

// Stall pauses the peer at addr for d, like a stopped process or a long
// GC pause: no rounds, and requests wait in its socket until it resumes.
func (s *Sim) Stall(addr string, d time.Duration) {
	n := s.node(addr)
	if !n.up {
		return
	}
	s.fault(faultStall, n.slot)
	n.paused = max(n.paused, s.now+int64(d))
	n.stalled = n.paused
}

// SetLoss changes the message loss rate.
func (s *Sim) SetLoss(p float64) {
	s.fault(faultLoss, -1)
	s.net.loss = p
}

// SetLatency changes the latency distribution of messages sent from now.
func (s *Sim) SetLatency(l Latency) { s.cfg.Latency = l }

// Partition cuts every pair of peers in different groups, both ways.
// Peers in no group keep talking to everyone.
func (s *Sim) Partition(groups ...[]string) {
	for i := range groups {
		for j := range groups {
			if i != j {
				s.Block(groups[i], groups[j])
			}
		}
	}
}

// Block drops every message from a peer in from to a peer in to: a
// one-way partition. Requests from to reach from, but the answers are lost.
func (s *Sim) Block(from, to []string) {
	s.fault(faultPartition, -1)
	s.net.block(s, from, to)
}

// Unreach makes every call from a peer in from to a peer in to go
// unanswered, as an inbound firewall would, while calls the other way and
// their answers still go through. Heal removes it.
func (s *Sim) Unreach(from, to []string) {
	s.fault(faultPartition, -1)
	s.net.calls = append(s.net.calls, newRule(s, from, to))
}

// Unreachable makes calls to addr from every other peer go unanswered
// (on), or lifts that (off, which heals every other rule too). addr's
// own calls go through. While it is on, the checkers expect every other
// peer to drop addr; once it is off, to list it again.
func (s *Sim) Unreachable(addr string, on bool) {
	n := s.node(addr)
	if !on {
		s.Heal()
		n.unreachable = false
		n.reachableAt = s.now
		if n.up {
			s.chk.setExpected(s, n.slot, n.meta)
		}
		return
	}
	var others []string
	for _, m := range s.nodes {
		if m.slot != n.slot {
			others = append(others, m.addr)
		}
	}
	s.Unreach(others, []string{addr})
	n.unreachable = true
	s.chk.setExpected(s, n.slot, 0)
}

// Heal removes every partition.
func (s *Sim) Heal() {
	s.fault(faultHeal, -1)
	s.net.heal(s.now)
}

// Converged reports whether every live peer's members, metas included,
// are exactly the live peers and their current metas.
func (s *Sim) Converged() bool { return s.chk.unconverged == 0 }

// Unconverged returns how many live peers do not yet hold the exact live
// membership.
func (s *Sim) Unconverged() int { return s.chk.unconverged }

// AwaitConvergence runs until every live peer holds the exact live
// membership, for at most limit of virtual time, and returns how long it
// took. Not converging is a violation, reported with what differs.
func (s *Sim) AwaitConvergence(limit time.Duration, why string) (time.Duration, bool) {
	start := s.now
	ok := s.RunUntil(limit, s.Converged)
	if !ok {
		s.chk.violate(s, "convergence", fmt.Sprintf("%s: %d of %d live peers still differ from the live membership %v later%s",
			why, s.chk.unconverged, s.chk.liveCount, limit, s.chk.describeUnconverged(s)), s.chk.unconvergedSlots(s, 3)...)
	}
	return time.Duration(s.now - start), ok
}

// Violations returns the invariant violations so far (at most 50 are kept).
func (s *Sim) Violations() []Violation { return s.chk.violations }

// Err returns nil when no invariant failed, or an error that names the
// seed, the command to reproduce and the first violations with traces.
func (s *Sim) Err() error {
	if s.chk.nviolations == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sim seed %d: %d invariant violation(s)", s.cfg.Seed, s.chk.nviolations)
	if s.cfg.Repro != "" {
		fmt.Fprintf(&b, "\nreproduce: %s", s.cfg.Repro)
	}
	for i, v := range s.chk.violations {
		if i == 3 {
			fmt.Fprintf(&b, "\n... %d more", s.chk.nviolations-3)
			break
		}
		b.WriteString("\n- ")
		b.WriteString(v.String())
	}
	return fmt.Errorf("%s", b.String())
}

// CheckQuiescent checks, with no fault pending, that every live peer's
// Members() is exactly the live membership (comparing at most sample
// peers in full, 0 for all) and that all digests agree. Run it after
// convergence and a few quiet rounds.
func (s *Sim) CheckQuiescent(sample int) {
	s.chk.verifyMembers(s, sample)
	groups := map[uint64][]string{}
	for _, n := range s.nodes {
		if n.up {
			d := n.m.Digest()
			groups[d] = append(groups[d], n.addr)
		}
	}
	if len(groups) > 1 {
		var parts []string
		for d, g := range groups {
			parts = append(parts, fmt.Sprintf("%016x: %d peers (e.g. %s)", d, len(g), g[0]))
		}
		slices.Sort(parts)
		s.chk.violate(s, "digests", fmt.Sprintf("after quiescence live peers hold %d different digests: %s", len(groups), strings.Join(parts, "; ")))
	}
}

// RemovalTimes returns, for each crash whose peer every live peer has
// since removed, how long that took; in order of completion.
func (s *Sim) RemovalTimes() []time.Duration { return s.chk.removalTimes }

// Expiry returns the Expiry the live peers apply now: Config.Peer's, or
// by default its value for the size of their views, which grows with
// log N. It asks the first live machine (0 when none is live).
func (s *Sim) Expiry() time.Duration {
	for _, n := range s.nodes {
		if n.up {
			return n.m.Expiry()
		}
	}
	return 0
}

// Log2 is log₂ n, for bounds in rounds.
func Log2(n int) float64 { return math.Log2(float64(max(n, 1))) }

// sortOutgoing orders a round's calls by address: Machine.Round lists
// seeds and failed peers in map order, which must not leak into the run.
func sortOutgoing(outs []*peer.Outgoing) {
	slices.SortFunc(outs, func(a, b *peer.Outgoing) int { return cmp.Compare(a.To, b.To) })
}

// StartConverged starts n peers that already know each other, as if a
// join had just converged: each machine starts alone, then receives every
// peer's own entry (what it answers a new partner) in Push requests of at
// most MaxDeltaEntries entries, through Machine.Answer, so through the
// protocol's own validation and merge. Nothing crosses the network and no
// bytes are counted. It lets the steady scenario measure rounds at sizes
// where the join itself takes minutes; the join scenario measures joins.
func (s *Sim) StartConverged(n int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = s.AddPeer()
	}
	var entries []*meshpb.Entry
	for _, a := range addrs {
		resp, err := s.node(a).m.Answer(&meshpb.SyncRequest{Cluster: s.peerCfg.ClusterName, Full: true}, s.at())
		if err != nil {
			panic(fmt.Sprintf("sim: %s refused a full request: %v", a, err))
		}
		entries = append(entries, resp.GetDelta()...)
	}
	k := s.peerCfg.MaxDeltaEntries
	if sameTime(entries) {
		// Machines booted at one instant stamp their entries alike: one
		// push then carries them all, as an honest peer may send them.
		k = max(k, len(entries))
	}
	for _, a := range addrs {
		nd := s.node(a)
		for i := 0; i < len(entries); i += k {
			var req proto.Message = &meshpb.SyncRequest{Cluster: s.peerCfg.ClusterName, Push: true, Delta: entries[i:min(i+k, len(entries))]}
			if s.cfg.Wire == WireCopy {
				req = proto.Clone(req)
			}
			if _, err := nd.m.Answer(req.(*meshpb.SyncRequest), s.at()); err != nil {
				panic(fmt.Sprintf("sim: %s refused the entries of its peers: %v", a, err))
			}
		}
		s.drain(nd)
	}
	return addrs
}

// sameTime reports whether all entries share one Lamport time.
func sameTime(es []*meshpb.Entry) bool {
	for _, e := range es {
		if e.GetTime() != es[0].GetTime() {
			return false
		}
	}
	return true
}
