package peer

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gossipmesh/mesh/crdt"
	"github.com/gossipmesh/mesh/meshpb"
)

// fullMessage is the second step of an exchange, either way: the
// request that carries what the answerer lacks, and the answer that
// carries the rest.
type fullMessage interface {
	GetVersion() []*meshpb.WriterTime
	GetDelta() []*meshpb.Entry
	GetCut() uint64
	GetReports() []*meshpb.Report
	GetClock() uint64
	GetDigest() uint64
}

// takeFull applies a full message from addr, the one path for both sides
// of an exchange, and returns the sender's version vector.
func (s *state) takeFull(m fullMessage, from string, now time.Time) (crdt.VersionVector, error) {
	theirs, err := decodeVersion(m.GetVersion())
	if err != nil {
		return nil, err
	}
	if err := s.merge(m.GetDelta(), covers(theirs, m.GetCut()), m.GetReports(), from, now); err != nil {
		return nil, err
	}
	s.observeClock(m.GetClock())
	if m.GetDigest() == s.digest {
		s.heldBy(from) // it held this state when it sent the message
	}
	return theirs, nil
}

// observeClock moves the Lamport clock to a partner's, within maxClockJump.
func (s *state) observeClock(t uint64) {
	if t <= s.clock.Time()+maxClockJump {
		s.clock.Observe(t)
	}
}

// checkFloor re-stamps our entry when a partner purged tombstones above
// it: the partner would otherwise reject our entry as possibly deleted.
func (s *state) checkFloor(floor uint64, now time.Time) {
	if e, ok := s.members.Lookup(s.self); ok && !s.leaving && e.Stamp.Time <= floor {
		s.observeClock(floor)
		s.assertSelf(now)
	}
}

// merge validates and applies received entries and reports, then tells
// the neighbours other than from what was news here (see relayLimit).
// Nothing changes when anything is invalid.
func (s *state) merge(in []*meshpb.Entry, cov crdt.VersionVector, prs []*meshpb.Report, from string, now time.Time) error {
	rs := make([]report, 0, len(prs))
	for _, pr := range prs {
		r, err := decodeReport(pr)
		if err != nil {
			return err
		}
		rs = append(rs, r)
	}
	news, err := s.applyEntries(in, cov, now)
	if err != nil {
		return err
	}
	var fresh []report
	for _, r := range rs {
		if s.putReport(r) {
			fresh = append(fresh, r)
		}
	}
	if len(fresh) > 0 {
		s.decideAll(now)
		s.refreshOverlay(now)
		s.corroborate(fresh, now)
	}
	if len(news) > relayLimit {
		news = nil // a joiner's first delta: everyone else has it
	}
	s.relay(news, fresh, from, now)
	return nil
}

// relayLimit is the most entries a peer relays from one message. Fresh
// writes come a few at a time; a delta of many is a joiner catching up
// or a partition healing, which anti-entropy carries.
const relayLimit = 32

// applyEntries validates and merges received entries and returns those
// that changed the map. Nothing changes when any entry is invalid.
func (s *state) applyEntries(in []*meshpb.Entry, cov crdt.VersionVector, now time.Time) ([]entry, error) {
	if len(in) > s.cfg.MaxDeltaEntries && !sameTime(in) {
		return nil, fmt.Errorf("%w: delta of %d entries, above MaxDeltaEntries (%d)", errLimit, len(in), s.cfg.MaxDeltaEntries)
	}
	sc := applyScratches.Get().(*applyScratch)
	defer sc.put()
	entries := sc.entries[:0]
	for _, pe := range in {
		e, err := s.decodeEntry(pe)
		if err != nil {
			return nil, err
		}
		// Signatures are checked only for entries that would win: the
		// others change nothing, and checking costs a public-key operation.
		if cur, ok := s.members.Lookup(e.Key); !ok || cur.Stamp.Less(e.Stamp) {
			if err := s.verify(e); err != nil {
				return nil, err
			}
		}
		entries = append(entries, e)
		sc.entries = entries // so that put clears them, whatever returns
	}
	if err := s.checkRoom(entries); err != nil {
		return nil, err
	}
	changes, err := s.members.AppendDelta(sc.changes[:0], crdt.Delta[string, member]{Entries: entries, Covers: cov})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	sc.changes = changes
	for _, e := range entries {
		s.clock.Observe(e.Stamp.Time)
	}
	news := make([]entry, 0, len(changes))
	for _, c := range changes {
		news = append(news, c.New)
	}
	s.changed(changes, now)
	if e, ok := s.members.Lookup(s.self); ok && e.Stamp != s.selfStamp && !s.leaving {
		// Our entry was overridden: declared failed by someone, or an entry
		// of a previous life of this address (alive with an old meta, or
		// left). This process is the authority on its own entry; but once
		// declared failed, its new entry is pending until one of its
		// observers reaches it, so a member that can call out but cannot
		// be reached stays removed however often it refutes.
		s.stats.Refutations++
		if e.Deleted && e.Value.state == meshpb.State_STATE_FAILED {
			s.pendingSelf = true
		}
		s.log.Info("refuting an entry for this peer", "writer", e.Stamp.Writer, "stamp", e.Stamp.String(), "state", e.Value.state, "pending", s.pendingSelf)
		news = append(news, s.assertSelf(now))
	}
	return news, nil
}

// applyScratch holds the decoded entries and the changes of one
// applyEntries call, reused by the next: a joiner's first delta is
// thousands of entries and changes, and a simulator starts thousands of
// joiners, for which fresh buffers were a tenth of the start's time.
type applyScratch struct {
	entries []entry
	changes []crdt.Change[string, member]
}

var applyScratches = sync.Pool{New: func() any { return new(applyScratch) }}

// put returns sc to the pool without the references it held.
func (sc *applyScratch) put() {
	clear(sc.entries)
	clear(sc.changes)
	sc.entries, sc.changes = sc.entries[:0], sc.changes[:0]
	applyScratches.Put(sc)
}

// sameTime reports whether all entries share one Lamport time: the only
// way an honest delta exceeds MaxDeltaEntries.
func sameTime(in []*meshpb.Entry) bool {
	for _, pe := range in {
		if pe.GetTime() != in[0].GetTime() {
			return false
		}
	}
	return true
}

// checkRoom refuses entries that would create members beyond MaxMembers.
// Every tombstone has a removedAt time, so the map holds
// members.Len() + len(removedAt) entries.
func (s *state) checkRoom(entries []entry) error {
	held := s.members.Len() + len(s.removedAt)
	isNew := func(e entry) bool {
		_, ok := s.members.Lookup(e.Key)
		return !ok && e.Stamp.Time > s.members.Floor()
	}
	// Counted with repeats first: the exact count needs a set of keys,
	// which only a delta near the limit is worth (a joiner receives
	// thousands of new members in one).
	if held+countFunc(entries, isNew) <= s.cfg.MaxMembers {
		return nil
	}
	fresh := map[string]bool{}
	for _, e := range entries {
		if isNew(e) {
			fresh[e.Key] = true
		}
	}
	if held+len(fresh) > s.cfg.MaxMembers {
		return fmt.Errorf("%w: %d new members would exceed MaxMembers (%d; this peer holds %d, tombstones included)", errLimit, len(fresh), s.cfg.MaxMembers, held)
	}
	return nil
}

func countFunc[T any](s []T, f func(T) bool) int {
	n := 0
	for _, v := range s {
		if f(v) {
			n++
		}
	}
	return n
}

// changed updates everything derived from the membership map.
func (s *state) changed(changes []crdt.Change[string, member], now time.Time) {
	if len(changes) == 0 {
		return
	}
	viewChanged := false
	// At most one event and one newcomer a change: a joiner's first delta
	// is thousands.
	s.events = slices.Grow(s.events, len(changes))
	if s.came == nil && len(changes) > 1 {
		s.came = make([]string, 0, len(changes))
	}
	for _, c := range changes {
		if c.HadOld {
			s.digest ^= entryHash(c.Old)
		}
		s.digest ^= entryHash(c.New)
		addr := c.New.Key
		wasLive, isLive := c.HadOld && listed(c.Old), listed(c.New)
		if p := !c.New.Deleted && c.New.Value.pending; p != s.pending[addr] {
			if p {
				s.pending[addr] = true
			} else {
				delete(s.pending, addr)
			}
			s.subjects = nil // pending members are watched too: see refreshOverlay
		}
		if c.New.Deleted {
			s.removedAt[addr] = now
		} else {
			delete(s.removedAt, addr)
		}
		switch {
		case isLive && !wasLive:
			viewChanged = true
			delete(s.dead, addr)
			if addr != s.self {
				s.came = append(s.came, addr)
				s.emit(EventJoin, addr, c.New.Value.meta, now)
			}
		case isLive:
			if addr != s.self {
				s.emit(EventUpdate, addr, c.New.Value.meta, now)
			}
		case wasLive:
			viewChanged = true
			s.gone = append(s.gone, addr)
			if addr == s.self {
				break
			}
			s.forget = append(s.forget, addr)
			kind := EventFailed
			switch {
			case c.New.Value.state == meshpb.State_STATE_LEFT:
				kind = EventLeave
				delete(s.dead, addr)
			case c.New.Deleted:
				s.rememberDead(addr, now)
				s.failedAt = append(s.failedAt, now)
			}
			s.emit(kind, addr, c.Old.Value.meta, now)
		case !c.New.Deleted || c.New.Value.state == meshpb.State_STATE_LEFT:
			// Pending (its observers probe it) or left: not probed as failed.
			delete(s.dead, addr)
		}
		s.retainReports(addr)
	}
	if viewChanged {
		s.rebuildView()
	}
}
