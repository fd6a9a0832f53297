package property_test

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gossipmesh/mesh/crdt"
	"pgregory.net/rapid"
)

type (
	smap   = crdt.Map[string, string]
	entry  = crdt.Entry[string, string]
	delta  = crdt.Delta[string, string]
	change = crdt.Change[string, string]
)

// Few keys, writers and times, so that random writes collide often: the
// interesting cases are two writes to one key, and equal times.
var (
	keys    = []string{"a", "b", "c", "d", "e"}
	writers = []string{"w1", "w2", "w3"}
	values  = []string{"x", "y", "z"}
)

const maxDrawnTime = 10

func genWrite() *rapid.Generator[entry] {
	return rapid.Custom(func(t *rapid.T) entry {
		return entry{
			Key: rapid.SampledFrom(keys).Draw(t, "key"),
			Stamp: crdt.Stamp{
				Time:   rapid.Uint64Range(1, maxDrawnTime).Draw(t, "time"),
				Writer: rapid.SampledFrom(writers).Draw(t, "writer"),
			},
			Value:   rapid.SampledFrom(values).Draw(t, "value"),
			Deleted: rapid.Bool().Draw(t, "deleted"),
		}
	})
}

// genUniverse draws writes with distinct stamps. A stamp names one write:
// two entries with one stamp and different contents are not valid input,
// and the laws do not hold for them.
func genUniverse(t *rapid.T, label string) []entry {
	return rapid.SliceOfNDistinct(genWrite(), 6, 24, func(e entry) crdt.Stamp { return e.Stamp }).Draw(t, label)
}

// genState builds a map from a random subset of u, applied in random order,
// one entry at a time (through Apply) or in one delta (through ApplyDelta).
func genState(t *rapid.T, u []entry, label string) *smap {
	m := &smap{}
	if len(u) == 0 {
		return m
	}
	var idx []int
	for _, i := range rapid.Permutation(indices(len(u))).Draw(t, label) {
		if rapid.Bool().Draw(t, label+"Has") {
			idx = append(idx, i)
		}
	}
	if rapid.Bool().Draw(t, label+"OneDelta") {
		d := delta{}
		for _, i := range idx {
			d.Entries = append(d.Entries, u[i])
		}
		if _, err := m.ApplyDelta(d); err != nil {
			t.Fatalf("ApplyDelta(%v): %v", d.Entries, err)
		}
		return m
	}
	for _, i := range idx {
		if _, err := m.Apply(u[i]); err != nil {
			t.Fatalf("Apply(%v): %v", u[i], err)
		}
	}
	return m
}

func indices(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// liveOf collects the live key/values of m.
func liveOf(m *smap) map[string]string { return maps.Collect(m.Live()) }

// dump prints m for a failure message: entries by key, then vector and floor.
func dump(m *smap) string {
	es := slices.SortedFunc(m.All(), func(a, b entry) int { return cmp.Compare(a.Key, b.Key) })
	var b strings.Builder
	b.WriteString("{")
	for i, e := range es {
		if i > 0 {
			b.WriteString(" ")
		}
		if e.Deleted {
			fmt.Fprintf(&b, "%s:✗@%v", e.Key, e.Stamp)
		} else {
			fmt.Fprintf(&b, "%s:%s@%v", e.Key, e.Value, e.Stamp)
		}
	}
	fmt.Fprintf(&b, "} version=%v floor=%d", m.Version(), m.Floor())
	return b.String()
}

// requireSane checks invariants every map must keep.
func requireSane(t *rapid.T, what string, m *smap) {
	t.Helper()
	live := liveOf(m)
	if m.Len() != len(live) {
		t.Fatalf("%s: Len() = %d, but Live() yields %d: %s", what, m.Len(), len(live), dump(m))
	}
	for e := range m.All() {
		v, ok := m.Get(e.Key)
		if ok == e.Deleted || (ok && v != e.Value) {
			t.Fatalf("%s: Get(%q) = %q, %v for entry %+v", what, e.Key, v, ok, e)
		}
		if !m.Version().Covers(e.Stamp) {
			t.Fatalf("%s: version does not cover held entry %+v: %s", what, e, dump(m))
		}
	}
}

// requireSame fails unless got and want hold the same entries (Equal) and
// the same live values.
func requireSame(t *rapid.T, what string, got, want *smap) {
	t.Helper()
	if !got.Equal(want) || !want.Equal(got) || !maps.Equal(liveOf(got), liveOf(want)) || got.Len() != want.Len() {
		t.Fatalf("%s:\n got  %s\n want %s", what, dump(got), dump(want))
	}
}

// requireSameVersion fails unless got and want have equal version vectors.
func requireSameVersion(t *rapid.T, what string, got, want *smap) {
	t.Helper()
	if gv, wv := got.Version(), want.Version(); gv.Compare(wv) != crdt.Equal {
		t.Fatalf("%s: version %v, want %v", what, gv, wv)
	}
}

// replica is one member of a simulated cluster: it writes under its own id
// with its own Lamport clock, and observes the times of what it receives.
type replica struct {
	id    string
	m     *smap
	clock crdt.Clock
}

func newReplicas(n int) []*replica {
	rs := make([]*replica, n)
	for i := range rs {
		rs[i] = &replica{id: fmt.Sprintf("r%d", i), m: &smap{}}
	}
	return rs
}

// write makes a local write. It must win: the clock has observed every time
// the replica holds, including the floor, so the fresh stamp beats them all.
func (r *replica) write(t *rapid.T, key, value string, del bool) {
	t.Helper()
	s := crdt.Stamp{Time: r.clock.Tick(), Writer: r.id}
	var won bool
	var err error
	if del {
		won, err = r.m.Delete(key, s)
	} else {
		won, err = r.m.Set(key, value, s)
	}
	if err != nil || !won {
		t.Fatalf("%s: own write of %q at %v: won=%v err=%v; state %s", r.id, key, s, won, err, dump(r.m))
	}
}

// apply applies a delta received from a partner.
func (r *replica) apply(t *rapid.T, d delta) []change {
	t.Helper()
	ch, err := r.m.ApplyDelta(d)
	if err != nil {
		t.Fatalf("%s: ApplyDelta: %v", r.id, err)
	}
	for _, e := range d.Entries {
		r.clock.Observe(e.Stamp.Time)
	}
	return ch
}

// merge merges a partner's whole state.
func (r *replica) merge(o *smap) {
	r.m.Merge(o)
	for e := range o.All() {
		r.clock.Observe(e.Stamp.Time)
	}
}

// randomOps runs n random operations over rs: local writes, full merges
// and deltas. Deltas are cut at a random limit only when cut is true.
func randomOps(t *rapid.T, rs []*replica, n int, cut bool) {
	maxLimit := 0
	if cut {
		maxLimit = 4
	}
	for range n {
		i := rapid.IntRange(0, len(rs)-1).Draw(t, "i")
		j := rapid.IntRange(0, len(rs)-1).Draw(t, "j")
		switch rapid.IntRange(0, 3).Draw(t, "op") {
		case 0:
			rs[i].write(t, rapid.SampledFrom(keys).Draw(t, "key"), rapid.SampledFrom(values).Draw(t, "value"), false)
		case 1:
			rs[i].write(t, rapid.SampledFrom(keys).Draw(t, "key"), "", true)
		case 2:
			limit := rapid.IntRange(0, maxLimit).Draw(t, "limit")
			rs[j].apply(t, rs[i].m.Delta(rs[j].m.Version(), limit))
		case 3:
			rs[j].merge(rs[i].m)
		}
	}
}

// exchangeUntilQuiet runs rounds in which every ordered pair exchanges one
// delta (cut at limit), until a round changes nothing. It fails if that
// takes more than maxRounds.
func exchangeUntilQuiet(t *rapid.T, rs []*replica, limit int) {
	t.Helper()
	const maxRounds = 200
	for round := 0; round < maxRounds; round++ {
		quiet := true
		for _, from := range rs {
			for _, to := range rs {
				if from == to {
					continue
				}
				before := to.m.Version()
				if len(to.apply(t, from.m.Delta(before, limit))) > 0 || to.m.Version().Compare(before) != crdt.Equal {
					quiet = false
				}
			}
		}
		if quiet {
			return
		}
	}
	t.Fatalf("no quiescence after %d rounds of all-pairs exchange", maxRounds)
}

// maxTimeSeen is the highest Lamport time anywhere in rs: every held
// stamp and every floor. It is what an owner learns from its partners.
func maxTimeSeen(rs []*replica) uint64 {
	var mx uint64
	for _, r := range rs {
		mx = max(mx, r.m.Floor(), r.clock.Time())
		for e := range r.m.All() {
			mx = max(mx, e.Stamp.Time)
		}
	}
	return mx
}

func changesByKey(cs []change) map[string]change {
	out := make(map[string]change, len(cs))
	for _, c := range cs {
		out[c.New.Key] = c
	}
	return out
}
