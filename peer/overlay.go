package peer

import (
	"math"
	"slices"
)

// overlay is the monitoring graph over a view: every member is watched by
// the members that follow it on k hash rings of the addresses (Rapid's
// expander), so any peer computes who watches whom from the membership
// alone, each member has at most k observers and each peer watches at
// most k subjects. In a view of at most k+1 members everyone watches
// everyone. It is a pure value: no clock, no I/O.
type overlay struct {
	k    int
	view []string // sorted
	// hashes[r][i] is view[i]'s position on ring r; computed once per view.
	hashes [][]uint64
	memo   map[string][]string // observersOf, by subject
}

// newOverlay returns the overlay of k rings over a sorted view. The rings
// exist in a complete overlay too: news travels along them (relaysOf).
func newOverlay(view []string, k int) *overlay {
	o := &overlay{k: k, view: view}
	base := make([]uint64, len(view))
	for i, a := range view {
		base[i] = addrHash(a)
	}
	o.hashes = make([][]uint64, k)
	for r := range k {
		hs := make([]uint64, len(view))
		for i, b := range base {
			hs[i] = ringHash(b, r)
		}
		o.hashes[r] = hs
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

// neighbours returns, for the member at view position i on ring r, the
// positions of its predecessor and successor (i itself in a view of one).
func (o *overlay) neighbours(r, i int) (pred, succ int) {
	hs := o.hashes[r]
	h := hs[i]
	pred, succ = -1, -1
	// The nearest hash below h (wrapping to the largest) and above it
	// (wrapping to the smallest); ties, which need equal 64-bit hashes,
	// are broken by position.
	var lo, hi, maxAt, minAt = -1, -1, 0, 0
	for j, x := range hs {
		if x > hs[maxAt] || x == hs[maxAt] && j > maxAt {
			maxAt = j
		}
		if x < hs[minAt] || x == hs[minAt] && j < minAt {
			minAt = j
		}
		if j == i {
			continue
		}
		if less(x, j, h, i) && (lo < 0 || less(hs[lo], lo, x, j)) {
			lo = j
		}
		if less(h, i, x, j) && (hi < 0 || less(x, j, hs[hi], hi)) {
			hi = j
		}
	}
	pred, succ = lo, hi
	if pred < 0 {
		pred = maxAt
	}
	if succ < 0 {
		succ = minAt
	}
	return pred, succ
}

// less orders ring positions: by hash, then by view position.
func less(a uint64, i int, b uint64, j int) bool { return a < b || a == b && i < j }

// observersOf returns the distinct observers of subject, which need not be
// in the view (a member that is not listed yet is watched by those that
// would follow it), sorted.
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
	if o.complete() || !slices.Contains(o.view, subject) && len(o.view) <= o.k {
		return without(o.view, subject)
	}
	i, in := slices.BinarySearch(o.view, subject)
	if !in {
		return o.observersOfAbsent(subject, i)
	}
	var out []string
	for r := range o.k {
		_, succ := o.neighbours(r, i)
		out = append(out, o.view[succ])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// observersOfAbsent returns the observers that subject, not in the view
// but sorting at position at, would have in the view with it added: on
// each ring, the member whose position follows its own. One pass over
// each ring: every failed member's would-be observers are asked for.
func (o *overlay) observersOfAbsent(subject string, at int) []string {
	base := addrHash(subject)
	var out []string
	for r, hs := range o.hashes {
		h := ringHash(base, r)
		best, bestD := -1, uint64(0)
		for j, x := range hs {
			d := x - h // how far past h, wrapping
			if d == 0 && j < at {
				d = math.MaxUint64 // an equal hash before it in the view comes before it
			}
			if best < 0 || d < bestD {
				best, bestD = j, d
			}
		}
		out = append(out, o.view[best])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// subjectsOf returns the distinct members self watches, sorted: on each
// ring, its predecessor. Self need not be in the view.
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
		pred, _ := o.neighbours(r, i)
		out = append(out, o.view[pred])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// relaysOf returns the distinct members self tells news to, sorted: its
// predecessors on the first rings rings, which are among its subjects.
// Each ring is a cycle through every member, so news relayed along even
// one reaches everyone; along a few it takes about log N hops, and each
// member receives it about rings times rather than k. Self need not be in
// the view.
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
		pred, _ := o.neighbours(r, i)
		out = append(out, o.view[pred])
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
