package peer

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/gossipmesh/mesh/meshpb"
)

// This file is liveness evidence: for each member, the latest time it is
// known to have run and the digest it held then, exchanged as one-byte
// ages by anti-entropy (digestRequest, answerAges). It serves Converged
// and tells the removal rule which observers the cluster still hears from
// (fresh); it removes nobody by itself.

// Ages travel in units of PingPeriod/ageScale, one byte each; noAge means
// no evidence (or evidence too old to be worth sending).
const (
	ageScale = 8
	noAge    = 255
)

// fresherMargin is by how many age units (eighths of a period) our
// evidence must be fresher than a partner's for an answer to carry it: a
// whole period. Evidence a fraction of a period fresher rarely changes a
// decision (Expiry is 5 periods or more), and most of the ages answers
// carried were such. Measured in the simulator at N = 64: 151 bytes a
// peer a round with a margin of one unit, 127 with eight, and no false
// removal at 10 % loss either way.
const fresherMargin = ageScale

// digestRequest is the first message of an exchange: the state digest and
// one age byte per member of the view, nothing else.
func (s *state) digestRequest(now time.Time) *meshpb.SyncRequest {
	req := &meshpb.SyncRequest{Cluster: s.cfg.ClusterName, Digest: s.digest, Ages: s.denseAges(now)}
	if s.heldSame {
		return req
	}
	ev, heldOK := s.ev, s.heldOK[:len(s.ev)]
	n := 0
	for i := range ev {
		if heldOK[i] && ev[i].held != s.digest {
			n++
		}
	}
	s.heldSame = n == 0
	if n == 0 {
		return req
	}
	// Sized by the count, which the test above needs anyway.
	req.OtherIndex, req.OtherDigest = make([]uint32, 0, n), make([]uint64, 0, n)
	for i := range ev {
		if d := ev[i].held; heldOK[i] && d != s.digest {
			req.OtherIndex = append(req.OtherIndex, uint32(i))
			req.OtherDigest = append(req.OtherDigest, d)
		}
	}
	return req
}

// others maps view indexes to the digests a message lists for them.
func others(idx []uint32, digests []uint64) map[uint32]uint64 {
	if len(idx) == 0 {
		return nil
	}
	m := make(map[uint32]uint64, len(idx))
	for j := 0; j < len(idx) && j < len(digests); j++ {
		m[idx[j]] = digests[j]
	}
	return m
}

func (s *state) denseAges(now time.Time) []byte {
	ages := denseBufs.get(len(s.view)) // see Recycle
	off := s.offset(now)
	unit := s.cfg.PingPeriod / ageScale
	// ageAt without its call and its test of self per member: this runs
	// for every member at every peer every round.
	heldOK := s.heldOK[:len(ages)]
	for i := range s.ev[:len(ages)] {
		ages[i] = ageOf(s.ev[i].seen, off, unit, s.perUnit)
		if !heldOK[i] {
			ages[i] = noAge // a grace, not evidence: see rebuildView
		}
	}
	if s.selfPos >= 0 {
		ages[s.selfPos] = 0
	}
	return ages
}

// noEvidence is the seen offset of a member with no evidence.
const noEvidence = time.Duration(math.MinInt64)

// offset returns now as an offset from origin, the unit of seen. It
// remembers the last time converted: the hot loops ask for the same
// now once per member.
func (s *state) offset(now time.Time) time.Duration {
	// == rather than Equal: an identical value is all the cache needs,
	// and it is the cheaper test.
	if now != s.offNow {
		s.offNow, s.off = now, now.Sub(s.origin)
	}
	return s.off
}

// pos returns addr's index in the view.
func (s *state) pos(addr string) (int, bool) {
	return slices.BinarySearch(s.view, addr)
}

// ageAt is the age at offset now of our evidence for view position i,
// in 1/ageScale periods, rounded up so that relaying never makes
// evidence look fresher.
func (s *state) ageAt(i int, now time.Duration) byte {
	if i == s.selfPos {
		return 0
	}
	if !s.heldOK[i] {
		return noAge // a grace, not evidence: see rebuildView
	}
	return ageOf(s.ev[i].seen, now, s.cfg.PingPeriod/ageScale, s.perUnit)
}

// ageOf is the age at offset now of evidence seen at offset t, in units
// of unit (perUnit is 1/unit).
func ageOf(t, now, unit time.Duration, perUnit float64) byte {
	if t == noEvidence {
		return noAge
	}
	d := now - t
	if d <= 0 {
		return 0
	}
	if d > (noAge-1)*unit {
		return noAge
	}
	// ⌈d/unit⌉ without a division (the hot loops take one per member):
	// an estimate by the reciprocal, off by at most one, corrected exactly.
	// The correction is random, so it is made without a branch.
	n := time.Duration(float64(d) * perUnit)
	n += time.Duration(bit(n*unit < d) - bit((n-1)*unit >= d))
	return byte(n)
}

// grace gives a member that just became live evidence as of now: it is
// not expired before it had a chance to be heard of.
func (s *state) grace(addr string, now time.Time) {
	s.graced = append(s.graced, graceItem{addr, s.offset(now)})
}

// evidence is what a state knows of a member's liveness; see state.ev.
type evidence struct {
	seen time.Duration
	held uint64
}

type graceItem struct {
	addr string
	at   time.Duration
}

// learn records evidence that addr ran age units before now, holding the
// state named by digest.
func (s *state) learn(addr string, age byte, digest uint64, now time.Time) {
	if i, ok := s.pos(addr); ok {
		s.learnAt(i, age, digest, now)
	}
}

// learnIn is learn for position i of view, a view this state had: the
// request's of an exchange, usually still the current one.
func (s *state) learnIn(view []string, i int, age byte, digest uint64, now time.Time) {
	if len(view) == len(s.view) && len(view) > 0 && &view[0] == &s.view[0] {
		s.learnAt(i, age, digest, now)
		return
	}
	s.learn(view[i], age, digest, now)
}

// learnAt is learn for view position i.
func (s *state) learnAt(i int, age byte, digest uint64, now time.Time) {
	if age == noAge || i == s.selfPos {
		return
	}
	off := s.offset(now)
	t := off - time.Duration(age)*(s.cfg.PingPeriod/ageScale)
	if t > s.ev[i].seen {
		s.ev[i] = evidence{t, digest}
		s.heldSame = s.heldSame && digest == s.digest
		s.heldOK[i] = true
	}
}

func (s *state) namedAges(now time.Time) []*meshpb.Age {
	off := s.offset(now)
	n := 0
	for i := range s.view {
		if s.ageAt(i, off) != noAge {
			n++
		}
	}
	slab := make([]meshpb.Age, n) // one allocation for the n messages
	out := make([]*meshpb.Age, 0, n)
	for i, a := range s.view {
		if age := s.ageAt(i, off); age != noAge {
			m := &slab[len(out)]
			m.Addr, m.Periods, m.Digest = a, uint32(age), s.heldAt(i)
			out = append(out, m)
		}
	}
	return out
}

func (s *state) learnNamed(ages []*meshpb.Age, now time.Time) {
	next := 0 // honest peers list ages in view order: try the next position first
	for _, a := range ages {
		if a.GetPeriods() >= noAge {
			continue
		}
		addr := a.GetAddr()
		i, ok := next, next < len(s.view) && s.view[next] == addr
		if !ok {
			i, ok = s.pos(addr)
		}
		if ok {
			s.learnAt(i, byte(a.GetPeriods()), a.GetDigest(), now)
			next = i + 1
		}
	}
}

// heldAt returns the digest view[i] held at its freshest evidence (ours
// for self).
func (s *state) heldAt(i int) uint64 {
	if i == s.selfPos {
		return s.digest
	}
	return s.ev[i].held
}

// converged reports whether the freshest evidence of every live member,
// none older than Expiry, shows it holding exactly our state.
func (s *state) converged(now time.Time) bool {
	off, exp := s.offset(now), s.expiry()
	for i := range s.view {
		if e := s.ev[i]; i != s.selfPos && (e.held != s.digest || e.seen == noEvidence || off-e.seen > exp) {
			return false
		}
	}
	return true
}

// answerAges handles a digest request from a peer with the same state:
// learn from its ages, and send back only the ages we have fresher.
// Evidence carries the state its member held: ours unless listed.
func (s *state) answerAges(req *meshpb.SyncRequest, now time.Time) *meshpb.SyncResponse {
	theirs := req.GetAges()
	idx, digests := req.GetOtherIndex(), req.GetOtherDigest()
	idx = idx[:min(len(idx), len(digests))]
	// Honest peers list other digests in increasing index order: walk
	// them with a cursor. Otherwise (duplicates, disorder) a map, in which
	// the last listing of an index wins.
	var other map[uint32]uint64
	for j := 1; j < len(idx); j++ {
		if idx[j] <= idx[j-1] {
			other = others(idx, digests)
			break
		}
	}
	// No digest: an answer without a version vector says the states are
	// equal, and the requester knows its own digest.
	resp := &meshpb.SyncResponse{Heartbeat: s.heartbeat}
	sc := answerScratches.Get().(*answerScratch)
	defer answerScratches.Put(sc)
	off, k := s.offset(now), 0
	unit := s.cfg.PingPeriod / ageScale
	theirs = theirs[:len(s.view)]
	ev := s.ev[:len(theirs)]
	selfPos, heldOK := s.selfPos, s.heldOK[:len(theirs)]
	if cap(sc.news) < len(theirs) {
		sc.news, sc.index = make([]uint32, len(theirs)), make([]uint32, len(theirs))
	}
	// This loop runs for every member in every exchange, and which
	// members are news or fresher is random, so a branch per member
	// mispredicts often. Instead it writes every member's index to both
	// lists and advances each only past the members that qualify (no
	// branch); the few that do are handled after. (Steady, N = 2,000: the
	// rounds took a quarter less CPU than with the branches.)
	//
	// Fresher by fresherMargin: ⌈(off−seen)/unit⌉ ≤ age−margin ⇔
	// off−seen ≤ (age−margin)·unit; self is always 0; no evidence never
	// is, and neither is a grace (heldOK false: see rebuildView). The
	// terms of a member that fails one test may overflow: the others mask
	// them. Testing freshness before learning gives what testing after
	// it would: news means off−seen > age·unit, which rules fresher out
	// (unit > 0, as PingPeriod ≥ 1ms), and learning a member's news
	// changes only its own evidence.
	news, fresher := sc.news[:len(theirs)], sc.index[:len(theirs)]
	margin := time.Duration(fresherMargin) * unit
	nn, nf := 0, 0
	for i, age := range theirs {
		t := ev[i].seen
		news[nn], fresher[nf] = uint32(i), uint32(i)
		nn += bit(age != noAge) & bit(off-time.Duration(age)*unit > t)
		nf += bit(age >= fresherMargin) & (bit(i == selfPos) | bit(heldOK[i])&bit(t != noEvidence)&bit(off-t <= time.Duration(age)*unit-margin))
	}
	fresher = fresher[:nf]
	for _, i := range news[:nn] {
		// The digest its member held is looked up only for news.
		d := s.digest
		if other != nil {
			if o, ok := other[i]; ok {
				d = o
			}
		} else {
			for k < len(idx) && idx[k] < i {
				k++
			}
			if k < len(idx) && idx[k] == i {
				d = digests[k]
			}
		}
		s.learnAt(int(i), theirs[i], d, now)
	}
	fa, oi, od := sc.ages[:0], sc.otherIndex[:0], sc.otherDigest[:0]
	for _, i := range fresher {
		mine := byte(0)
		if int(i) != selfPos {
			mine = ageOf(ev[i].seen, off, unit, s.perUnit)
		}
		fa = append(fa, mine)
		if h := s.heldAt(int(i)); h != s.digest {
			oi = append(oi, i)
			od = append(od, h)
		}
	}
	resp.FresherIndex, resp.FresherAges = copyInto(&indexBufs, fresher), copyInto(&fresherBufs, fa)
	resp.OtherIndex, resp.OtherDigest = exactCopy(oi), exactCopy(od)
	sc.ages, sc.otherIndex, sc.otherDigest = fa, oi, od
	return resp
}

// bit is b as 0 or 1, which the compiler makes without a branch.
func bit(b bool) int {
	if b {
		return 1
	}
	return 0
}

// answerScratch collects the ages of an answer, which are then copied
// into slices of their exact size: grown by append (about a thousand
// ages an answer at N = 5,000), they cost a fifth of a large run's CPU.
type answerScratch struct {
	news, index, otherIndex []uint32
	ages                    []byte
	otherDigest             []uint64
}

var answerScratches = sync.Pool{New: func() any { return new(answerScratch) }}

// exactCopy returns a copy of s of its exact length, nil when empty.
func exactCopy[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append([]T(nil), s...)
}
