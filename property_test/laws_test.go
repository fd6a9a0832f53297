package property_test

import (
	"testing"

	"github.com/gossipmesh/mesh/crdt"
	"pgregory.net/rapid"
)

// join returns a clone of a merged with each of os in turn.
func join(a *smap, os ...*smap) *smap {
	c := a.Clone()
	for _, o := range os {
		c.Merge(o)
	}
	return c
}

func TestMergeCommutative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		u := genUniverse(t, "writes")
		a, b := genState(t, u, "a"), genState(t, u, "b")
		ab, ba := join(a, b), join(b, a)
		requireSame(t, "a⊔b vs b⊔a", ab, ba)
		requireSameVersion(t, "a⊔b vs b⊔a", ab, ba)
		requireSane(t, "a⊔b", ab)
	})
}

func TestMergeAssociative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		u := genUniverse(t, "writes")
		a, b, c := genState(t, u, "a"), genState(t, u, "b"), genState(t, u, "c")
		left := join(join(a, b), c)
		right := join(a, join(b, c))
		requireSame(t, "(a⊔b)⊔c vs a⊔(b⊔c)", left, right)
		requireSameVersion(t, "(a⊔b)⊔c vs a⊔(b⊔c)", left, right)
	})
}

func TestMergeIdempotent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		u := genUniverse(t, "writes")
		a, b := genState(t, u, "a"), genState(t, u, "b")

		aa := a.Clone()
		if ch := aa.Merge(a); len(ch) != 0 {
			t.Fatalf("a⊔a reported changes %v", ch)
		}
		requireSame(t, "a⊔a vs a", aa, a)
		requireSameVersion(t, "a⊔a vs a", aa, a)

		ab := join(a, b)
		abb := ab.Clone()
		if ch := abb.Merge(b); len(ch) != 0 {
			t.Fatalf("(a⊔b)⊔b reported changes %v", ch)
		}
		requireSame(t, "(a⊔b)⊔b vs a⊔b", abb, ab)

		// Merging with oneself in place is a no-op too.
		self := a.Clone()
		if ch := self.Merge(self); len(ch) != 0 {
			t.Fatalf("m.Merge(m) reported changes %v", ch)
		}
		requireSame(t, "m.Merge(m) vs m", self, a)
	})
}

// TestMergeIsPerKeyMax checks Merge against its definition: per key, the
// entry with the greatest stamp; the version is the pointwise maximum; the
// changes returned are exactly the keys whose winning entry changed, with
// the right old and new entries; and o is not modified.
func TestMergeIsPerKeyMax(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		u := genUniverse(t, "writes")
		a, b := genState(t, u, "a"), genState(t, u, "b")
		bBefore := b.Clone()

		want := map[string]entry{}
		for _, m := range []*smap{a, b} {
			for e := range m.All() {
				if w, ok := want[e.Key]; !ok || w.Stamp.Less(e.Stamp) {
					want[e.Key] = e
				}
			}
		}
		wantVersion := a.Version()
		wantVersion.Merge(b.Version())

		got := a.Clone()
		changes := changesByKey(got.Merge(b))
		requireSame(t, "b after a.Merge(b)", b, bBefore)
		requireSane(t, "a⊔b", got)

		n := 0
		for e := range got.All() {
			n++
			if w := want[e.Key]; w != e {
				t.Fatalf("a⊔b holds %+v for %q, want %+v", e, e.Key, w)
			}
		}
		if n != len(want) {
			t.Fatalf("a⊔b holds %d entries, want %d: %s", n, len(want), dump(got))
		}
		if gv := got.Version(); gv.Compare(wantVersion) != crdt.Equal {
			t.Fatalf("version of a⊔b = %v, want %v", gv, wantVersion)
		}

		for _, k := range keys {
			old, hadOld := a.Lookup(k)
			now, _ := got.Lookup(k)
			c, reported := changes[k]
			switch {
			case reported != (old != now): // a held entry is never the zero Entry
				t.Fatalf("key %q: old %+v (had %v), new %+v: reported=%v", k, old, hadOld, now, reported)
			case reported && (c.Old != old || c.HadOld != hadOld || c.New != now):
				t.Fatalf("key %q: change %+v, want old %+v (had %v) new %+v", k, c, old, hadOld, now)
			}
		}
	})
}

// TestApplyOrderIrrelevant checks that applying the same writes one by one
// in two random orders gives the same state: the per-write form of
// commutativity that deltas rely on.
func TestApplyOrderIrrelevant(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		u := genUniverse(t, "writes")
		perm := rapid.Permutation(u).Draw(t, "perm")
		a, b := &smap{}, &smap{}
		for i := range u {
			if _, err := a.Apply(u[i]); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Apply(perm[i]); err != nil {
				t.Fatal(err)
			}
		}
		requireSame(t, "two orders", a, b)
		requireSameVersion(t, "two orders", a, b)
	})
}
