package peer

import (
	"maps"
	"slices"
	"time"

	"github.com/gossipmesh/mesh/crdt"
	"github.com/gossipmesh/mesh/meshpb"
)

// This file joins the liveness types to the state: the overlay says whom
// this peer watches and tells news to, the detector whether it reaches
// them, and the reports what every observer said. A member is removed
// when enough of its observers alert on its current entry (decideAll), so
// the verdict is a function of merged state, the same at every peer, and
// never one peer's alone. docs/PROTOCOL.md has the rules and why.

// overlay returns the overlay of the current view.
func (s *state) overlay() *overlay {
	if s.ov == nil {
		s.ov = newOverlay(s.view, s.cfg.Observers)
	}
	return s.ov
}

// refreshOverlay recomputes this peer's subjects after the view or the
// pending members changed, and watches the new ones. Connections to
// former ones close once idle (the default transport closes an unused
// stream, then its connection, each after MaxRetryInterval/2), removed
// members' at once (changed): closing
// them here would cancel calls in flight whenever a join reshapes the
// overlay.
func (s *state) refreshOverlay(now time.Time) {
	if s.subjects != nil {
		return // nil when stale: see rebuildView and changed
	}
	ov := s.overlay()
	subjects := ov.subjectsOf(s.self)
	for _, a := range slices.Sorted(maps.Keys(s.pending)) {
		// Not listed, so not on the rings: watched by those that would
		// follow it there, which is how it gets listed again.
		if a != s.self && s.wouldObserve(a) {
			subjects = append(subjects, a)
		}
	}
	if subjects == nil {
		subjects = []string{} // computed, if empty
	}
	slices.Sort(subjects)
	s.subjects = subjects
	s.relays = ov.relaysOf(s.self, relayRings)
	// A new subject's turns come at random points of the cycles.
	cycle := int64(len(subjects)) * int64(s.cfg.PingPeriod)
	s.det.watch(subjects, now, func() time.Duration { return time.Duration(s.rng.Int64N(cycle + 1)) })
}

// wouldObserve reports whether this peer is one of addr's observers, or
// would be if addr, not listed, were.
func (s *state) wouldObserve(addr string) bool {
	return slices.Contains(s.overlay().observersOf(addr), s.self)
}

// relayRings is along how many of the overlay's rings news is relayed
// (see overlay.relaysOf): each member receives it about this many times,
// and a lost push or a dead relay on one ring is made up by the others.
const relayRings = 3

// probes returns the subjects to probe this round, but those in partners
// (whose exchange probes them): the one contacted longest ago (SWIM probes
// one member a period), so that with the anti-entropy partner every
// subject is contacted about every K/2 rounds, a member about twice a
// round by its K observers together, at the same cost at any K; every
// subject whose last probe failed or that another observer alerts on,
// until it answers or this peer alerts too; and the others while two or
// more fail, which may mean this peer is cut off (see checkCutOff);
// maxProbes in all, the longest unprobed first. A subject whose probe is
// still in flight (a silent one's lasts its deadline, about a period) is
// left out, or its slot would go unused while others wait their turn.
func (s *state) probes(partners []string) []string {
	if len(s.subjects) == 0 {
		return nil
	}
	skip := func(a string) bool { return s.inflight[a] || slices.Contains(partners, a) }
	byTurn := s.det.stalest(s.subjects, len(s.subjects), false, skip)
	out := slices.Clone(byTurn[:min(stalestProbes, len(byTurn))])
	failing := 0
	for _, a := range s.subjects {
		if s.det.failing(a) {
			failing++
		}
	}
	for _, a := range byTurn[len(out):] {
		if len(out) < maxProbes && (failing >= 2 || s.unsettled(a)) {
			out = append(out, a)
		}
	}
	return out
}

// stalestProbes is how many subjects a round probes in turn, beside its
// anti-entropy partners. One: a third contact a round shortened the wait
// for a silent member's observers by less than corroboration does (see
// observe), for a third more steady traffic.
const stalestProbes = 1

// maxProbes bounds the probes of one round: a starved peer whose probes
// all time out must not multiply its calls.
const maxProbes = 4

// unsettled reports whether subject needs a probe now: its last probe
// failed, or another observer alerts on it while this peer does not.
func (s *state) unsettled(subject string) bool {
	if s.det.failing(subject) {
		return true
	}
	for o, r := range s.reps.by[subject] {
		if r.alert && o == s.self {
			return false
		}
	}
	return len(s.reps.alerts(subject)) > 0
}

// corroborate looks again at each of rs's subjects that this peer
// observes and that another observer just alerted on (see observe), and
// probes it at once, so that a crashed member's observers confirm within
// a round trip of the first alert.
func (s *state) corroborate(rs []report, now time.Time) {
	for _, r := range rs {
		if !r.alert || r.observer == s.self {
			continue
		}
		if _, mine := slices.BinarySearch(s.subjects, r.subject); !mine {
			continue
		}
		s.observe(r.subject, now) // this alert may corroborate failures seen already
		if s.inflight[r.subject] || !s.unsettled(r.subject) {
			continue
		}
		s.inflight[r.subject] = true
		s.det.probing(r.subject, now)
		s.pushes = append(s.pushes, &exchange{addr: r.subject, kind: observeProbe, started: now, req: s.probeRequest()})
	}
}

// cutOffSlowdown multiplies Expiry for a cut-off peer's new alerts on
// timeouts, as Lifeguard's local health multiplies its timeouts (up to 8).
const cutOffSlowdown = 4

// probeRequest is a probe of a subject: who asks, so that a pending
// subject knows an observer reached it (reachedBy), and nothing else.
func (s *state) probeRequest() *meshpb.SyncRequest {
	return &meshpb.SyncRequest{Cluster: s.cfg.ClusterName, From: s.self, Probe: true}
}

// observeAll brings this peer's reports on every subject up to date,
// and then checks once whether it is cut off, not after each subject.
func (s *state) observeAll(now time.Time) {
	s.checkingCutOff = true
	for _, a := range s.subjects {
		s.observe(a, now)
	}
	s.checkingCutOff = false
	s.checkCutOff(now)
}

// checkCutOff sets cutOff while this peer reaches fewer than half of its
// two or more subjects: it is then as likely cut off, starved or in a
// minority as they all failed (Lifeguard's point: a peer whose probes
// fail may be the problem itself). Meanwhile it raises new alerts on
// timeouts only after cutOffSlowdown Expiries (refusals still at once),
// so that a loaded process, where many probes time out, does not have
// its peers alert each other out, while the members of a cluster most of
// which really died are removed, later. It keeps the alerts it raised
// before, until their subjects answer: a partition's minority raises
// them on the other side before it counts itself cut off, and
// withdrawing them then made its removal of the other side a race that
// it lost one time in three.
// While it reaches none of them, it also lists none of them (GetMembers,
// Members, events), without writing a tombstone, since one peer's
// verdict must not remove anybody from the others' views; as each
// answers again, it lists it again. (Hiding them while it reached fewer
// than half made a peer under the fault suite's loss hide four live
// members at once.)
func (s *state) checkCutOff(now time.Time) {
	if s.checkingCutOff {
		return // observe, below, calls back
	}
	s.checkingCutOff = true
	defer func() { s.checkingCutOff = false }()
	var down []string
	for _, a := range s.subjects {
		if s.det.down(a, now, s.expiry(), s.cfg.PingPeriod, false) {
			down = append(down, a)
		}
	}
	cut := len(s.subjects) >= 2 && 2*len(down) > len(s.subjects)
	hide := map[string]bool{}
	if cut && len(down) == len(s.subjects) {
		for _, a := range down {
			hide[a] = true
		}
	}
	if cut != s.cutOff {
		if cut {
			for _, a := range down {
				s.observe(a, now) // first the alerts due before the cut, kept after it
			}
		}
		s.cutOff = cut
		s.log.Warn("reaching fewer than half of the members this peer observes; alerting only after longer silence", "cut off", cut, "subjects", len(s.subjects), "down", len(down))
		for _, a := range s.subjects {
			s.observe(a, now) // retract or renew this peer's alerts
		}
	}
	if maps.Equal(hide, s.hidden) {
		return
	}
	for _, a := range slices.Sorted(maps.Keys(s.hidden)) {
		if m, live := s.members.Get(a); !hide[a] && live && !m.pending {
			s.events = append(s.events, Event{Type: EventJoin, Addr: a, Meta: m.meta, Time: now})
		}
	}
	for _, a := range slices.Sorted(maps.Keys(hide)) {
		if m, live := s.members.Get(a); !s.hidden[a] && live && !m.pending {
			s.events = append(s.events, Event{Type: EventFailed, Addr: a, Meta: m.meta, Time: now})
		}
	}
	s.hidden = hide
}

// observe makes this peer's report on subject say what the detector
// says: an alert while it cannot reach the subject, cleared once it can.
// Only a change is written and told. Whether this peer is cut off is
// checked after every observation, changed or not: a cut-off peer raises
// no alert on a subject that has just gone down, yet may now reach none.
func (s *state) observe(subject string, now time.Time) {
	defer s.checkCutOff(now)
	cur, ok := s.members.Lookup(subject)
	if !ok || cur.Deleted {
		return
	}
	// Once the subject is a suspect, this peer's own run of failed probes
	// confirms the alerts of others, whose runs spanned an Expiry: a
	// silent member's observers, each starting its run when its turn to
	// probe came, alert together once two of them have. A peer cut off
	// raises new alerts only after cutOffSlowdown Expiries, and keeps
	// those it raised before until the subject answers (see checkCutOff).
	exp, corroborated := s.expiry(), false
	mine, said := s.reps.by[subject][s.self]
	alerting := said && mine.alert
	switch {
	case !s.cutOff:
		corroborated = s.suspect(subject, s.overlay())
	case alerting:
		corroborated = true
	default:
		exp *= cutOffSlowdown
	}
	down := s.det.down(subject, now, exp, s.cfg.PingPeriod, corroborated)
	if down == alerting || !down && !said {
		return
	}
	r := report{observer: s.self, subject: subject, entry: cur.Stamp, alert: down, time: s.tick(now)}
	if down {
		s.stats.Suspicions++
		s.log.Info("cannot reach a subject; alerting", "subject", subject)
	} else {
		s.stats.SuspicionsRefuted++
	}
	s.putReport(r)
	s.tell(nil, []report{r}, now)
	s.decideAll(now)
}

// settleReports re-stamps this peer's own entry when every report about
// it is a clear: reports are about one entry, so the new one voids them
// all, everywhere, instead of every full exchange carrying them until
// this peer writes again. At most once an Expiry.
func (s *state) settleReports(now time.Time) {
	of := s.reps.by[s.self]
	if len(of) == 0 || s.leaving || now.Before(s.settledAt) || len(s.reps.alerts(s.self)) > 0 {
		return
	}
	s.settledAt = now.Add(s.expiry())
	s.tell([]entry{s.assertSelf(now)}, nil, now)
}

// putReport stores r if it is about the subject's current live entry and
// news, keeping the digest, and reports whether it did.
func (s *state) putReport(r report) bool {
	var cur crdt.Stamp
	if e, ok := s.members.Lookup(r.subject); ok && !e.Deleted {
		cur = e.Stamp
	}
	before := s.reps.digest
	if !s.reps.put(r, cur) {
		return false
	}
	s.digest ^= before ^ s.reps.digest
	return true
}

// retainReports drops the reports on addr that its entry, just changed,
// made void, and restarts this peer's run of failures on it: a host back
// from a partition otherwise alerted on its own side's renewed entries
// before it had probed them once.
func (s *state) retainReports(addr string) {
	s.det.restart(addr)
	var cur crdt.Stamp
	if e, ok := s.members.Lookup(addr); ok && !e.Deleted {
		cur = e.Stamp
	}
	before := s.reps.digest
	if s.reps.retain(addr, cur) > 0 {
		s.digest ^= before ^ s.reps.digest
	}
}

// decideAll removes every member that down says is down (see down).
// The tombstone is failedStamp of the member's entry, so every peer that
// decides writes the same one. A peer in its first Expiry decides
// nothing: its view is still forming, and a joiner that knew only itself
// and its seed counted one observer for the seed and removed it on its
// own alert (128 peers joining in one process: thousands of removals).
func (s *state) decideAll(now time.Time) {
	if s.leaving || len(s.reps.by) == 0 || now.Sub(s.started) < s.expiry() {
		return
	}
	for _, a := range s.down() {
		s.log.Info("member failed", "addr", a, "alerts", len(s.reps.alerts(a)), "observers", len(s.overlay().observersOf(a)))
		s.fail(a, now)
	}
}

// down returns the members, self excepted, that enough of their
// available observers alert on (alertThreshold). An observer is available
// when it alerts on the member, or when it is not a suspect: fewer than
// two of its own observers alert on it (see suspect). So across a partition or after a correlated crash,
// the observers on the other side or dead, themselves alerted on by the
// observers that remain, stop counting, and the remaining ones decide;
// under message loss the observers stay available, and half of all of
// them must alert. One peer alone (a bad link, a peer that reaches
// nobody) never removes anybody: the threshold is at least two where a
// member has two or more observers.
func (s *state) down() []string {
	ov := s.overlay()
	var out []string
	for _, a := range slices.Sorted(maps.Keys(s.reps.by)) {
		if a == s.self {
			continue
		}
		alerts := s.alertsOn(a, ov)
		if len(alerts) == 0 {
			continue
		}
		observers := ov.observersOf(a)
		available := 0
		for _, o := range observers {
			if slices.Contains(alerts, o) || !s.suspect(o, ov) {
				available++
			}
		}
		if len(alerts) >= alertThreshold(available, len(observers)) {
			out = append(out, a)
		}
	}
	return out
}

// alertsOn returns the observers of a in this view that alert on it.
// Only those count: a host rejoining after a partition still alerts on
// entries it could not reach, before it is listed again (the fault suite
// saw a member removed on its own side so).
func (s *state) alertsOn(a string, ov *overlay) []string {
	observers := ov.observersOf(a)
	return slices.DeleteFunc(s.reps.alerts(a), func(o string) bool { return !slices.Contains(observers, o) })
}

// suspect reports whether suspectAlerts or more of addr's observers alert
// on it: its own voice on others then no longer counts as that of a
// member known to run. This peer knows it runs.
func (s *state) suspect(addr string, ov *overlay) bool {
	return addr != s.self && len(s.alertsOn(addr, ov)) >= suspectAlerts
}

// suspectAlerts is how many alerts make an observer a suspect. Two, not
// one: at 20 % message loss single alerts come and go all over the
// cluster, and with one alert enough, so many observers were suspects at
// once that members were removed on two alerts (simulator, N = 64: 175
// false removals in 30 minutes; with two, none). Across a partition a
// member is alerted on by every observer it has on the other side.
const suspectAlerts = 2

// reachedBy notes a request from addr: when this peer is pending and addr
// is one of its observers, the observers can reach it, and its next entry
// is listed again.
func (s *state) reachedBy(addr string, now time.Time) {
	if !s.pendingSelf || addr == "" || s.leaving || !slices.Contains(s.overlay().observersOf(s.self), addr) {
		return
	}
	s.pendingSelf = false
	s.log.Info("reached by an observer; listed again", "observer", addr)
	s.tell([]entry{s.assertSelf(now)}, nil, now)
}

// tell pushes this peer's own writes (entries and reports) to all its
// subjects at once, beside anti-entropy: a wide first hop, so that news
// over a slow network is one hop from most of the cluster. Receivers
// relay what was news to them (relay).
func (s *state) tell(es []entry, rs []report, now time.Time) {
	s.refreshOverlay(now)
	s.push(s.subjects, es, rs, "")
}

// relay pushes news that came from another peer to this peer's relays but
// from: its predecessors on a few of the overlay's rings, each a cycle
// through every member, so news floods the cluster in about log N hops
// over connections the probes already hold, each member receiving it
// about relayRings times rather than K.
func (s *state) relay(es []entry, rs []report, from string, now time.Time) {
	s.refreshOverlay(now)
	s.push(s.relays, es, rs, from)
}

// push queues es and rs for each of to but except. Pushes to a neighbour
// are batched (see outbox).
func (s *state) push(to []string, es []entry, rs []report, except string) {
	if len(es) == 0 && len(rs) == 0 {
		return
	}
	for _, a := range to {
		if a != except {
			s.out.add(a, es, rs)
			s.sendQueued(a)
		}
	}
}

// sendQueued starts the push of what is queued for addr, unless one is in
// flight already.
func (s *state) sendQueued(addr string) {
	es, rs, retry, ok := s.out.take(addr, s.cfg.MaxDeltaEntries)
	if !ok {
		return
	}
	req := &meshpb.SyncRequest{Cluster: s.cfg.ClusterName, From: s.self, Push: true,
		Delta: encodeEntries(es), Reports: encodeReports(rs), Clock: s.clock.Time()}
	s.pushes = append(s.pushes, &exchange{addr: addr, req: req, kind: push, news: &pushNews{es, rs, retry}})
}

// alerting counts the members this peer alerts on now.
func (s *state) alerting() int {
	n := 0
	for _, of := range s.reps.by {
		if r, ok := of[s.self]; ok && r.alert {
			n++
		}
	}
	return n
}
