package peer

import (
	"cmp"
	"slices"
	"sort"
)

// overlay is the monitoring graph over a view: every member is watched by
// k distinct observers, one per hash ring of the addresses (Rapid's
// expander): on ring r, the first member following it there that is not
// already its observer on an earlier ring. So any peer computes who
// watches whom from the membership alone, and every member has exactly k
// observers (everyone else, in a view of at most k+1): with plain
// successors, ring collisions left some members with five of eight, and
// three stray alerts under loss were a majority. It is a pure value: no
// clock, no I/O.
type overlay struct {
	k    int
	view []string // sorted
	// ring[r] lists view positions in their order on ring r, and at[r][i]
	// is where view[i] stands in it; computed once per view.
	ring [][]int32
	at   [][]int32
	memo map[string][]string // observersOf, by subject
}

// newOverlay returns the overlay of k rings over a sorted view. The rings
// exist in a complete overlay too: news travels along them (relaysOf).
func newOverlay(view []string, k int) *overlay {
	o := &overlay{k: k, view: view, ring: make([][]int32, k), at: make([][]int32, k)}
	base := make([]uint64, len(view))
	for i, a := range view {
		base[i] = addrHash(a)
	}
	hs := make([]uint64, len(view))
	for r := range k {
		for i, b := range base {
			hs[i] = ringHash(b, r)
		}
		ring := make([]int32, len(view))
		for i := range ring {
			ring[i] = int32(i)
		}
		// Ties, which need equal 64-bit hashes, are broken by position.
		slices.SortFunc(ring, func(i, j int32) int {
			if c := cmp.Compare(hs[i], hs[j]); c != 0 {
				return c
			}
			return cmp.Compare(i, j)
		})
		at := make([]int32, len(view))
		for p, i := range ring {
			at[i] = int32(p)
		}
		o.ring[r], o.at[r] = ring, at
	}
	return o
}

// addrHash is where a member's ring positions derive from.
func addrHash(addr string) uint64 { return fnv64(14695981039346656037, addr) }

// ringHash is the position on ring r of a member whose address hashes to
// base.
func ringHash(base uint64, r int) uint64 { return mix64(base ^ mix64(uint64(r)+1)) }

// complete reports whether everyone watches everyone.
func (o *overlay) complete() bool { return len(o.view) <= o.k+1 }

// step returns the view position d places after ring place p on ring r
// (before it, for d < 0), wrapping.
func (o *overlay) step(r, p, d int) int {
	n := len(o.view)
	return int(o.ring[r][((p+d)%n+n)%n])
}

// observersOf returns the k distinct observers of subject (everyone else
// in a complete overlay), sorted. Subject need not be in the view: a
// member that is not listed yet is watched by those that would watch it
// if it were.
func (o *overlay) observersOf(subject string) []string {
	if got, ok := o.memo[subject]; ok {
		return got
	}
	if o.memo == nil {
		o.memo = map[string][]string{}
	}
	out := o.computeObservers(subject)
	o.memo[subject] = out
	return out
}

func (o *overlay) computeObservers(subject string) []string {
	i, in := slices.BinarySearch(o.view, subject)
	if o.complete() || !in && len(o.view) <= o.k {
		return without(o.view, subject)
	}
	chosen := make([]int, 0, o.k)
	for r := range o.k {
		// The first place after subject's own on ring r; a subject that
		// is not in the view is placed where it would be.
		var p int
		if in {
			p = int(o.at[r][i]) + 1
		} else {
			p = o.placeAfter(r, subject, i)
		}
		for d := 0; ; d++ {
			j := o.step(r, p, d)
			if in && j == i || slices.Contains(chosen, j) {
				continue
			}
			chosen = append(chosen, j)
			break
		}
	}
	out := make([]string, len(chosen))
	for n, j := range chosen {
		out[n] = o.view[j]
	}
	slices.Sort(out)
	return out
}

// placeAfter returns the ring place on ring r that would follow subject,
// which is not in the view but would sort at view position at.
func (o *overlay) placeAfter(r int, subject string, at int) int {
	h := ringHash(addrHash(subject), r)
	ring := o.ring[r]
	return sort.Search(len(ring), func(p int) bool {
		x := ringHash(addrHash(o.view[ring[p]]), r)
		return x > h || x == h && int(ring[p]) >= at
	})
}

// subjectsOf returns the members self watches, sorted: about k, exactly
// those whose observersOf include self. Self need not be in the view.
func (o *overlay) subjectsOf(self string) []string {
	i, in := slices.BinarySearch(o.view, self)
	if !in {
		// A member that is not listed (pending) still watches those it
		// would watch if it were.
		return newOverlay(slices.Insert(slices.Clone(o.view), i, self), o.k).subjectsOf(self)
	}
	if o.complete() {
		return without(o.view, self)
	}
	var out []string
	for r := range o.k {
		// Self is x's observer on ring r only if every member between them
		// there is x's observer on an earlier ring: x is among self's r+1
		// predecessors.
		for d := 1; d <= r+1; d++ {
			x := o.view[o.step(r, int(o.at[r][i]), -d)]
			if !slices.Contains(out, x) && slices.Contains(o.observersOf(x), self) {
				out = append(out, x)
			}
		}
	}
	slices.Sort(out)
	return out
}

// relaysOf returns the distinct members self tells news to, sorted: its
// predecessors on the first rings rings, which it observes (on that ring
// or an earlier one). Each ring is a cycle through every member, so news
// relayed along even one reaches everyone; along a few it takes about
// log N hops, and each member receives it about rings times rather than
// k. Self need not be in the view.
func (o *overlay) relaysOf(self string, rings int) []string {
	i, in := slices.BinarySearch(o.view, self)
	if !in {
		return newOverlay(slices.Insert(slices.Clone(o.view), i, self), o.k).relaysOf(self, rings)
	}
	if len(o.view) < 2 {
		return nil
	}
	var out []string
	for r := range min(rings, o.k) {
		out = append(out, o.view[o.step(r, int(o.at[r][i]), -1)])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// without returns the members of a sorted view other than a.
func without(view []string, a string) []string {
	out := make([]string, 0, len(view))
	for _, m := range view {
		if m != a {
			out = append(out, m)
		}
	}
	return out
}

// alertThreshold is how many distinct observers of a member must alert on
// it before it is removed, when available of its observers of all are
// available (see state.down): a majority of the available ones, and at
// least two, so that one observer's bad link, lossy path or starved
// process never removes anybody. (Half was too few with few observers:
// the fault suite's 7 agents under loss lost members to 3 alerts of 6.)
// A member with a single observer (a cluster of two) is removed on that
// observer's alert.
func alertThreshold(available, all int) int {
	if all <= 1 {
		return 1
	}
	return max(2, available/2+1)
}
