package property_test

import (
	"testing"

	"github.com/gossipmesh/mesh/crdt"

	"pgregory.net/rapid"
)

// genPair runs a random history over 2..4 replicas (local writes, full
// merges and uncut deltas) and returns two distinct ones. Their version
// vectors are honest: a replica claims a writer's time only if it holds
// each of that writer's writes up to it, or a newer write of the same key.
func genPair(t *rapid.T) (a, b *replica) {
	rs := newReplicas(rapid.IntRange(2, 4).Draw(t, "replicas"))
	randomOps(t, rs, rapid.IntRange(5, 60).Draw(t, "ops"), false)
	i := rapid.IntRange(0, len(rs)-1).Draw(t, "a")
	j := rapid.IntRange(0, len(rs)-2).Draw(t, "b")
	if j >= i {
		j++
	}
	return rs[i], rs[j]
}

// TestDeltaEqualsMerge: b.ApplyDelta(a.Delta(b.Version(), 0)) leaves b as
// b.Merge(a) does, entries, live values, version and reported changes.
func TestDeltaEqualsMerge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genPair(t)
		aBefore := a.m.Clone()

		want := b.m.Clone()
		wantCh := changesByKey(want.Merge(a.m))

		got := b.m.Clone()
		d := a.m.Delta(got.Version(), 0)
		gotCh, err := got.ApplyDelta(d)
		if err != nil {
			t.Fatalf("ApplyDelta: %v", err)
		}
		requireSame(t, "b+Δ vs b⊔a", got, want)
		requireSameVersion(t, "b+Δ vs b⊔a", got, want)
		requireSame(t, "a after Delta", a.m, aBefore)
		requireSane(t, "b+Δ", got)

		if len(gotCh) != len(wantCh) {
			t.Fatalf("delta reported %d changes, merge %d: %v vs %v", len(gotCh), len(wantCh), gotCh, wantCh)
		}
		for _, c := range gotCh {
			if w := wantCh[c.New.Key]; w != c {
				t.Fatalf("delta change %+v, merge change %+v", c, w)
			}
		}
		for i := 1; i < len(d.Entries); i++ {
			if !d.Entries[i-1].Stamp.Less(d.Entries[i].Stamp) {
				t.Fatalf("delta not stalest first: %v", d.Entries)
			}
		}
	})
}

// TestCutDeltaRoundsEqualMerge: repeated rounds of deltas cut at a random
// positive limit reach b.Merge(a); each round respects the limit unless its
// first entries all share one time, and makes progress.
func TestCutDeltaRoundsEqualMerge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genPair(t)
		limit := rapid.IntRange(1, 5).Draw(t, "limit")

		want := b.m.Clone()
		want.Merge(a.m)

		got := b.m.Clone()
		for round := 0; ; round++ {
			if round > 100 {
				t.Fatalf("no convergence after %d rounds: got %s, want %s", round, dump(got), dump(want))
			}
			before := got.Version()
			d := a.m.Delta(before, limit)
			if n := len(d.Entries); n > limit {
				for _, e := range d.Entries {
					if e.Stamp.Time != d.Entries[0].Stamp.Time {
						t.Fatalf("round %d: %d entries over limit %d with different times: %v", round, n, limit, d.Entries)
					}
				}
			}
			if _, err := got.ApplyDelta(d); err != nil {
				t.Fatalf("round %d: ApplyDelta: %v", round, err)
			}
			if len(d.Entries) == 0 {
				break
			}
			if got.Version().Compare(before) != crdt.After {
				t.Fatalf("round %d: delta %v made no progress from %v", round, d.Entries, before)
			}
		}
		requireSame(t, "b after cut rounds vs b⊔a", got, want)
		requireSameVersion(t, "b after cut rounds vs b⊔a", got, want)
	})
}

// TestCutDeltaMissesOnlySupersededWrites pins down what delta ≡ merge
// becomes once partners have exchanged cut deltas. A cut delta raises the
// partner's vector to T for every lagging writer, but the sender only holds
// the newest write of each key: a write at or below T that the sender has
// overwritten with a newer one above T is claimed without being sent. So
// b.ApplyDelta(a.Delta(b.Version(), 0)) can lack a write of a that
// b.Merge(a) takes; this checks that every such write is superseded in the
// join of all replicas, so it is not needed for convergence (which
// TestConvergence checks with cut deltas).
func TestCutDeltaMissesOnlySupersededWrites(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rs := newReplicas(rapid.IntRange(2, 4).Draw(t, "replicas"))
		randomOps(t, rs, rapid.IntRange(5, 60).Draw(t, "ops"), true)
		a, b := rs[0], rs[1]
		merged := b.m.Clone()
		merged.Merge(a.m)
		viaDelta := b.m.Clone()
		if _, err := viaDelta.ApplyDelta(a.m.Delta(viaDelta.Version(), 0)); err != nil {
			t.Fatal(err)
		}
		all := &smap{}
		for _, r := range rs {
			all.Merge(r.m)
		}
		for e := range merged.All() {
			got, ok := viaDelta.Lookup(e.Key)
			if ok && got == e {
				continue
			}
			if winner, _ := all.Lookup(e.Key); !e.Stamp.Less(winner.Stamp) {
				t.Fatalf("b+Δ holds %+v (held %v) for %q; b⊔a holds %+v, which is the global winner:\n b+Δ %s\n b⊔a %s",
					got, ok, e.Key, e, dump(viaDelta), dump(merged))
			}
		}
		for e := range viaDelta.All() {
			if got, ok := merged.Lookup(e.Key); !ok || got.Stamp.Less(e.Stamp) {
				t.Fatalf("b+Δ holds %+v, newer than b⊔a's %+v", e, got)
			}
		}
	})
}
