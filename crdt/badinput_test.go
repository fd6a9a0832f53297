package crdt_test

import (
	"errors"
	"maps"
	"math"
	"testing"

	"github.com/gossipmesh/mesh/crdt"
)

type (
	smap  = crdt.Map[string, string]
	entry = crdt.Entry[string, string]
	delta = crdt.Delta[string, string]
)

func st(t uint64, w string) crdt.Stamp { return crdt.Stamp{Time: t, Writer: w} }

// fixture is a map with a live entry, a tombstone and a purged tombstone
// (floor 4), so bad input has state to corrupt.
func fixture(t *testing.T) *smap {
	t.Helper()
	m := &smap{}
	for _, e := range []entry{
		{Key: "live", Stamp: st(3, "a"), Value: "v"},
		{Key: "dead", Stamp: st(5, "b"), Deleted: true},
		{Key: "gone", Stamp: st(4, "c"), Deleted: true},
	} {
		if won, err := m.Apply(e); !won || err != nil {
			t.Fatalf("Apply(%+v) = %v, %v", e, won, err)
		}
	}
	if n := m.Purge(func(e entry) bool { return e.Key == "gone" }); n != 1 {
		t.Fatalf("Purge = %d, want 1", n)
	}
	return m
}

// requireUnchanged fails unless m equals want in entries, live values,
// length, version and floor.
func requireUnchanged(t *testing.T, m, want *smap) {
	t.Helper()
	if !m.Equal(want) || !maps.Equal(maps.Collect(m.Live()), maps.Collect(want.Live())) ||
		m.Len() != want.Len() || !maps.Equal(m.Version(), want.Version()) || m.Floor() != want.Floor() {
		t.Fatalf("map changed:\n got  %v live %v version %v floor %d\n want %v live %v version %v floor %d",
			collect(m), maps.Collect(m.Live()), m.Version(), m.Floor(),
			collect(want), maps.Collect(want.Live()), want.Version(), want.Floor())
	}
}

func collect(m *smap) map[string]entry {
	out := map[string]entry{}
	for e := range m.All() {
		out[e.Key] = e
	}
	return out
}

var badEntries = []struct {
	name string
	e    entry
}{
	{"empty key", entry{Key: "", Stamp: st(9, "a"), Value: "v"}},
	{"empty key tombstone", entry{Key: "", Stamp: st(9, "a"), Deleted: true}},
	{"time 0", entry{Key: "k", Stamp: st(0, "a"), Value: "v"}},
	{"time MaxTime+1", entry{Key: "k", Stamp: st(crdt.MaxTime+1, "a"), Value: "v"}},
	{"time MaxUint64", entry{Key: "live", Stamp: st(math.MaxUint64, "a"), Value: "v"}},
	{"empty writer", entry{Key: "live", Stamp: st(9, ""), Value: "v"}},
	{"zero stamp", entry{Key: "k", Value: "v"}},
}

// TestBadEntriesRejected: every way in (Set, Delete, Apply, Put,
// ApplyDelta) rejects a bad entry with an error wrapping ErrInvalidEntry
// and leaves the map as it was.
func TestBadEntriesRejected(t *testing.T) {
	good := entry{Key: "new", Stamp: st(9, "a"), Value: "v"}
	for _, tc := range badEntries {
		t.Run(tc.name, func(t *testing.T) {
			ways := map[string]func(m *smap) (bool, error){
				"Set":    func(m *smap) (bool, error) { return m.Set(tc.e.Key, tc.e.Value, tc.e.Stamp) },
				"Delete": func(m *smap) (bool, error) { return m.Delete(tc.e.Key, tc.e.Stamp) },
				"Apply":  func(m *smap) (bool, error) { return m.Apply(tc.e) },
				"Put": func(m *smap) (bool, error) {
					c, won, err := m.Put(tc.e)
					if c != (crdt.Change[string, string]{}) {
						t.Errorf("Put returned change %+v with an error", c)
					}
					return won, err
				},
				"ApplyDelta": func(m *smap) (bool, error) {
					// The bad entry comes after a good one: nothing may be applied.
					ch, err := m.ApplyDelta(delta{Entries: []entry{good, tc.e}, Covers: crdt.VersionVector{"a": 9}})
					return ch != nil, err
				},
			}
			for way, f := range ways {
				m := fixture(t)
				before := m.Clone()
				won, err := f(m)
				if won || !errors.Is(err, crdt.ErrInvalidEntry) {
					t.Errorf("%s(%+v) = %v, %v; want false, an ErrInvalidEntry", way, tc.e, won, err)
				}
				requireUnchanged(t, m, before)
			}
		})
	}
}

func TestBadEntryErrorsNameTheProblem(t *testing.T) {
	for _, tc := range []struct {
		e    entry
		want string
	}{
		{entry{Stamp: st(9, "a")}, `crdt: invalid entry: empty key at stamp 9@a`},
		{entry{Key: "k", Stamp: st(0, "a")}, `crdt: invalid entry: key k: stamp 0@a: time must be at least 1`},
		{entry{Key: "k", Stamp: st(math.MaxUint64, "a")}, `crdt: invalid entry: key k: stamp 18446744073709551615@a: time above MaxTime (9223372036854775807)`},
		{entry{Key: "k", Stamp: st(1, "")}, `crdt: invalid entry: key k: stamp 1@: empty writer`},
	} {
		m := &smap{}
		if _, err := m.Apply(tc.e); err == nil || err.Error() != tc.want {
			t.Errorf("Apply(%+v) error %q, want %q", tc.e, err, tc.want)
		}
	}
}

// TestTimeBounds: 1 and MaxTime are the extreme valid times.
func TestTimeBounds(t *testing.T) {
	m := &smap{}
	for _, e := range []entry{{Key: "lo", Stamp: st(1, "a")}, {Key: "hi", Stamp: st(crdt.MaxTime, "a")}} {
		if won, err := m.Apply(e); !won || err != nil {
			t.Errorf("Apply(%+v) = %v, %v; want true, nil", e, won, err)
		}
	}
	if crdt.MaxTime != 1<<63-1 {
		t.Errorf("MaxTime = %d, want 2^63-1", uint64(crdt.MaxTime))
	}
	if got := m.Version()["a"]; got != crdt.MaxTime {
		t.Errorf("version[a] = %d, want MaxTime", got)
	}
}

// TestBadCoversRejected: a Covers vector with an empty writer or a time
// above MaxTime is rejected like a bad entry, even when the entries are
// fine, and nothing is applied.
func TestBadCoversRejected(t *testing.T) {
	good := []entry{{Key: "new", Stamp: st(9, "a"), Value: "v"}}
	for name, covers := range map[string]crdt.VersionVector{
		"empty writer":      {"": 1},
		"empty writer at 0": {"": 0, "a": 9},
		"above MaxTime":     {"a": crdt.MaxTime + 1},
		"MaxUint64":         {"b": math.MaxUint64},
	} {
		for _, entries := range [][]entry{nil, good} {
			m := fixture(t)
			before := m.Clone()
			ch, err := m.ApplyDelta(delta{Entries: entries, Covers: covers})
			if ch != nil || !errors.Is(err, crdt.ErrInvalidEntry) {
				t.Errorf("%s: ApplyDelta(%v, covers %v) = %v, %v; want nil, an ErrInvalidEntry", name, entries, covers, ch, err)
			}
			requireUnchanged(t, m, before)
		}
	}
	// MaxTime itself is a valid claim.
	m := &smap{}
	if _, err := m.ApplyDelta(delta{Covers: crdt.VersionVector{"a": crdt.MaxTime}}); err != nil {
		t.Errorf("ApplyDelta with Covers at MaxTime: %v", err)
	}
	if m.Version()["a"] != crdt.MaxTime {
		t.Errorf("version after Covers at MaxTime: %v", m.Version())
	}
}

// TestDuplicatesInOneDelta: a key repeated in one delta ends at its
// greatest stamp whatever the order, and a repeated writer in Covers cannot
// occur (VersionVector is a map; wire decoders take the maximum).
func TestDuplicatesInOneDelta(t *testing.T) {
	older := entry{Key: "k", Stamp: st(2, "a"), Value: "old"}
	newer := entry{Key: "k", Stamp: st(3, "a"), Value: "new"}
	for _, order := range [][]entry{{older, newer}, {newer, older}, {newer, newer, older, newer}} {
		m := &smap{}
		ch, err := m.ApplyDelta(delta{Entries: order})
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := m.Get("k"); v != "new" || m.Len() != 1 {
			t.Errorf("after %v: Get(k) = %q, Len %d", order, v, m.Len())
		}
		if last := ch[len(ch)-1]; last.New != newer {
			t.Errorf("after %v: last change %+v", order, last)
		}
	}
}

// TestConflictingSameStamp documents that a stamp names one write: an entry
// whose stamp equals the held one but whose content differs (which no
// correct writer produces) is ignored, not an error, and changes nothing.
func TestConflictingSameStamp(t *testing.T) {
	m := fixture(t)
	before := m.Clone()
	for _, e := range []entry{
		{Key: "live", Stamp: st(3, "a"), Value: "other"},
		{Key: "live", Stamp: st(3, "a"), Deleted: true},
		{Key: "dead", Stamp: st(5, "b"), Value: "alive again"},
	} {
		if won, err := m.Apply(e); won || err != nil {
			t.Errorf("Apply(%+v) = %v, %v; want false, nil", e, won, err)
		}
		if ch, err := m.ApplyDelta(delta{Entries: []entry{e}}); ch != nil || err != nil {
			t.Errorf("ApplyDelta(%+v) = %v, %v; want nil, nil", e, ch, err)
		}
	}
	requireUnchanged(t, m, before)
}

// TestClockClamps: a received time above MaxTime is clamped, and Tick
// saturates at MaxTime instead of wrapping to 0.
func TestClockClamps(t *testing.T) {
	var c crdt.Clock
	c.Observe(math.MaxUint64)
	if c.Time() != crdt.MaxTime {
		t.Fatalf("Observe(MaxUint64): Time() = %d, want MaxTime", c.Time())
	}
	if got := c.Tick(); got != crdt.MaxTime {
		t.Fatalf("Tick at MaxTime = %d, want MaxTime", got)
	}
	c.Observe(3)
	if c.Time() != crdt.MaxTime {
		t.Fatalf("Observe(3) lowered the clock to %d", c.Time())
	}
}

// TestBadInputZeroValues: the zero Map, a nil VersionVector and a zero
// Counters are usable, and merging them changes nothing.
func TestBadInputZeroValues(t *testing.T) {
	m := fixture(t)
	before := m.Clone()
	if ch := m.Merge(&smap{}); ch != nil {
		t.Errorf("Merge(zero) = %v", ch)
	}
	if ch, err := m.ApplyDelta(delta{}); ch != nil || err != nil {
		t.Errorf("ApplyDelta(zero) = %v, %v", ch, err)
	}
	requireUnchanged(t, m, before)

	var z smap
	if d := z.Delta(nil, 0); len(d.Entries) != 0 || len(d.Covers) != 0 {
		t.Errorf("zero map Delta = %+v", d)
	}
	if z.Len() != 0 || z.Floor() != 0 || len(z.Version()) != 0 || z.Purge(func(entry) bool { return true }) != 0 {
		t.Errorf("zero map not empty")
	}
	if _, ok := z.Get("k"); ok {
		t.Errorf("zero map Get found a key")
	}
	if !z.Equal(&smap{}) || z.Equal(m) || m.Equal(&z) {
		t.Errorf("zero map Equal wrong")
	}
	zc := z.Clone()
	if !zc.Equal(&z) {
		t.Errorf("Clone of zero map differs")
	}
	var nilVV crdt.VersionVector
	if c := nilVV.Clone(); c == nil || len(c) != 0 {
		t.Errorf("nil VersionVector Clone = %#v, want empty non-nil", c)
	}
	if !nilVV.Covers(crdt.Stamp{Time: 0, Writer: "x"}) || nilVV.Covers(st(1, "x")) {
		t.Errorf("nil VersionVector Covers wrong")
	}
}
