package peer

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/meshpb"
)

// This file keeps the view, the sorted listed members the overlay and the
// evidence slots are built on, and answers what GetMembers and Members
// list.

func (s *state) rebuildView() {
	view := s.nextView()
	// Carry each member's evidence to its new position: both views are
	// sorted, so one merge walk does it.
	ev := make([]evidence, len(view))
	heldOK := make([]bool, len(view))
	s.selfPos = -1
	j, g := 0, 0 // nextView sorted graced by address
	for i, a := range view {
		for j < len(s.view) && s.view[j] < a {
			j++
		}
		ev[i].seen = noEvidence
		if j < len(s.view) && s.view[j] == a {
			ev[i], heldOK[i] = s.ev[j], s.heldOK[j]
		}
		for g < len(s.graced) && s.graced[g].addr < a {
			g++
		}
		if g < len(s.graced) && s.graced[g].addr == a {
			// Evidence as of when we learnt of it, so that a new member
			// does not expire before it had a chance to be heard of; but
			// only ours: heldOK false keeps it out of the ages we send
			// until real evidence arrives. Passed on, it made every peer
			// that learnt of a joiner late refresh the joiner's evidence
			// everywhere, and a peer that crashed soon after joining
			// stayed listed while the news of its join spread
			// (simulator, churn at N = 100: removal by all took up to
			// 17.8 rounds against a bound of 16).
			ev[i].seen, heldOK[i] = s.graced[g].at, false
		}
		if a == s.self {
			s.selfPos = i
		}
	}
	s.view, s.ev, s.heldOK = view, ev, heldOK
	s.heldSame = false
	s.ov, s.subjects = nil, nil // the overlay follows the view
	s.graced, s.gone = nil, nil
}

// nextView returns the sorted live addresses: the view without the
// members gone, merged with those that came (graced, and self). Sorting
// only the few that changed matters during a join, when views of
// thousands change many times a round. Should the result not hold
// exactly the live members, it collects and sorts them all instead.
func (s *state) nextView() []string {
	// Sorted by address, and of an address graced twice the last grace
	// kept, as a map would: rebuildView walks them in view order.
	slices.SortStableFunc(s.graced, func(a, b graceItem) int { return strings.Compare(a.addr, b.addr) })
	k := 0
	for i, g := range s.graced {
		if i+1 < len(s.graced) && s.graced[i+1].addr == g.addr {
			continue
		}
		s.graced[k] = g
		k++
	}
	s.graced = s.graced[:k]
	came := make([]string, 0, len(s.graced)+1)
	for _, g := range s.graced {
		came = append(came, g.addr)
	}
	if m, live := s.members.Get(s.self); live && !m.pending && s.selfPos < 0 {
		i, _ := slices.BinarySearch(came, s.self)
		came = slices.Insert(came, i, s.self)
	}
	slices.Sort(s.gone)
	view := make([]string, 0, s.members.Len())
	for i, j, g := 0, 0, 0; i < len(s.view) || j < len(came); {
		if j < len(came) && (i == len(s.view) || came[j] < s.view[i]) {
			view = append(view, came[j])
			j++
			continue
		}
		a := s.view[i]
		i++
		for g < len(s.gone) && s.gone[g] < a {
			g++
		}
		if g == len(s.gone) || s.gone[g] != a {
			view = append(view, a)
		}
	}
	if len(view) == s.members.Len()-len(s.pending) && slices.IsSorted(view) && !hasAdjacentDup(view) {
		return view
	}
	view = view[:0]
	for a, m := range s.members.Live() {
		if !m.pending {
			view = append(view, a)
		}
	}
	slices.Sort(view)
	return view
}

func hasAdjacentDup(v []string) bool {
	for i := 1; i < len(v); i++ {
		if v[i] == v[i-1] {
			return true
		}
	}
	return false
}

// list returns every entry, tombstones included, sorted by address.
func (s *state) list() []Member {
	var out []Member
	for e := range s.members.All() {
		m := Member{Addr: e.Key, State: e.Value.state, Meta: &meshpb.PeerMeta{}}
		if (e.Value.pending || s.hidden[e.Key]) && !e.Deleted && e.Key != s.self {
			m.State = meshpb.State_STATE_FAILED // until its observers (or this peer) reach it
		}
		if e.Value.meta != nil {
			m.Meta = proto.Clone(e.Value.meta).(*meshpb.PeerMeta)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// snapshot returns the live members with copies of their metas.
func (s *state) snapshot() map[string]*meshpb.PeerMeta {
	out := make(map[string]*meshpb.PeerMeta, s.members.Len())
	for a, m := range s.members.Live() {
		// Self is listed to itself even while its observers have not
		// reached it yet: it knows it runs.
		if a == s.self || !m.pending && !s.hidden[a] {
			out[a] = proto.Clone(m.meta).(*meshpb.PeerMeta)
		}
	}
	return out
}
