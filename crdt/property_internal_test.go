package crdt

// Property tests inside the package, so that `go test ./crdt` (and the
// mutation tests of `make mutate`, which run only this package's tests)
// check the merge laws and the model too. They run rapid's default number
// of cases; mesh/property_test runs the full suite with ≥ 1,000 each.
// checkInternals also verifies the per-writer logs behind Delta, which no
// public method shows directly.

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strconv"
	"testing"

	"pgregory.net/rapid"
)

type (
	pmap   = Map[string, string]
	pentry = Entry[string, string]
)

var (
	pKeys    = []string{"a", "b", "c", "d"}
	pWriters = []string{"w1", "w2", "w3"}
)

func pGenEntry(t *rapid.T) pentry {
	e := pentry{
		Key:     rapid.SampledFrom(pKeys).Draw(t, "key"),
		Stamp:   Stamp{Time: rapid.Uint64Range(1, 8).Draw(t, "time"), Writer: rapid.SampledFrom(pWriters).Draw(t, "writer")},
		Value:   rapid.SampledFrom([]string{"x", "y"}).Draw(t, "value"),
		Deleted: rapid.Bool().Draw(t, "deleted"),
	}
	switch rapid.IntRange(0, 11).Draw(t, "bad") {
	case 0:
		e.Key = ""
	case 1:
		e.Stamp.Time = 0
	case 2:
		e.Stamp.Time = rapid.SampledFrom([]uint64{MaxTime + 1, math.MaxUint64}).Draw(t, "absurd")
	case 3:
		e.Stamp.Writer = ""
	case 4:
		e.Stamp.Time = MaxTime
	}
	return e
}

func pValid(e pentry) bool {
	return e.Key != "" && e.Stamp.Time >= 1 && e.Stamp.Time <= MaxTime && e.Stamp.Writer != ""
}

func pGenVector(t *rapid.T, label string) VersionVector {
	return VersionVector(rapid.MapOfN(rapid.SampledFrom(pWriters), rapid.Uint64Range(0, 9), 0, len(pWriters)).Draw(t, label))
}

// pModel is the reference: winning entries, vector and floor, by the rules
// of the package doc.
type pModel struct {
	entries map[string]pentry
	version VersionVector
	floor   uint64
}

func (md *pModel) put(e pentry) (Change[string, string], bool) {
	if e.Stamp.Time > md.version[e.Stamp.Writer] {
		md.version[e.Stamp.Writer] = e.Stamp.Time
	}
	old, had := md.entries[e.Key]
	if (had && !old.Stamp.Less(e.Stamp)) || (!had && e.Stamp.Time <= md.floor) {
		return Change[string, string]{}, false
	}
	md.entries[e.Key] = e
	return Change[string, string]{Old: old, New: e, HadOld: had}, true
}

func pSort(es []pentry) {
	slices.SortFunc(es, func(a, b pentry) int {
		if c := a.Stamp.Compare(b.Stamp); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
}

// delta is the spec of Delta; see mesh/property_test for the long form.
func (md *pModel) delta(pv VersionVector, limit int) ([]pentry, VersionVector, uint64) {
	var l []pentry
	for _, e := range md.entries {
		if e.Stamp.Time > pv[e.Stamp.Writer] {
			l = append(l, e)
		}
	}
	pSort(l)
	covers := VersionVector{}
	for w, t := range md.version {
		if t > pv[w] {
			covers[w] = t
		}
	}
	if limit <= 0 || len(l) <= limit {
		return l, covers, 0
	}
	cut := max(l[limit].Stamp.Time-1, l[0].Stamp.Time)
	var es []pentry
	for _, e := range l {
		if e.Stamp.Time <= cut {
			es = append(es, e)
		}
	}
	for w, t := range covers {
		covers[w] = min(t, cut)
	}
	return es, covers, cut
}

// checkInternals verifies what the public API cannot show: the live count;
// that the index, the slots and the free list agree, and so do the
// interned writers; and that each writer's log is sorted by time, lists
// every entry the writer holds exactly once, counts its stale items
// exactly, and is compacted before stale items are the majority.
func checkInternals(t *rapid.T, m *pmap) {
	t.Helper()
	version := m.Version()
	live, used := 0, 0
	free := map[int32]bool{}
	for _, i := range m.free {
		if free[i] || m.slots[i].writer >= 0 {
			t.Fatalf("free list %v names slot %d twice or in use (%+v)", m.free, i, m.slots[i])
		}
		free[i] = true
	}
	for i := range m.slots {
		sl := m.slots[i]
		if sl.writer < 0 {
			if !free[int32(i)] || sl != (slot[string, string]{writer: -1}) {
				t.Fatalf("free slot %d not in the free list %v, or not cleared: %+v", i, m.free, sl)
			}
			continue
		}
		used++
		if j := m.findKey(sl.key); j != int32(i) {
			t.Fatalf("slot %d holds %q, which the index maps to %d", i, sl.key, j)
		}
		if int(sl.writer) >= len(m.ws) || m.ws[sl.writer].id == "" {
			t.Fatalf("slot %d names writer %d, not in use", i, sl.writer)
		}
	}
	if used != m.keys.n {
		t.Fatalf("%d slots in use, index holds %d keys", used, m.keys.n)
	}
	checkIndex(t, &m.keys, m.keyHash)
	checkIndex(t, &m.wids, m.writerHash)
	wfree := map[int32]bool{}
	for _, w := range m.wfree {
		if wfree[w] || m.ws[w].id != "" {
			t.Fatalf("writer free list %v names %d twice or in use", m.wfree, w)
		}
		wfree[w] = true
	}
	for i, w := range m.ws {
		if w.id == "" {
			if !wfree[int32(i)] || w.time != 0 || w.log != nil || w.stale != 0 {
				t.Fatalf("free writer %d not in the free list %v, or not cleared: %+v", i, m.wfree, w)
			}
			continue
		}
		if j := m.findWriter(w.id); j != int32(i) {
			t.Fatalf("writer %d is %q, which the index maps to %d", i, w.id, j)
		}
		if w.time == 0 {
			t.Fatalf("writer %q in use at time 0", w.id)
		}
	}
	if m.wids.n != len(m.ws)-len(m.wfree) {
		t.Fatalf("%d interned writers, %d records in use", m.wids.n, len(m.ws)-len(m.wfree))
	}
	held := map[string]int{}
	for e := range m.All() {
		if !e.Deleted {
			live++
		}
		if version[e.Stamp.Writer] < e.Stamp.Time {
			t.Fatalf("version %v does not cover held %+v", version, e)
		}
		held[e.Stamp.Writer]++
	}
	if live != m.live {
		t.Fatalf("live = %d, %d entries are live", m.live, live)
	}
	for wi, lg := range m.ws {
		w := lg.id
		if w == "" || len(lg.log) == 0 {
			if lg.log != nil {
				t.Fatalf("empty log kept for %s", w)
			}
			continue
		}
		if !slices.IsSortedFunc(lg.log, func(a, b logItem) int { return cmp.Compare(a.time, b.time) }) {
			t.Fatalf("log of %s not sorted: %v", w, lg.log)
		}
		stale, fresh := 0, map[string]bool{}
		for _, it := range lg.log {
			if !m.holds(it, int32(wi)) {
				stale++
			} else if key := m.slots[it.slot].key; fresh[key] {
				t.Fatalf("log of %s lists %v twice", w, it)
			} else {
				fresh[key] = true
			}
		}
		if stale != int(lg.stale) || int(lg.stale)*2 > len(lg.log) {
			t.Fatalf("log of %s: stale count %d, actually %d, of %d items", w, lg.stale, stale, len(lg.log))
		}
		if len(fresh) != held[w] {
			t.Fatalf("log of %s lists %d held entries, map holds %d", w, len(fresh), held[w])
		}
		delete(held, w)
	}
	if len(held) > 0 {
		t.Fatalf("entries of writers without a log: %v", held)
	}
}

// checkIndex verifies a hashIndex: its count, at most half full, every
// position once, and each reachable from its home slot without crossing
// an empty one.
func checkIndex(t *rapid.T, x *hashIndex, hashAt func(int32) uint64) {
	t.Helper()
	n, seen := 0, map[int32]bool{}
	for i, p := range x.pos {
		if p == 0 {
			continue
		}
		n++
		if seen[p-1] {
			t.Fatalf("index lists position %d twice", p-1)
		}
		seen[p-1] = true
		mask := len(x.pos) - 1
		for j := int(hashAt(p-1)) & mask; j != i; j = (j + 1) & mask {
			if x.pos[j] == 0 {
				t.Fatalf("position %d at %d is cut from its home by an empty slot at %d", p-1, i, j)
			}
		}
	}
	if n != x.n || 2*n > len(x.pos) {
		t.Fatalf("index holds %d positions, counts %d, in %d slots", n, x.n, len(x.pos))
	}
}

// pDump lists m's entries by key, for failure messages.
func pDump(m *pmap) []pentry {
	return slices.SortedFunc(m.All(), func(a, b pentry) int { return cmp.Compare(a.Key, b.Key) })
}

func pMatches(t *rapid.T, m *pmap, md *pModel) {
	t.Helper()
	checkInternals(t, m)
	all := maps.Collect(func(yield func(string, pentry) bool) {
		for e := range m.All() {
			if !yield(e.Key, e) {
				return
			}
		}
	})
	if !maps.Equal(all, md.entries) {
		t.Fatalf("entries %v, want %v", all, md.entries)
	}
	live := map[string]string{}
	for k, e := range md.entries {
		if !e.Deleted {
			live[k] = e.Value
		}
	}
	if got := maps.Collect(m.Live()); !maps.Equal(got, live) || m.Len() != len(live) {
		t.Fatalf("Live %v (Len %d), want %v", got, m.Len(), live)
	}
	for _, k := range append(pKeys, "") {
		e, ok := m.Lookup(k)
		want, held := md.entries[k]
		if ok != held || e != want {
			t.Fatalf("Lookup(%q) = %+v, %v; want %+v, %v", k, e, ok, want, held)
		}
		if v, ok := m.Get(k); ok != (held && !want.Deleted) || v != live[k] {
			t.Fatalf("Get(%q) = %q, %v; want %+v", k, v, ok, want)
		}
	}
	if !maps.Equal(m.Version(), md.version) || m.Floor() != md.floor {
		t.Fatalf("version %v floor %d, want %v floor %d", m.Version(), m.Floor(), md.version, md.floor)
	}
}

func TestInternalModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := &pmap{}
		md := &pModel{entries: map[string]pentry{}, version: VersionVector{}}
		t.Repeat(map[string]func(*rapid.T){
			"put": func(t *rapid.T) {
				e := pGenEntry(t)
				var c Change[string, string]
				var won bool
				var err error
				how := rapid.IntRange(0, 2).Draw(t, "how")
				switch how {
				case 0:
					c, won, err = m.Put(e)
				case 1:
					if e.Deleted {
						e.Value = ""
						won, err = m.Delete(e.Key, e.Stamp)
					} else {
						won, err = m.Set(e.Key, e.Value, e.Stamp)
					}
				case 2:
					won, err = m.Apply(e)
				}
				if !pValid(e) {
					if err == nil || won {
						t.Fatalf("bad %+v accepted", e)
					}
					return
				}
				want, wantWon := md.put(e)
				if err != nil || won != wantWon || (how == 0 && c != want) {
					t.Fatalf("Put(%+v) = %+v, %v, %v; want %+v, %v", e, c, won, err, want, wantWon)
				}
			},
			"applyDelta": func(t *rapid.T) {
				var d Delta[string, string]
				ok := true
				for range rapid.IntRange(0, 4).Draw(t, "n") {
					e := pGenEntry(t)
					ok = ok && pValid(e)
					d.Entries = append(d.Entries, e)
				}
				d.Covers = pGenVector(t, "covers")
				switch rapid.IntRange(0, 5).Draw(t, "badCovers") {
				case 0:
					d.Covers[""], ok = 1, false
				case 1:
					d.Covers["w1"], ok = MaxTime+1, false
				case 2:
					d.Covers["w2"] = MaxTime
				}
				var got []Change[string, string]
				var err error
				appended := rapid.Bool().Draw(t, "appendDelta")
				if appended {
					// AppendDelta keeps what the buffer held, and adds the same.
					prefix := []Change[string, string]{{New: pentry{Key: "prefix"}}}
					got, err = m.AppendDelta(prefix, d)
					if err == nil {
						if len(got) == 0 || got[0] != prefix[0] {
							t.Fatalf("AppendDelta lost the buffer's content: %v", got)
						}
						got = got[1:]
						if len(got) == 0 {
							got = nil
						}
					}
				} else {
					got, err = m.ApplyDelta(d)
				}
				if !ok {
					if err == nil || got != nil {
						t.Fatalf("bad delta %+v accepted: %v", d, got)
					}
					return
				}
				var want []Change[string, string]
				for _, e := range d.Entries {
					if c, ok := md.put(e); ok {
						want = append(want, c)
					}
				}
				md.version.Merge(d.Covers)
				if err != nil || !slices.Equal(got, want) {
					t.Fatalf("ApplyDelta(%+v) = %v, %v; want %v", d, got, err, want)
				}
			},
			"merge": func(t *rapid.T) {
				o := &pmap{}
				for range rapid.IntRange(0, 5).Draw(t, "n") {
					o.Apply(pGenEntry(t)) // bad ones are refused
				}
				oc := o.Clone()
				got := map[string]Change[string, string]{}
				for _, c := range m.Merge(o) {
					got[c.New.Key] = c
				}
				want := map[string]Change[string, string]{}
				for _, e := range slices.SortedFunc(o.All(), func(a, b pentry) int { return cmp.Compare(a.Key, b.Key) }) {
					if c, ok := md.put(e); ok {
						want[e.Key] = c
					}
				}
				md.version.Merge(o.Version())
				if !maps.Equal(got, want) || !o.Equal(oc) {
					t.Fatalf("Merge changes %v, want %v", got, want)
				}
			},
			"purge": func(t *rapid.T) {
				drop := map[string]bool{}
				for _, k := range rapid.SliceOfDistinct(rapid.SampledFrom(pKeys), rapid.ID[string]).Draw(t, "keys") {
					drop[k] = true
				}
				want := 0
				for k, e := range md.entries {
					if e.Deleted && drop[k] {
						delete(md.entries, k)
						md.floor = max(md.floor, e.Stamp.Time)
						want++
					}
				}
				if got := m.Purge(func(e pentry) bool { return drop[e.Key] }); got != want {
					t.Fatalf("Purge = %d, want %d", got, want)
				}
			},
			"prune": func(t *rapid.T) {
				holding := map[string]bool{}
				for _, e := range md.entries {
					holding[e.Stamp.Writer] = true
				}
				want := 0
				for w := range md.version {
					if !holding[w] {
						delete(md.version, w)
						want++
					}
				}
				if got := m.PruneVersion(); got != want {
					t.Fatalf("PruneVersion() = %d, want %d", got, want)
				}
			},
			"clone": func(t *rapid.T) {
				c := m.Clone()
				checkInternals(t, c)
				if rapid.Bool().Draw(t, "useClone") {
					m = c
				}
			},
			"delta": func(t *rapid.T) {
				pv := pGenVector(t, "pv")
				limit := rapid.IntRange(-1, 4).Draw(t, "limit")
				d := m.Delta(pv, limit)
				got := slices.Clone(d.Entries)
				if !slices.IsSortedFunc(got, func(a, b pentry) int { return a.Stamp.Compare(b.Stamp) }) {
					t.Fatalf("Delta not stalest first: %v", got)
				}
				pSort(got)
				want, covers, cut := md.delta(pv, limit)
				if !slices.Equal(got, want) || !maps.Equal(d.Covers, covers) || d.Cut != cut {
					t.Fatalf("Delta(%v, %d) = %v %v cut %d; want %v %v cut %d", pv, limit, got, d.Covers, d.Cut, want, covers, cut)
				}
			},
			"": func(t *rapid.T) { pMatches(t, m, md) },
		})
	})
}

// pReplicas runs a random history of replicas that write under their own
// ids with their own clocks and exchange full merges or deltas (cut at a
// random limit when cut is set).
func pReplicas(t *rapid.T, cut bool) []*pmap {
	n := rapid.IntRange(2, 4).Draw(t, "replicas")
	rs := make([]*pmap, n)
	clocks := make([]Clock, n)
	for i := range rs {
		rs[i] = &pmap{}
	}
	maxLimit := 0
	if cut {
		maxLimit = 3
	}
	for range rapid.IntRange(3, 40).Draw(t, "ops") {
		i, j := rapid.IntRange(0, n-1).Draw(t, "i"), rapid.IntRange(0, n-1).Draw(t, "j")
		switch rapid.IntRange(0, 3).Draw(t, "op") {
		case 0, 1:
			e := pentry{Key: rapid.SampledFrom(pKeys).Draw(t, "key"), Stamp: Stamp{clocks[i].Tick(), "r" + strconv.Itoa(i)}, Deleted: rapid.Bool().Draw(t, "del")}
			if won, err := rs[i].Apply(e); !won || err != nil {
				t.Fatalf("own write %+v: %v, %v", e, won, err)
			}
		case 2:
			d := rs[i].Delta(rs[j].Version(), rapid.IntRange(0, maxLimit).Draw(t, "limit"))
			if _, err := rs[j].ApplyDelta(d); err != nil {
				t.Fatal(err)
			}
			for _, e := range d.Entries {
				clocks[j].Observe(e.Stamp.Time)
			}
		case 3:
			rs[j].Merge(rs[i])
			for e := range rs[i].All() {
				clocks[j].Observe(e.Stamp.Time)
			}
		}
	}
	return rs
}

func TestInternalLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rs := pReplicas(t, true)
		a, b, c := rs[0], rs[1], rs[len(rs)-1]
		join := func(x *pmap, ys ...*pmap) *pmap {
			z := x.Clone()
			for _, y := range ys {
				z.Merge(y)
			}
			checkInternals(t, z)
			return z
		}
		same := func(what string, x, y *pmap) {
			if !x.Equal(y) || !y.Equal(x) || !maps.Equal(x.Version(), y.Version()) || x.live != y.live {
				t.Fatalf("%s: %v %v vs %v %v", what, pDump(x), x.Version(), pDump(y), y.Version())
			}
		}
		same("a⊔b = b⊔a", join(a, b), join(b, a))
		same("(a⊔b)⊔c = a⊔(b⊔c)", join(join(a, b), c), join(a, join(b, c)))
		same("a⊔a = a", join(a, a), a)
		if ch := join(a, b).Merge(b); ch != nil {
			t.Fatalf("(a⊔b)⊔b changed %v", ch)
		}
	})
}

func TestInternalDeltaEqualsMerge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rs := pReplicas(t, false)
		a, b := rs[0], rs[1]
		want := b.Clone()
		want.Merge(a)
		got := b.Clone()
		if _, err := got.ApplyDelta(a.Delta(got.Version(), 0)); err != nil {
			t.Fatal(err)
		}
		checkInternals(t, got)
		if !got.Equal(want) || !maps.Equal(got.Version(), want.Version()) {
			t.Fatalf("b+Δ = %v %v, b⊔a = %v %v", pDump(got), got.Version(), pDump(want), want.Version())
		}
		// Cut rounds reach the same state.
		limit := rapid.IntRange(1, 3).Draw(t, "limit")
		cut := b.Clone()
		for round := 0; ; round++ {
			d := a.Delta(cut.Version(), limit)
			if _, err := cut.ApplyDelta(d); err != nil {
				t.Fatal(err)
			}
			if len(d.Entries) == 0 {
				break
			}
			if round > 50 {
				t.Fatalf("cut rounds do not converge")
			}
		}
		if !cut.Equal(want) || !maps.Equal(cut.Version(), want.Version()) {
			t.Fatalf("b+cut Δs = %v %v, b⊔a = %v %v", pDump(cut), cut.Version(), pDump(want), want.Version())
		}
	})
}

func TestInternalConvergence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rs := pReplicas(t, true)
		limit := rapid.IntRange(0, 3).Draw(t, "limit")
		for round := 0; ; round++ {
			quiet := true
			for _, from := range rs {
				for _, to := range rs {
					before := to.Version()
					if ch, _ := to.ApplyDelta(from.Delta(before, limit)); ch != nil || to.Version().Compare(before) != Equal {
						quiet = false
					}
				}
			}
			if quiet {
				break
			}
			if round > 100 {
				t.Fatalf("no quiescence")
			}
		}
		for _, r := range rs[1:] {
			checkInternals(t, r)
			if !r.Equal(rs[0]) || !maps.Equal(r.Version(), rs[0].Version()) {
				t.Fatalf("diverged: %v %v vs %v %v", pDump(r), r.Version(), pDump(rs[0]), rs[0].Version())
			}
		}
	})
}

func TestInternalVectorsAndCounters(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := pGenVector(t, "a"), pGenVector(t, "b")
		leq := func(x, y VersionVector) bool {
			for w, n := range x {
				if n > y[w] {
					return false
				}
			}
			return true
		}
		want := map[[2]bool]Ordering{{true, true}: Equal, {true, false}: Before, {false, true}: After, {false, false}: Concurrent}[[2]bool{leq(a, b), leq(b, a)}]
		if got := a.Compare(b); got != want {
			t.Fatalf("%v.Compare(%v) = %v, want %v", a, b, got, want)
		}
		m := a.Clone()
		m.Merge(b)
		for _, w := range pWriters {
			if m[w] != max(a[w], b[w]) {
				t.Fatalf("%v ⊔ %v = %v", a, b, m)
			}
		}

		var x, y Counters[string]
		for _, k := range pKeys {
			x.Observe(k, rapid.Uint64Range(0, 3).Draw(t, "x"))
			y.Observe(k, rapid.Uint64Range(0, 3).Draw(t, "y"))
		}
		xy, yx := x.Clone(), y.Clone()
		rose := xy.Merge(&y)
		yx.Merge(&x)
		if !xy.Equal(yx) {
			t.Fatalf("counters: x⊔y %v, y⊔x %v", xy.m, yx.m)
		}
		var wantRose []string
		for _, k := range pKeys {
			if xy.Get(k) != max(x.Get(k), y.Get(k)) {
				t.Fatalf("counters: x⊔y[%s] = %d", k, xy.Get(k))
			}
			if y.Get(k) > x.Get(k) {
				wantRose = append(wantRose, k)
			}
		}
		slices.Sort(rose)
		if !slices.Equal(rose, wantRose) {
			t.Fatalf("counters: rose %v, want %v", rose, wantRose)
		}
		viaDelta := y.Clone()
		for k, n := range x.Delta(&y) {
			viaDelta.Observe(k, n)
		}
		if !viaDelta.Equal(yx) {
			t.Fatalf("counters: y+Δ %v, y⊔x %v", viaDelta.m, yx.m)
		}
	})
}
