package property_test

import (
	"cmp"
	"errors"
	"maps"
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/gossipmesh/mesh/crdt"
	"pgregory.net/rapid"
)

// model is the dumb reference for crdt.Map: a plain Go map of winning
// entries, a version vector and a floor, with the rules of the package doc
// spelled out one by one.
type model struct {
	entries map[string]entry
	version map[string]uint64
	floor   uint64
}

func newModel() *model {
	return &model{entries: map[string]entry{}, version: map[string]uint64{}}
}

func (md *model) clone() *model {
	return &model{entries: maps.Clone(md.entries), version: maps.Clone(md.version), floor: md.floor}
}

func valid(e entry) bool {
	return e.Key != "" && e.Stamp.Time >= 1 && e.Stamp.Time <= crdt.MaxTime && e.Stamp.Writer != ""
}

func (md *model) observe(w string, t uint64) {
	if t > md.version[w] {
		md.version[w] = t
	}
}

// put is the merge rule: the greater stamp wins; a tie keeps what is there;
// a key not held is refused at or below the floor.
func (md *model) put(e entry) (change, bool) {
	md.observe(e.Stamp.Writer, e.Stamp.Time)
	old, had := md.entries[e.Key]
	switch {
	case had && !old.Stamp.Less(e.Stamp):
		return change{}, false
	case !had && e.Stamp.Time <= md.floor:
		return change{}, false
	}
	md.entries[e.Key] = e
	return change{Old: old, New: e, HadOld: had}, true
}

func (md *model) live() map[string]string {
	out := map[string]string{}
	for k, e := range md.entries {
		if !e.Deleted {
			out[k] = e.Value
		}
	}
	return out
}

// delta is the spec of Map.Delta: every held entry newer than pv claims for
// its writer, stalest first, covering our time of every writer pv lags on.
// With a limit, it holds everything up to the largest time T at which at
// most limit entries are included (or, if the first limit+1 share one
// time, everything at that time), claims at most T, and reports T as Cut.
func (md *model) delta(pv crdt.VersionVector, limit int) (es []entry, covers map[string]uint64, cut uint64) {
	var l []entry
	for _, e := range md.entries {
		if e.Stamp.Time > pv[e.Stamp.Writer] {
			l = append(l, e)
		}
	}
	sortEntries(l)
	covers = map[string]uint64{}
	for w, t := range md.version {
		if t > pv[w] {
			covers[w] = t
		}
	}
	if limit <= 0 || len(l) <= limit {
		return l, covers, 0
	}
	cut = l[limit].Stamp.Time - 1
	if l[0].Stamp.Time > cut {
		cut = l[0].Stamp.Time
	}
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

// sortEntries orders by stamp, then key: the model may hold one stamp
// under two keys (random input), where Delta's order is unspecified.
func sortEntries(es []entry) {
	slices.SortFunc(es, func(a, b entry) int {
		if c := a.Stamp.Compare(b.Stamp); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
}

// genAnyEntry draws mostly valid entries, sometimes with an empty key, a
// time of 0, exactly MaxTime, above MaxTime, or an empty writer.
func genAnyEntry() *rapid.Generator[entry] {
	return rapid.Custom(func(t *rapid.T) entry {
		e := genWrite().Draw(t, "entry")
		switch rapid.IntRange(0, 11).Draw(t, "bad") {
		case 0:
			e.Key = ""
		case 1:
			e.Stamp.Time = 0
		case 2:
			e.Stamp.Time = rapid.SampledFrom([]uint64{crdt.MaxTime + 1, math.MaxUint64}).Draw(t, "absurd")
		case 3:
			e.Stamp.Writer = ""
		case 4:
			e.Stamp.Time = crdt.MaxTime
		}
		return e
	})
}

// genAnyVector draws a Covers vector, sometimes with an empty writer or a
// time above MaxTime.
func genAnyVector() *rapid.Generator[crdt.VersionVector] {
	return rapid.Custom(func(t *rapid.T) crdt.VersionVector {
		v := genVector("covers").Draw(t, "covers")
		switch rapid.IntRange(0, 7).Draw(t, "badCovers") {
		case 0:
			v[""] = rapid.Uint64Range(0, 3).Draw(t, "t")
		case 1:
			v[rapid.SampledFrom(writers).Draw(t, "w")] = rapid.SampledFrom([]uint64{crdt.MaxTime + 1, math.MaxUint64}).Draw(t, "absurd")
		}
		return v
	})
}

func coversValid(v crdt.VersionVector) bool {
	for w, t := range v {
		if w == "" || t > crdt.MaxTime {
			return false
		}
	}
	return true
}

type snapshot struct {
	m  *smap
	md *model
}

// mapMachine drives a crdt.Map and the model with the same operations.
type mapMachine struct {
	m     *smap
	md    *model
	snaps []snapshot
}

func (s *mapMachine) expectWrite(t *rapid.T, op string, e entry, won bool, err error) {
	if !valid(e) {
		if !errors.Is(err, crdt.ErrInvalidEntry) || won {
			t.Fatalf("%s(%+v) = %v, %v; want an ErrInvalidEntry", op, e, won, err)
		}
		return
	}
	_, want := s.md.put(e)
	if err != nil || won != want {
		t.Fatalf("%s(%+v) = %v, %v; want %v, nil", op, e, won, err, want)
	}
}

func (s *mapMachine) Set(t *rapid.T) {
	e := genAnyEntry().Draw(t, "e")
	e.Deleted = false
	won, err := s.m.Set(e.Key, e.Value, e.Stamp)
	s.expectWrite(t, "Set", e, won, err)
}

func (s *mapMachine) Delete(t *rapid.T) {
	e := genAnyEntry().Draw(t, "e")
	e.Deleted, e.Value = true, ""
	won, err := s.m.Delete(e.Key, e.Stamp)
	s.expectWrite(t, "Delete", e, won, err)
}

func (s *mapMachine) Apply(t *rapid.T) {
	e := genAnyEntry().Draw(t, "e")
	won, err := s.m.Apply(e)
	s.expectWrite(t, "Apply", e, won, err)
}

func (s *mapMachine) Put(t *rapid.T) {
	e := genAnyEntry().Draw(t, "e")
	c, won, err := s.m.Put(e)
	if !valid(e) {
		if !errors.Is(err, crdt.ErrInvalidEntry) || won || c != (change{}) {
			t.Fatalf("Put(%+v) = %+v, %v, %v; want an ErrInvalidEntry", e, c, won, err)
		}
		return
	}
	want, wantWon := s.md.put(e)
	if err != nil || won != wantWon || c != want {
		t.Fatalf("Put(%+v) = %+v, %v, %v; want %+v, %v, nil", e, c, won, err, want, wantWon)
	}
}

func (s *mapMachine) ApplyDelta(t *rapid.T) {
	d := delta{
		Entries: rapid.SliceOfN(genAnyEntry(), 0, 5).Draw(t, "entries"),
		Covers:  genAnyVector().Draw(t, "covers"),
	}
	ok := coversValid(d.Covers)
	for _, e := range d.Entries {
		ok = ok && valid(e)
	}
	got, err := s.m.ApplyDelta(d)
	if !ok {
		if !errors.Is(err, crdt.ErrInvalidEntry) || got != nil {
			t.Fatalf("ApplyDelta(%+v) = %v, %v; want an ErrInvalidEntry", d, got, err)
		}
		return // Check compares with the unchanged model
	}
	var want []change
	for _, e := range d.Entries {
		if c, ok := s.md.put(e); ok {
			want = append(want, c)
		}
	}
	for w, t := range d.Covers {
		s.md.observe(w, t)
	}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("ApplyDelta(%+v) = %v, %v; want %v, nil", d, got, err, want)
	}
}

func (s *mapMachine) Merge(t *rapid.T) {
	o := &smap{}
	if _, err := o.ApplyDelta(delta{Entries: rapid.SliceOfN(genWrite(), 0, 6).Draw(t, "other")}); err != nil {
		t.Fatal(err)
	}
	oBefore := o.Clone()
	got := changesByKey(s.m.Merge(o))
	want := map[string]change{}
	for _, e := range slices.SortedFunc(o.All(), func(a, b entry) int { return cmp.Compare(a.Key, b.Key) }) {
		if c, ok := s.md.put(e); ok {
			want[e.Key] = c
		}
	}
	for w, t := range o.Version() {
		s.md.observe(w, t)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("Merge(%s) changes %v, want %v", dump(oBefore), got, want)
	}
	requireSame(t, "Merge's argument", o, oBefore)
}

func (s *mapMachine) Purge(t *rapid.T) {
	drop := map[string]bool{}
	for _, k := range rapid.SliceOfDistinct(rapid.SampledFrom(keys), rapid.ID[string]).Draw(t, "keys") {
		drop[k] = true
	}
	want := 0
	for k, e := range s.md.entries {
		if e.Deleted && drop[k] {
			delete(s.md.entries, k)
			s.md.floor = max(s.md.floor, e.Stamp.Time)
			want++
		}
	}
	if got := s.m.Purge(func(e entry) bool { return drop[e.Key] }); got != want {
		t.Fatalf("Purge(%v) = %d, want %d", drop, got, want)
	}
}

func (s *mapMachine) PruneVersion(t *rapid.T) {
	holding := map[string]bool{}
	for _, e := range s.md.entries {
		holding[e.Stamp.Writer] = true
	}
	want := 0
	for w := range s.md.version {
		if !holding[w] {
			delete(s.md.version, w)
			want++
		}
	}
	if got := s.m.PruneVersion(); got != want {
		t.Fatalf("PruneVersion() = %d, want %d", got, want)
	}
}

func (s *mapMachine) Clone(t *rapid.T) {
	if len(s.snaps) >= 3 {
		s.snaps = s.snaps[1:]
	}
	s.snaps = append(s.snaps, snapshot{s.m.Clone(), s.md.clone()})
	if rapid.Bool().Draw(t, "continueOnClone") {
		// Carry on with the clone, leaving the original as the snapshot.
		s.m, s.snaps[len(s.snaps)-1].m = s.snaps[len(s.snaps)-1].m, s.m
	}
}

func (s *mapMachine) Delta(t *rapid.T) {
	pv := genVector("pv").Draw(t, "pv")
	limit := rapid.IntRange(-1, 4).Draw(t, "limit")
	d := s.m.Delta(pv, limit)
	wantEntries, wantCovers, wantCut := s.md.delta(pv, limit)
	got := slices.Clone(d.Entries)
	for i := 1; i < len(got); i++ {
		if got[i].Stamp.Less(got[i-1].Stamp) {
			t.Fatalf("Delta(%v, %d) not stalest first: %v", pv, limit, got)
		}
	}
	sortEntries(got)
	if !slices.Equal(got, wantEntries) || !maps.Equal(d.Covers, wantCovers) || d.Cut != wantCut {
		t.Fatalf("Delta(%v, %d) = %v covering %v cut %d\nwant %v covering %v cut %d\nstate %s",
			pv, limit, got, d.Covers, d.Cut, wantEntries, wantCovers, wantCut, dump(s.m))
	}
}

func (s *mapMachine) Check(t *rapid.T) {
	matches(t, "map", s.m, s.md)
	for i, sn := range s.snaps {
		matches(t, "snapshot "+strconv.Itoa(i), sn.m, sn.md)
	}
}

func matches(t *rapid.T, what string, m *smap, md *model) {
	t.Helper()
	if m.Len() != len(md.live()) {
		t.Fatalf("%s: Len() = %d, want %d: %s", what, m.Len(), len(md.live()), dump(m))
	}
	if got := liveOf(m); !maps.Equal(got, md.live()) {
		t.Fatalf("%s: Live() = %v, want %v", what, got, md.live())
	}
	all := map[string]entry{}
	for e := range m.All() {
		all[e.Key] = e
	}
	if !maps.Equal(all, md.entries) {
		t.Fatalf("%s: All() = %v, want %v", what, all, md.entries)
	}
	for _, k := range append([]string{""}, keys...) {
		want, held := md.entries[k]
		if e, ok := m.Lookup(k); ok != held || e != want {
			t.Fatalf("%s: Lookup(%q) = %+v, %v; want %+v, %v", what, k, e, ok, want, held)
		}
		if v, ok := m.Get(k); ok != (held && !want.Deleted) || (ok && v != want.Value) {
			t.Fatalf("%s: Get(%q) = %q, %v; model holds %+v", what, k, v, ok, want)
		}
	}
	if v := m.Version(); !maps.Equal(v, md.version) {
		t.Fatalf("%s: Version() = %v, want %v", what, v, md.version)
	}
	if m.Floor() != md.floor {
		t.Fatalf("%s: Floor() = %d, want %d", what, m.Floor(), md.floor)
	}
}

func TestMapMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := &mapMachine{m: &smap{}, md: newModel()}
		t.Repeat(rapid.StateMachineActions(s))
	})
}
