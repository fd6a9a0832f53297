package peer

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/meshpb"
)

// This file keeps the view, the sorted listed members the overlay and the
// holder sets are built on, and answers what GetMembers and Members list.

func (s *state) rebuildView() {
	s.view = s.nextView()
	s.selfPos = -1
	if i, ok := slices.BinarySearch(s.view, s.self); ok {
		s.selfPos = i
	}
	s.ov, s.subjects = nil, nil // the overlay follows the view
	s.came, s.gone = nil, nil
}

// nextView returns the sorted live addresses: the view without the
// members gone, merged with those that came (and self). Sorting only the
// few that changed matters during a join, when views of thousands change
// many times a round. Should the result not hold exactly the live
// members, it collects and sorts them all instead.
func (s *state) nextView() []string {
	slices.Sort(s.came)
	came := slices.Compact(s.came)
	if m, live := s.members.Get(s.self); live && !m.pending && s.selfPos < 0 {
		if i, found := slices.BinarySearch(came, s.self); !found {
			came = slices.Insert(came, i, s.self)
		}
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
