package crdt_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/gossipmesh/mesh/crdt"
)

func mustWin(t *testing.T, m *smap, e entry) {
	t.Helper()
	if won, err := m.Apply(e); !won || err != nil {
		t.Fatalf("Apply(%+v) = %v, %v; want true, nil", e, won, err)
	}
}

func TestMapSetDeleteGet(t *testing.T) {
	m := &smap{}
	if won, err := m.Set("k", "v1", st(2, "a")); !won || err != nil {
		t.Fatalf("Set = %v, %v", won, err)
	}
	if v, ok := m.Get("k"); !ok || v != "v1" || m.Len() != 1 {
		t.Fatalf("Get = %q, %v; Len %d", v, ok, m.Len())
	}
	// Older and equal stamps lose; the writer breaks a time tie.
	for _, s := range []crdt.Stamp{st(1, "z"), st(2, "a"), st(2, "")} {
		if won, _ := m.Set("k", "lost", s); won {
			t.Fatalf("Set at %v won over 2@a", s)
		}
	}
	if won, _ := m.Set("k", "v2", st(2, "b")); !won {
		t.Fatalf("Set at 2@b lost to 2@a")
	}
	// A tombstone with an older stamp loses; a newer one wins.
	if won, _ := m.Delete("k", st(2, "a")); won {
		t.Fatalf("older Delete won")
	}
	if won, _ := m.Delete("k", st(3, "a")); !won {
		t.Fatalf("newer Delete lost")
	}
	if _, ok := m.Get("k"); ok || m.Len() != 0 {
		t.Fatalf("deleted key still live (Len %d)", m.Len())
	}
	if e, ok := m.Lookup("k"); !ok || !e.Deleted || e.Stamp != st(3, "a") {
		t.Fatalf("Lookup = %+v, %v", e, ok)
	}
	// Deleting again with a newer stamp keeps Len at 0.
	mustWin(t, m, entry{Key: "k", Stamp: st(4, "a"), Deleted: true})
	if m.Len() != 0 {
		t.Fatalf("Len after second delete = %d", m.Len())
	}
	// A newer value beats the tombstone.
	if won, _ := m.Set("k", "v3", st(5, "c")); !won {
		t.Fatalf("newer Set lost to tombstone")
	}
	if v, ok := m.Get("k"); !ok || v != "v3" || m.Len() != 1 {
		t.Fatalf("Get = %q, %v; Len %d", v, ok, m.Len())
	}
	// Overwriting a live value keeps Len at 1; a tombstone for an absent
	// key is stored but not live.
	mustWin(t, m, entry{Key: "k", Stamp: st(6, "c"), Value: "v4"})
	mustWin(t, m, entry{Key: "other", Stamp: st(1, "c"), Deleted: true})
	if m.Len() != 1 {
		t.Fatalf("Len = %d, want 1", m.Len())
	}
	if _, ok := m.Lookup("absent"); ok {
		t.Fatalf("Lookup of an absent key found it")
	}
	// Losing writes are observed too (1@z lost, but the vector has z:1);
	// the invalid 2@"" was rejected and is not.
	if want := (crdt.VersionVector{"a": 4, "b": 2, "c": 6, "z": 1}); !maps.Equal(m.Version(), want) {
		t.Fatalf("Version = %v, want %v", m.Version(), want)
	}
	v := m.Version()
	v["a"] = 100
	if m.Version()["a"] != 4 {
		t.Fatalf("Version returns shared storage")
	}
}

func TestMapTombstoneKeepsValue(t *testing.T) {
	m := &smap{}
	mustWin(t, m, entry{Key: "k", Stamp: st(1, "a"), Value: "why", Deleted: true})
	if _, ok := m.Get("k"); ok {
		t.Fatalf("tombstone is live")
	}
	if e, _ := m.Lookup("k"); e.Value != "why" {
		t.Fatalf("tombstone lost its value: %+v", e)
	}
	if len(maps.Collect(m.Live())) != 0 {
		t.Fatalf("Live yields a tombstone")
	}
}

func TestMapIterators(t *testing.T) {
	m := &smap{}
	for i := range 6 {
		mustWin(t, m, entry{Key: fmt.Sprint("k", i), Stamp: st(uint64(i+1), "a"), Value: fmt.Sprint(i), Deleted: i%2 == 1})
	}
	live := maps.Collect(m.Live())
	if !maps.Equal(live, map[string]string{"k0": "0", "k2": "2", "k4": "4"}) {
		t.Fatalf("Live = %v", live)
	}
	n := 0
	for range m.All() {
		n++
	}
	if n != 6 {
		t.Fatalf("All yields %d, want 6", n)
	}
	// Early exit stops both iterators.
	n = 0
	for range m.Live() {
		n++
		break
	}
	for range m.All() {
		n++
		break
	}
	if n != 2 {
		t.Fatalf("break did not stop the iterators: %d", n)
	}
}

func TestMapApplyReportsChange(t *testing.T) {
	m := &smap{}
	first := entry{Key: "k", Stamp: st(1, "a"), Value: "v"}
	c, won, err := m.Put(first)
	if !won || err != nil || c.HadOld || c.New != first || c.Old != (entry{}) {
		t.Fatalf("Put(first) = %+v, %v, %v", c, won, err)
	}
	second := entry{Key: "k", Stamp: st(2, "b"), Deleted: true}
	c, won, err = m.Put(second)
	if !won || err != nil || !c.HadOld || c.Old != first || c.New != second {
		t.Fatalf("Put(second) = %+v, %v, %v", c, won, err)
	}
	c, won, err = m.Put(first)
	if won || err != nil || c != (crdt.Change[string, string]{}) {
		t.Fatalf("Put(stale) = %+v, %v, %v", c, won, err)
	}
}

func TestMapMerge(t *testing.T) {
	a, b := &smap{}, &smap{}
	mustWin(t, a, entry{Key: "x", Stamp: st(1, "a"), Value: "a1"})
	mustWin(t, a, entry{Key: "y", Stamp: st(5, "a"), Value: "a5"})
	mustWin(t, b, entry{Key: "x", Stamp: st(2, "b"), Value: "b2"})
	mustWin(t, b, entry{Key: "y", Stamp: st(3, "b"), Deleted: true})
	mustWin(t, b, entry{Key: "z", Stamp: st(4, "b"), Value: "b4"})

	ch := a.Merge(b)
	slices.SortFunc(ch, func(p, q crdt.Change[string, string]) int { return p.New.Stamp.Compare(q.New.Stamp) })
	want := []crdt.Change[string, string]{
		{Old: entry{Key: "x", Stamp: st(1, "a"), Value: "a1"}, New: entry{Key: "x", Stamp: st(2, "b"), Value: "b2"}, HadOld: true},
		{New: entry{Key: "z", Stamp: st(4, "b"), Value: "b4"}},
	}
	if !slices.Equal(ch, want) {
		t.Fatalf("Merge changes = %+v\nwant %+v", ch, want)
	}
	if got := maps.Collect(a.Live()); !maps.Equal(got, map[string]string{"x": "b2", "y": "a5", "z": "b4"}) || a.Len() != 3 {
		t.Fatalf("after Merge: %v (Len %d)", got, a.Len())
	}
	if !maps.Equal(a.Version(), crdt.VersionVector{"a": 5, "b": 4}) {
		t.Fatalf("version after Merge = %v", a.Version())
	}
	if ch := a.Merge(b); ch != nil {
		t.Fatalf("second Merge = %v", ch)
	}
	// Merging into a zero map copies everything.
	var z smap
	if ch := z.Merge(a); len(ch) != 3 || !z.Equal(a) || !maps.Equal(z.Version(), a.Version()) {
		t.Fatalf("zero.Merge(a): %d changes, equal %v", len(ch), z.Equal(a))
	}
}

func TestMapEqual(t *testing.T) {
	a, b := &smap{}, &smap{}
	mustWin(t, a, entry{Key: "k", Stamp: st(1, "a"), Value: "v"})
	mustWin(t, b, entry{Key: "k", Stamp: st(1, "a"), Value: "other value, same write"})
	if !a.Equal(b) {
		t.Fatalf("same stamps should be Equal (values are not compared)")
	}
	c := &smap{}
	mustWin(t, c, entry{Key: "k", Stamp: st(1, "a"), Value: "v", Deleted: true})
	d := &smap{}
	mustWin(t, d, entry{Key: "k", Stamp: st(1, "b"), Value: "v"})
	e := &smap{}
	mustWin(t, e, entry{Key: "j", Stamp: st(1, "a"), Value: "v"})
	for _, o := range []*smap{c, d, e, {}} {
		if a.Equal(o) || o.Equal(a) {
			t.Fatalf("%v Equal %v", collect(a), collect(o))
		}
	}
}

func TestMapClone(t *testing.T) {
	m := fixture(t)
	c := m.Clone()
	requireUnchanged(t, c, m)
	// Writing to the clone leaves the original alone, log included.
	mustWin(t, c, entry{Key: "live", Stamp: st(7, "a"), Value: "changed"})
	mustWin(t, c, entry{Key: "new", Stamp: st(8, "a"), Value: "n"})
	if v, _ := m.Get("live"); v != "v" || m.Len() != 1 {
		t.Fatalf("original changed through its clone")
	}
	if d := m.Delta(nil, 0); len(d.Entries) != 2 {
		t.Fatalf("original's Delta after writing to the clone: %v", d.Entries)
	}
	if c.Floor() != 4 {
		t.Fatalf("Clone floor = %d", c.Floor())
	}
}

// TestPurgeFloor: Purge drops only chosen tombstones, raises the floor to
// the highest purged time, and afterwards refuses writes at or below the
// floor for keys it does not hold, while keys it holds follow the usual rule.
func TestPurgeFloor(t *testing.T) {
	m := &smap{}
	mustWin(t, m, entry{Key: "live", Stamp: st(9, "a"), Value: "v"})
	mustWin(t, m, entry{Key: "held", Stamp: st(1, "a"), Value: "v"})
	mustWin(t, m, entry{Key: "t3", Stamp: st(3, "b"), Deleted: true})
	mustWin(t, m, entry{Key: "t6", Stamp: st(6, "b"), Deleted: true})
	mustWin(t, m, entry{Key: "t8", Stamp: st(8, "b"), Deleted: true})
	offered := map[string]bool{}
	n := m.Purge(func(e entry) bool {
		offered[e.Key] = true
		return e.Key != "t8"
	})
	if n != 2 || m.Floor() != 6 {
		t.Fatalf("Purge = %d, floor %d; want 2, 6", n, m.Floor())
	}
	if !maps.Equal(offered, map[string]bool{"t3": true, "t6": true, "t8": true}) {
		t.Fatalf("Purge offered %v, want only the tombstones", offered)
	}
	for k, held := range map[string]bool{"t3": false, "t6": false, "t8": true, "live": true, "held": true} {
		if _, ok := m.Lookup(k); ok != held {
			t.Fatalf("after Purge, Lookup(%q) held = %v, want %v", k, ok, held)
		}
	}
	for _, tc := range []struct {
		e   entry
		won bool
	}{
		{entry{Key: "t6", Stamp: st(6, "z"), Value: "same time, higher writer"}, false},
		{entry{Key: "t3", Stamp: st(5, "a"), Value: "stale"}, false},
		{entry{Key: "fresh", Stamp: st(6, "a"), Value: "at the floor"}, false},
		{entry{Key: "held", Stamp: st(2, "a"), Value: "held keys ignore the floor"}, true},
		{entry{Key: "t6", Stamp: st(7, "a"), Value: "above the floor"}, true},
	} {
		if won, err := m.Apply(tc.e); won != tc.won || err != nil {
			t.Errorf("Apply(%+v) = %v, %v; want %v", tc.e, won, err, tc.won)
		}
	}
	// A lower floor never lowers it.
	mustWin(t, m, entry{Key: "t1", Stamp: st(7, "c"), Deleted: true})
	m.Purge(func(e entry) bool { return e.Key == "t1" })
	mustWin(t, m, entry{Key: "t0", Stamp: st(8, "d"), Deleted: true})
	if m.Floor() != 7 {
		t.Fatalf("floor = %d, want 7", m.Floor())
	}
	mustWin(t, m, entry{Key: "held", Stamp: st(3, "d"), Deleted: true}) // held: below the floor is fine
	m.Purge(func(e entry) bool { return e.Key == "held" || e.Key == "t0" })
	if m.Floor() != 8 {
		t.Fatalf("floor = %d, want 8", m.Floor())
	}
	m.Purge(func(e entry) bool { return e.Key == "t8" })
	if m.Floor() != 8 {
		t.Fatalf("floor = %d, want 8", m.Floor())
	}
	// Delta and Merge go through the same rule.
	stale := &smap{}
	mustWin(t, stale, entry{Key: "t3", Stamp: st(4, "q"), Value: "stale"})
	if ch := m.Merge(stale); ch != nil {
		t.Fatalf("Merge of a stale state changed %v", ch)
	}
	if ch, _ := m.ApplyDelta(stale.Delta(nil, 0)); ch != nil {
		t.Fatalf("ApplyDelta of a stale state changed %v", ch)
	}
}

func TestDeltaBasics(t *testing.T) {
	m := &smap{}
	mustWin(t, m, entry{Key: "a1", Stamp: st(1, "a"), Value: "v"})
	mustWin(t, m, entry{Key: "b2", Stamp: st(2, "b"), Value: "v"})
	mustWin(t, m, entry{Key: "a3", Stamp: st(3, "a"), Deleted: true})
	mustWin(t, m, entry{Key: "b4", Stamp: st(4, "b"), Value: "v"})
	mustWin(t, m, entry{Key: "a1", Stamp: st(5, "a"), Value: "v2"}) // overwrites 1@a

	keysOf := func(d delta) []string {
		var ks []string
		for _, e := range d.Entries {
			ks = append(ks, e.Key+"@"+e.Stamp.String())
		}
		return ks
	}
	for _, tc := range []struct {
		pv     crdt.VersionVector
		limit  int
		want   []string
		covers crdt.VersionVector
		cut    uint64
	}{
		{nil, 0, []string{"b2@2@b", "a3@3@a", "b4@4@b", "a1@5@a"}, crdt.VersionVector{"a": 5, "b": 4}, 0},
		{crdt.VersionVector{"a": 5, "b": 4}, 0, nil, crdt.VersionVector{}, 0},
		{crdt.VersionVector{"a": 9, "b": 9}, 0, nil, crdt.VersionVector{}, 0},
		{crdt.VersionVector{"a": 3}, 0, []string{"b2@2@b", "b4@4@b", "a1@5@a"}, crdt.VersionVector{"a": 5, "b": 4}, 0},
		{crdt.VersionVector{"a": 4, "b": 2}, 0, []string{"b4@4@b", "a1@5@a"}, crdt.VersionVector{"a": 5, "b": 4}, 0},
		{crdt.VersionVector{"b": 4}, 0, []string{"a3@3@a", "a1@5@a"}, crdt.VersionVector{"a": 5}, 0},
		{nil, -1, []string{"b2@2@b", "a3@3@a", "b4@4@b", "a1@5@a"}, crdt.VersionVector{"a": 5, "b": 4}, 0},
		{nil, 4, []string{"b2@2@b", "a3@3@a", "b4@4@b", "a1@5@a"}, crdt.VersionVector{"a": 5, "b": 4}, 0},
		{nil, 3, []string{"b2@2@b", "a3@3@a", "b4@4@b"}, crdt.VersionVector{"a": 4, "b": 4}, 4},
		{nil, 2, []string{"b2@2@b", "a3@3@a"}, crdt.VersionVector{"a": 3, "b": 3}, 3},
		{nil, 1, []string{"b2@2@b"}, crdt.VersionVector{"a": 2, "b": 2}, 2},
		{crdt.VersionVector{"b": 2}, 1, []string{"a3@3@a"}, crdt.VersionVector{"a": 3, "b": 3}, 3},
	} {
		d := m.Delta(tc.pv, tc.limit)
		if got := keysOf(d); !slices.Equal(got, tc.want) || !maps.Equal(d.Covers, tc.covers) || d.Cut != tc.cut {
			t.Errorf("Delta(%v, %d) = %v covers %v cut %d\nwant %v covers %v cut %d", tc.pv, tc.limit, got, d.Covers, d.Cut, tc.want, tc.covers, tc.cut)
		}
	}
}

// TestDeltaCutSharedTime: when more than limit entries share the lowest
// time they all go, so the partner always progresses; the cut is that time.
func TestDeltaCutSharedTime(t *testing.T) {
	m := &smap{}
	for i, w := range []string{"a", "b", "c", "d"} {
		mustWin(t, m, entry{Key: "k" + w, Stamp: st(2, w), Value: "v"})
		mustWin(t, m, entry{Key: fmt.Sprint("later", i), Stamp: st(uint64(3+i), w), Value: "v"})
	}
	d := m.Delta(nil, 2)
	if len(d.Entries) != 4 || d.Cut != 2 {
		t.Fatalf("Delta(nil, 2) = %v cut %d; want the four entries at time 2", d.Entries, d.Cut)
	}
	for _, e := range d.Entries {
		if e.Stamp.Time != 2 {
			t.Fatalf("entry %+v above the cut", e)
		}
	}
	if want := (crdt.VersionVector{"a": 2, "b": 2, "c": 2, "d": 2}); !maps.Equal(d.Covers, want) {
		t.Fatalf("Covers = %v, want %v", d.Covers, want)
	}
	// Entries at the cut time beyond the limit, after a smaller time: cut before them.
	m2 := &smap{}
	mustWin(t, m2, entry{Key: "first", Stamp: st(1, "a"), Value: "v"})
	for _, w := range []string{"a", "b", "c"} {
		mustWin(t, m2, entry{Key: "k" + w, Stamp: st(5, w), Value: "v"})
	}
	d = m2.Delta(nil, 2)
	if len(d.Entries) != 1 || d.Entries[0].Key != "first" || d.Cut != 4 {
		t.Fatalf("Delta(nil, 2) = %v cut %d; want only first, cut 4", d.Entries, d.Cut)
	}
	if want := (crdt.VersionVector{"a": 4, "b": 4, "c": 4}); !maps.Equal(d.Covers, want) {
		t.Fatalf("Covers = %v, want %v", d.Covers, want)
	}
}

// TestDeltaAfterManyOverwrites: one writer overwriting the same keys many
// times (which compacts its log) still yields exact deltas.
func TestDeltaAfterManyOverwrites(t *testing.T) {
	m := &smap{}
	var c crdt.Clock
	for round := range 50 {
		for _, k := range []string{"x", "y", "z"} {
			mustWin(t, m, entry{Key: k, Stamp: st(c.Tick(), "a"), Value: fmt.Sprint(round)})
		}
		if round%7 == 3 {
			mustWin(t, m, entry{Key: "y", Stamp: st(c.Tick(), "b"), Deleted: true})
		}
	}
	for since := uint64(0); since <= c.Time(); since++ {
		var want []entry
		for e := range m.All() {
			if e.Stamp.Time > since {
				want = append(want, e)
			}
		}
		slices.SortFunc(want, func(p, q entry) int { return p.Stamp.Compare(q.Stamp) })
		d := m.Delta(crdt.VersionVector{"a": since, "b": since}, 0)
		if !slices.Equal(d.Entries, want) {
			t.Fatalf("Delta since %d = %v, want %v", since, d.Entries, want)
		}
	}
	// Purging a tombstone leaves the logs consistent too.
	mustWin(t, m, entry{Key: "z", Stamp: st(c.Tick(), "b"), Deleted: true})
	if n := m.Purge(func(entry) bool { return true }); n != 1 {
		t.Fatalf("Purge = %d, want 1", n)
	}
	if d := m.Delta(nil, 0); len(d.Entries) != 2 || m.Len() != 2 {
		t.Fatalf("after Purge, Delta = %v", d.Entries)
	}
}

// TestDeltaOutOfOrderArrival: entries of one writer arriving out of time
// order (as deltas from different partners do) are still found by Delta.
func TestDeltaOutOfOrderArrival(t *testing.T) {
	m := &smap{}
	for _, tm := range []uint64{5, 2, 9, 1, 7, 3} {
		if _, err := m.ApplyDelta(delta{Entries: []entry{{Key: fmt.Sprint("k", tm), Stamp: st(tm, "a"), Value: "v"}}}); err != nil {
			t.Fatal(err)
		}
	}
	for since, want := range map[uint64]int{0: 6, 1: 5, 2: 4, 3: 3, 4: 3, 5: 2, 6: 2, 7: 1, 8: 1, 9: 0} {
		d := m.Delta(crdt.VersionVector{"a": since}, 0)
		if len(d.Entries) != want {
			t.Errorf("Delta since %d: %d entries, want %d", since, len(d.Entries), want)
		}
		for i := 1; i < len(d.Entries); i++ {
			if !d.Entries[i-1].Stamp.Less(d.Entries[i].Stamp) {
				t.Errorf("Delta since %d not sorted: %v", since, d.Entries)
			}
		}
	}
}

func TestApplyDeltaChangesInOrder(t *testing.T) {
	m := fixture(t)
	d := delta{
		Entries: []entry{
			{Key: "n1", Stamp: st(7, "x"), Value: "1"},
			{Key: "live", Stamp: st(1, "x"), Value: "loses"},
			{Key: "dead", Stamp: st(8, "x"), Value: "back"},
			{Key: "gone", Stamp: st(2, "x"), Value: "below the floor"},
		},
		Covers: crdt.VersionVector{"x": 8, "y": 3},
	}
	ch, err := m.ApplyDelta(d)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range ch {
		got = append(got, fmt.Sprintf("%s:%v:%v", c.New.Key, c.HadOld, c.Old.Stamp))
	}
	if want := []string{"n1:false:0@", "dead:true:5@b"}; !slices.Equal(got, want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
	if want := (crdt.VersionVector{"a": 3, "b": 5, "c": 4, "x": 8, "y": 3}); !maps.Equal(m.Version(), want) {
		t.Fatalf("version %v, want %v", m.Version(), want)
	}
	if m.Len() != 3 {
		t.Fatalf("Len = %d, want 3", m.Len())
	}
	if ch, err := m.ApplyDelta(d); ch != nil || err != nil {
		t.Fatalf("re-applied delta: %v, %v", ch, err)
	}
}
