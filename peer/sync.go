package peer

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/crdt"
	"github.com/gossipmesh/mesh/meshpb"
)

// This file is the protocol: it builds, answers and applies Sync messages
// on a state value, synchronously, with the time passed in. It does no I/O
// and starts no goroutine, so a simulator can drive thousands of states
// through it in virtual time; Peer (peer.go) adds the lock, the ticker and
// the transport. docs/PROTOCOL.md describes the exchange.

// member is the value stored per address in the membership map. A
// tombstone keeps the member's last meta, so that operators still see who
// failed or left.
type member struct {
	meta  *meshpb.PeerMeta
	state meshpb.State
	// With an Authority: the owner's credentials for its ALIVE and LEFT
	// entries, relayed as they are; nil without. A pointer, not two
	// slices: every peer holds an entry per member, and a simulator
	// thousands of peers.
	cred *credentials
	// pending marks an entry its owner wrote after it was declared
	// failed: not listed until an observer has reached the owner.
	pending bool
}

// listed reports whether e is a member GetMembers lists: alive and not
// waiting for its observers (see member.pending).
func listed(e entry) bool { return !e.Deleted && !e.Value.pending }

type credentials struct{ cert, sig []byte }

// newCredentials returns nil when there are none.
func newCredentials(cert, sig []byte) *credentials {
	if len(cert) == 0 && len(sig) == 0 {
		return nil
	}
	return &credentials{cert, sig}
}

// credentials returns the member's certificate and signature, if any.
func (m member) credentials() (cert, sig []byte) {
	if m.cred == nil {
		return nil, nil
	}
	return m.cred.cert, m.cred.sig
}

type entry = crdt.Entry[string, member]

// maxDeadProbes bounds the failed peers remembered for partition healing.
const maxDeadProbes = 1024

// maxClockJump bounds how far one received write may move the Lamport
// clock. Honest clocks advance by one per write; without a bound a rogue
// peer could push every clock to crdt.MaxTime and freeze all updates.
const maxClockJump = 1 << 32

var (
	errClusterMismatch = errors.New("cluster name mismatch")
	errBadRequest      = errors.New("invalid sync message")
	// errLimit refuses a message that would take a peer beyond one of its
	// limits (MaxDeltaEntries, MaxMembers); gRPC's ResourceExhausted.
	errLimit = errors.New("limit exceeded")
)

// retry schedules attempts to reach an address with capped backoff.
type retry struct {
	next    time.Time
	backoff time.Duration
}

// exchange is one outgoing Sync in flight.
type exchange struct {
	addr string
	req  *meshpb.SyncRequest
	// why the partner was chosen: its failure means different things.
	kind exchangeKind
	// probe is set on a gossip exchange with a subject, which probes it
	// too: its first answer's heartbeat counts.
	probe bool
	// started is when the exchange began: a failure well before its
	// deadline was a refusal, not silence (see detector).
	started time.Time
	news    *pushNews // a push's news, queued again should it fail
}

// pushNews is what a push carries, as the outbox gave it.
type pushNews struct {
	entries []entry
	reports []report
	retry   bool
}

// probes reports whether ex's first answer tells whether its partner is
// reachable and runs (its heartbeat).
func (ex *exchange) probes() bool {
	return ex.kind == observeProbe || ex.probe && !ex.req.GetFull()
}

type exchangeKind int

const (
	gossipPartner exchangeKind = iota
	observeProbe               // an observer reaching one of its subjects
	seedProbe
	deadProbe // a failed member, to heal partitions
	push      // one-way: a fresh write told at once; not a partner exchange
)

// state is one peer's view of the cluster and the protocol bookkeeping.
type state struct {
	cfg  PeerConfig // defaults applied
	self string
	// writer signs this process's writes: "addr#incarnation". A restarted
	// peer gets a new one, so a write of a previous life and a write of
	// this one never share a stamp even at equal Lamport times.
	writer string
	meta   *meshpb.PeerMeta
	clock  crdt.Clock
	rng    *rand.Rand
	log    *slog.Logger

	members crdt.Map[string, member]
	digest  uint64   // XOR of entryHash over all entries: equal ⇒ same state
	view    []string // sorted live addresses, self included; replaced, never mutated
	selfPos int      // self's index in view, -1 when absent (left)

	// held is who is known to hold this peer's state (see Converged);
	// stale once the digest changes (see holdersNow).
	held holders
	// came holds the members that became live since the last
	// rebuildView, gone those that stopped being live: rebuildView merges
	// them into the view. Lists, not maps: a joiner learns of thousands
	// at once, and nextView sorts them anyway.
	came []string
	gone []string
	// expiryN and expiryD cache expiry() for a view of expiryN members
	// and calls timing out after expiryT.
	expiryN int
	expiryT time.Duration
	expiryD time.Duration
	calls   callTimer // how long to wait for answers

	// The liveness overlay (see overlay): ov over the view, rebuilt when
	// the view changes; subjects are the members this peer observes (nil
	// when stale, see refreshOverlay) and tells its own writes to; relays,
	// those it relays others' news to.
	ov        *overlay
	subjects  []string
	relays    []string
	det       detector
	reps      reports
	out       outbox
	heartbeat uint64 // advanced every round, sent in probe answers
	// pendingSelf is set once this peer refuted a failure of itself, until
	// one of its observers reaches it: its own entries are pending meanwhile.
	pendingSelf    bool
	pending        map[string]bool // members whose live entry is pending
	cutOff         bool            // this peer reaches under half of its subjects: see checkCutOff
	checkingCutOff bool            // checkCutOff or observeAll runs: observe leaves the check to them
	hidden         map[string]bool // subjects not listed meanwhile

	seeds     map[string]*retry
	dead      map[string]*retry
	removedAt map[string]time.Time // when each tombstone arrived, for purging
	inflight  map[string]bool
	lastRound time.Time
	started   time.Time // when this state was created
	leaving   bool
	selfStamp crdt.Stamp // stamp of this process's latest own entry
	// failedAt holds when the members that failed lately did, and
	// renewAt rate-limits renewals (see round).
	failedAt []time.Time
	renewAt  time.Time
	// settledAt rate-limits re-stamping to void cleared reports (see
	// settleReports).
	settledAt time.Time

	// Side effects for the caller to carry out after releasing its lock.
	forget []string
	pushes []*exchange
	events []Event
	stats  Stats
}

func newState(cfg PeerConfig, now time.Time) *state {
	s := &state{
		cfg:       cfg,
		self:      cfg.SelfEndpoint,
		writer:    fmt.Sprintf("%s#%08x", cfg.SelfEndpoint, cfg.Rand.Uint32()),
		meta:      &meshpb.PeerMeta{},
		rng:       cfg.Rand,
		log:       cfg.Logger,
		selfPos:   -1,
		expiryN:   -1,
		pending:   map[string]bool{},
		seeds:     map[string]*retry{},
		dead:      map[string]*retry{},
		removedAt: map[string]time.Time{},
		inflight:  map[string]bool{},
		started:   now,
		calls:     newCallTimer(cfg.RPCTimeout, now),
	}
	s.assertSelf(now)
	return s
}

// assertSelf (re)writes our own entry with a fresh stamp: at start, on a
// meta change, and to refute a tombstone or a floor above our entry.
func (s *state) assertSelf(now time.Time) entry { return s.assertSelfAt(s.tick(now), now) }

// assertSelfAt writes our own entry at Lamport time t.
func (s *state) assertSelfAt(t uint64, now time.Time) entry {
	e := entry{Key: s.self, Stamp: crdt.Stamp{Time: t, Writer: s.writer},
		Value: member{meta: s.meta, state: meshpb.State_STATE_ALIVE, pending: s.pendingSelf}}
	s.sign(&e)
	s.selfStamp = e.Stamp
	if c, ok, _ := s.members.Put(e); ok {
		s.changed([]crdt.Change[string, member]{c}, now)
	}
	return e
}

// setMeta validates and installs a new meta for this peer.
func (s *state) setMeta(meta *meshpb.PeerMeta, now time.Time) error {
	if meta == nil {
		meta = &meshpb.PeerMeta{}
	}
	if n := proto.Size(meta); n > s.cfg.MaxMetaBytes {
		return fmt.Errorf("meta is %d bytes encoded, above MaxMetaBytes (%d): shorten the name or tags", n, s.cfg.MaxMetaBytes)
	}
	s.meta = proto.Clone(meta).(*meshpb.PeerMeta)
	if !s.leaving {
		s.tell([]entry{s.assertSelf(now)}, nil, now)
	}
	return nil
}

// addSeed schedules addr to be contacted until it is a live member.
func (s *state) addSeed(addr string, now time.Time) error {
	if err := ValidateEndpoint(addr); err != nil {
		return fmt.Errorf("add seed: %w", err)
	}
	if addr == s.self || s.seeds[addr] != nil {
		return nil
	}
	s.seeds[addr] = &retry{next: now, backoff: s.cfg.PingPeriod}
	if !s.lastRound.IsZero() && !s.liveMember(addr) {
		// Rounds run: contact it now rather than at the next one, which
		// is up to a period away (a joiner calls AddSeed after Run).
		if ex := s.begin(addr, seedProbe, now); ex != nil {
			s.pushes = append(s.pushes, ex)
		}
	}
	return nil
}

// liveMember reports whether addr is a live member other than self.
func (s *state) liveMember(addr string) bool {
	m, ok := s.members.Get(addr)
	return ok && !m.pending && addr != s.self
}

// round starts a gossip round at now and returns the exchanges to run.
func (s *state) round(now time.Time) []*exchange {
	p := s.cfg.PingPeriod
	if !s.lastRound.IsZero() {
		if gap := now.Sub(s.lastRound); gap > 2*p {
			// Our own rounds ran late (CPU starvation, a paused process):
			// our probes could not run either, so give every subject a
			// fresh Expiry from now before alerting on it.
			s.det.resume(now)
			s.stats.StarvedRounds++
			s.log.Warn("round ran late; restarting runs of failed probes", "late", gap-p)
		}
	}
	s.lastRound = now
	s.calls.roll(now)
	s.heartbeat++
	s.stats.Rounds++
	s.purge(now)
	// Failures within the last Expiry; two or more look like a partition.
	s.failedAt = slices.DeleteFunc(s.failedAt, func(t time.Time) bool { return now.Sub(t) > s.expiry() })
	if len(s.failedAt) >= 2 && !s.leaving && !now.Before(s.renewAt) {
		// Several members were declared failed: if by a partition, the
		// other side is declaring us failed too, over the entry of ours
		// it last saw. A newer entry makes those tombstones lose on
		// arrival, so the heal does not make us flap on our own side.
		// At most once an Expiry: N peers re-stamping is N entries to
		// spread. One above our writer's last time is enough to win,
		// and unlike a tick it never carries a clock that a rogue pushed
		// far ahead to peers that would refuse it.
		s.failedAt, s.renewAt = s.failedAt[:0], now.Add(s.expiry())
		t := s.members.Version()[s.writer] + 1
		s.clock.Observe(t)
		s.assertSelfAt(t, now)
	}
	s.refreshOverlay(now)
	s.observeAll(now)
	s.decideAll(now)
	s.settleReports(now)
	for _, a := range s.out.waiting() { // failed pushes, once more
		s.sendQueued(a)
	}

	var out []*exchange
	start := func(addr string, kind exchangeKind) *exchange {
		ex := s.begin(addr, kind, now)
		if ex != nil {
			out = append(out, ex)
		}
		return ex
	}
	// Fanout partners among the subjects: the overlay is an expander, so
	// anti-entropy over it reaches everyone, over the connections the
	// probes hold. The exchange probes its partner too.
	partners := s.partners(s.cfg.Fanout)
	for _, a := range partners {
		if ex := start(a, gossipPartner); ex != nil {
			ex.probe = true
		}
	}
	for _, a := range s.probes(partners) {
		start(a, observeProbe)
	}
	for _, addr := range slices.Sorted(maps.Keys(s.seeds)) { // sorted: same seed, same run
		if !s.liveMember(addr) && !now.Before(s.seeds[addr].next) {
			start(addr, seedProbe)
		}
	}
	// One failed peer per round, the most overdue among those this peer
	// would observe were they listed: heals partitions at a bounded cost
	// however many peers have failed, and each failed peer is called by
	// its K would-be observers rather than by everyone, so that false
	// removals on a loaded machine do not multiply everyone's calls.
	var due string
	for addr, r := range s.dead {
		if !now.Before(r.next) && !s.inflight[addr] && (due == "" || r.next.Before(s.dead[due].next) ||
			r.next.Equal(s.dead[due].next) && addr < due) && s.wouldObserve(addr) {
			due = addr
		}
	}
	if due != "" {
		start(due, deadProbe)
	}
	return out
}

// begin starts an exchange of kind with addr at now, unless one is in
// flight or addr is this peer.
func (s *state) begin(addr string, kind exchangeKind, now time.Time) *exchange {
	if s.inflight[addr] || addr == s.self {
		return nil
	}
	s.inflight[addr] = true
	var req *meshpb.SyncRequest
	if kind == observeProbe {
		req = s.probeRequest()
	} else {
		req = s.digestRequest()
		if s.pending[addr] {
			// It is listed again once one of its observers reaches it
			// (reachedBy), and this exchange may be the only request
			// an observer sends it.
			req.From = s.self
		}
	}
	switch kind {
	case observeProbe:
		s.det.probing(addr, now)
	case gossipPartner:
		s.det.syncing(addr, now)
	}
	return &exchange{addr: addr, req: req, kind: kind, started: now}
}

// partners returns up to k subjects with no exchange in flight, those
// whose turn for anti-entropy is oldest: it takes turns over the subjects.
func (s *state) partners(k int) []string {
	return s.det.stalest(s.subjects, k, true, func(a string) bool { return s.inflight[a] })
}

// expiry is Expiry, or by default max(5, ⌈1.25·log2(N+1)⌉) rounds and at
// least twice the call timeout (RPCTimeout, or more while answers come
// slower: see callTimer), so that a slow network's probes have time to
// come back. It grows with log N because the alerts that corroborate one
// another travel about log N hops, and because a longer run of failed
// probes is a rarer accident of message loss where there are more
// members to have it.
func (s *state) expiry() time.Duration {
	if !s.cfg.autoExpiry {
		return s.cfg.Expiry
	}
	// Cached: round asks once per member.
	if n, t := len(s.view), s.calls.measuredTimeout(); n != s.expiryN || t != s.expiryT {
		s.expiryN, s.expiryT, s.expiryD = n, t, defaultExpiry(n, s.cfg.PingPeriod, t)
	}
	return s.expiryD
}

// tick returns a Lamport time for a new local write. The clock first
// observes the wall clock in milliseconds (a hybrid logical clock), so a
// restarted peer's writes outrank its previous lives' without having to
// hear of them first, whenever restarts are further apart than clock skew.
func (s *state) tick(now time.Time) uint64 {
	if ms := now.UnixMilli(); ms > 0 {
		s.clock.Observe(uint64(ms))
	}
	return s.clock.Tick()
}

// answer is the responder's side of both steps of an exchange.
func (s *state) answer(req *meshpb.SyncRequest, now time.Time) (*meshpb.SyncResponse, error) {
	if req.GetCluster() != s.cfg.ClusterName {
		return nil, fmt.Errorf("%w: this peer is in %q, the request came from %q", errClusterMismatch, s.cfg.ClusterName, req.GetCluster())
	}
	if req.GetPush() {
		if err := s.merge(req.GetDelta(), nil, req.GetReports(), req.GetFrom(), now); err != nil {
			return nil, err
		}
		return &meshpb.SyncResponse{}, nil
	}
	s.reachedBy(req.GetFrom(), now)
	if req.GetProbe() {
		// Only the heartbeat: anti-entropy is the gossip partners' job, and
		// a probe that turned into a full exchange whenever states differ
		// multiplied a join's work by the number of subjects.
		return &meshpb.SyncResponse{Heartbeat: s.heartbeat}, nil
	}
	if !req.GetFull() {
		if req.GetDigest() == s.digest && (req.GetAllHold() || s.holdersNow().fits(req.GetHolders())) {
			return s.answerSame(req), nil
		}
		return &meshpb.SyncResponse{Digest: s.digest, Version: encodeVersion(s.members.Version()),
			Clock: s.clock.Time(), Floor: s.members.Floor(), Heartbeat: s.heartbeat}, nil
	}
	theirs, err := s.takeFull(req, req.GetFrom(), now)
	if err != nil {
		return nil, err
	}
	d := s.members.Delta(theirs, s.cfg.MaxDeltaEntries)
	return &meshpb.SyncResponse{
		Digest:  s.digest,
		Version: encodeVersion(s.members.Version()),
		Delta:   encodeEntries(d.Entries),
		Cut:     d.Cut,
		Clock:   s.clock.Time(),
		Floor:   s.members.Floor(),
		Reports: encodeReports(s.reps.all()),
	}, nil
}

// onResponse applies an answer and returns the follow-up exchange, if any.
func (s *state) onResponse(ex *exchange, resp *meshpb.SyncResponse, now time.Time) (*exchange, error) {
	if ex.kind == push {
		s.pushed(ex)
		return nil, nil
	}
	if ex.kind == deadProbe || ex.kind == seedProbe {
		s.reached(ex, now)
	}
	if ex.probes() {
		s.det.answered(ex.addr, resp.GetHeartbeat(), now)
		s.observe(ex.addr, now)
	}
	if ex.kind == observeProbe {
		s.done(ex)
		return nil, nil
	}
	if ex.req.GetFull() {
		defer s.done(ex)
		if _, err := s.takeFull(resp, ex.addr, now); err != nil {
			return nil, err
		}
		s.checkFloor(resp.GetFloor(), now)
		return nil, nil
	}
	s.observeClock(resp.GetClock())
	if len(resp.GetVersion()) == 0 { // equal states: see answerSame
		defer s.done(ex)
		s.learnSame(ex, resp)
		return nil, nil
	}
	// The states differ: send what the partner lacks, with our version
	// vector so that it can answer with what we lack.
	theirs, err := decodeVersion(resp.GetVersion())
	if err != nil {
		s.done(ex)
		return nil, err
	}
	s.checkFloor(resp.GetFloor(), now)
	d := s.members.Delta(theirs, s.cfg.MaxDeltaEntries)
	next := &exchange{addr: ex.addr, kind: ex.kind, req: &meshpb.SyncRequest{
		Cluster: s.cfg.ClusterName,
		From:    s.self,
		Digest:  s.digest,
		Full:    true,
		Version: encodeVersion(s.members.Version()),
		Delta:   encodeEntries(d.Entries),
		Cut:     d.Cut,
		Clock:   s.clock.Time(),
		Reports: encodeReports(s.reps.all()),
	}}
	return next, nil
}

// reached records that a probed address answered.
func (s *state) reached(ex *exchange, now time.Time) {
	switch ex.kind {
	case seedProbe:
		if r := s.seeds[ex.addr]; r != nil {
			r.backoff = s.cfg.PingPeriod
			r.next = now.Add(r.backoff)
		}
	case deadProbe:
		// It runs: the exchange shows it its tombstone and it refutes.
		if r := s.dead[ex.addr]; r != nil {
			r.next = now.Add(r.backoff)
		}
	}
}

// onError handles a failed exchange.
func (s *state) onError(ex *exchange, err error, now time.Time) {
	s.stats.SyncErrors++
	if ex.kind == push {
		n := ex.news
		s.out.failed(ex.addr, n.entries, n.reports, n.retry)
		if !s.liveMember(ex.addr) {
			s.out.drop(ex.addr)
			s.forget = append(s.forget, ex.addr)
		}
		return // queued again: see round
	}
	s.done(ex)
	if ex.probe {
		s.probeFailed(ex, err, now)
	}
	switch ex.kind {
	case observeProbe:
		s.probeFailed(ex, err, now)
	case seedProbe:
		s.backoff(s.seeds[ex.addr], now)
		if errors.Is(err, errClusterMismatch) {
			s.log.Warn("seed belongs to another cluster; not merging", "seed", ex.addr, "err", err)
		}
	case deadProbe:
		s.backoff(s.dead[ex.addr], now)
	}
	if ex.kind == deadProbe {
		// A failed peer that does not answer holds no connection between
		// probes (P to MaxRetryInterval apart; the next one dials again):
		// otherwise every failed peer ever probed would keep one open.
		// Seeds are few and are what a joining peer retries: they keep
		// theirs, so a seed that was merely slow is not re-dialled.
		s.forget = append(s.forget, ex.addr)
	}
}

// lateAnswer takes from an answer that came after its call failed only
// what a probe's answer says: the partner is reachable and runs.
func (s *state) lateAnswer(ex *exchange, resp *meshpb.SyncResponse, now time.Time) {
	if ex.probes() {
		s.det.answered(ex.addr, resp.GetHeartbeat(), now)
		s.observe(ex.addr, now)
	}
}

// probeFailed records a failed probe of a subject.
func (s *state) probeFailed(ex *exchange, err error, now time.Time) {
	refused := refusal(err)
	s.log.Debug("probe of a subject failed", "subject", ex.addr, "refused", refused, "err", err)
	s.det.failed(ex.addr, refused, ex.started)
	s.observe(ex.addr, now)
}

func (s *state) backoff(r *retry, now time.Time) {
	if r == nil {
		return
	}
	r.backoff = min(2*r.backoff, s.cfg.MaxRetryInterval)
	// Jitter spreads the retries of many peers that lost the same address.
	r.next = now.Add(r.backoff/2 + time.Duration(s.rng.Int64N(int64(r.backoff/2)+1)))
}

func (s *state) done(ex *exchange) { delete(s.inflight, ex.addr) }

// fail declares addr failed and tells the neighbours.
func (s *state) fail(addr string, now time.Time) {
	n := len(s.events)
	if e, ok := s.declare(addr, meshpb.State_STATE_FAILED, now); ok {
		for i := n; i < len(s.events); i++ {
			s.events[i].Decided = s.events[i].Type == EventFailed && s.events[i].Addr == addr
		}
		s.tell([]entry{e}, nil, now)
	}
}

// declare writes a tombstone for addr in the given state and reports
// whether it changed anything.
func (s *state) declare(addr string, st meshpb.State, now time.Time) (entry, bool) {
	last, known := s.members.Lookup(addr)
	e := entry{Key: addr, Deleted: true, Value: member{meta: last.Value.meta, state: st}}
	switch {
	case addr == s.self:
		e.Stamp = crdt.Stamp{Time: s.tick(now), Writer: s.writer}
		s.sign(&e)
	case st == meshpb.State_STATE_FAILED && known:
		e.Stamp = failedStamp(last.Stamp)
	default:
		e.Stamp = crdt.Stamp{Time: s.tick(now), Writer: s.writer}
	}
	c, ok, _ := s.members.Put(e)
	if ok {
		s.changed([]crdt.Change[string, member]{c}, now)
	}
	return e, ok
}

// failedStamp is the stamp of a failure declared over an entry stamped
// alive: the same time, and the writer with failedMark appended, which
// sorts just above it. A failure so kills exactly the entry its declarer
// saw: any later write of the member (a new meta, a refutation, a
// restart) that the declarer had not seen yet wins over it, so a slow
// declarer cannot remove a member's newer incarnation. Every peer that
// declares the same entry failed writes the same tombstone.
func failedStamp(alive crdt.Stamp) crdt.Stamp {
	return crdt.Stamp{Time: alive.Time, Writer: alive.Writer + failedMark}
}

// failedMark ends the writer id of a failure tombstone.
const failedMark = "!"

// others returns every live member but self.
func (s *state) others() []string {
	out := make([]string, 0, len(s.view))
	for _, a := range s.view {
		if a != s.self {
			out = append(out, a)
		}
	}
	return out
}

// pushed closes the connection a push opened to an address that stopped
// being a live member while the push was in flight: the removal's own
// Forget came before it.
func (s *state) pushed(ex *exchange) {
	s.out.done(ex.addr)
	if !s.liveMember(ex.addr) {
		s.out.drop(ex.addr)
		s.forget = append(s.forget, ex.addr)
		return
	}
	s.sendQueued(ex.addr)
}

// leave tombstones this peer as left and returns the push that tells every
// live member at once.
func (s *state) leave(now time.Time) (*meshpb.SyncRequest, []string) {
	s.leaving = true
	s.declare(s.self, meshpb.State_STATE_LEFT, now)
	e, _ := s.members.Lookup(s.self)
	req := &meshpb.SyncRequest{Cluster: s.cfg.ClusterName, From: s.self, Push: true,
		Delta: encodeEntries([]entry{e}), Clock: s.clock.Time()}
	return req, s.others()
}

// purge drops tombstones older than TombstoneTTL.
func (s *state) purge(now time.Time) {
	if len(s.removedAt) == 0 {
		return
	}
	var gone []entry
	s.members.Purge(func(e entry) bool {
		at, ok := s.removedAt[e.Key]
		if !ok {
			s.removedAt[e.Key] = now
			return false
		}
		if now.Sub(at) < s.cfg.TombstoneTTL {
			return false
		}
		gone = append(gone, e)
		return true
	})
	if len(gone) > 0 {
	}
	for _, e := range gone {
		s.digest ^= entryHash(e)
		delete(s.removedAt, e.Key) // still probed if failed: healing has no deadline
	}
	if len(gone) > 0 {
		s.members.PruneVersion() // writers of purged entries are gone for good
	}
}

// ownerOf returns the address part of a writer id "addr#incarnation".
func ownerOf(writer string) string {
	if i := strings.LastIndexByte(writer, '#'); i >= 0 {
		return writer[:i]
	}
	return writer
}

// rememberDead schedules probes of a failed peer, evicting a random one
// when maxDeadProbes are remembered.
func (s *state) rememberDead(addr string, now time.Time) {
	if len(s.dead) >= maxDeadProbes {
		known := slices.Sorted(maps.Keys(s.dead))
		delete(s.dead, known[s.rng.IntN(len(known))])
	}
	s.dead[addr] = &retry{next: now.Add(s.cfg.PingPeriod), backoff: s.cfg.PingPeriod}
}

// emit records a membership event, unless of a member this peer hides
// while it is cut off (see checkCutOff).
func (s *state) emit(kind EventType, addr string, meta *meshpb.PeerMeta, now time.Time) {
	if !s.hidden[addr] {
		s.events = append(s.events, Event{Type: kind, Addr: addr, Meta: meta, Time: now})
	}
}
