package property_test

import (
	"maps"
	"testing"

	"github.com/gossipmesh/mesh/crdt"
	"pgregory.net/rapid"
)

// genVector draws a version vector over few writers; explicit zero times
// are included on purpose, since a missing writer means 0.
func genVector(label string) *rapid.Generator[crdt.VersionVector] {
	return rapid.Custom(func(t *rapid.T) crdt.VersionVector {
		m := rapid.MapOfN(rapid.SampledFrom(writers), rapid.Uint64Range(0, 4), 0, len(writers)).Draw(t, label)
		return crdt.VersionVector(m)
	})
}

// leq is the definition: every writer's time in v is at most o's.
func leq(v, o crdt.VersionVector) bool {
	for w, t := range v {
		if t > o[w] {
			return false
		}
	}
	return true
}

var reverse = map[crdt.Ordering]crdt.Ordering{
	crdt.Equal: crdt.Equal, crdt.Before: crdt.After, crdt.After: crdt.Before, crdt.Concurrent: crdt.Concurrent,
}

func TestVersionVectorCompare(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genVector("a").Draw(t, "a"), genVector("b").Draw(t, "b")
		ab, ba := a.Compare(b), b.Compare(a)
		if ab != reverse[ba] {
			t.Fatalf("a.Compare(b) = %v but b.Compare(a) = %v", ab, ba)
		}
		var want crdt.Ordering
		switch le, ge := leq(a, b), leq(b, a); {
		case le && ge:
			want = crdt.Equal
		case le:
			want = crdt.Before
		case ge:
			want = crdt.After
		default:
			want = crdt.Concurrent
		}
		if ab != want {
			t.Fatalf("%v.Compare(%v) = %v, want %v", a, b, ab, want)
		}
		if a.Compare(a) != crdt.Equal {
			t.Fatalf("%v.Compare(itself) = %v", a, a.Compare(a))
		}
	})
}

func TestVersionVectorMerge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genVector("a").Draw(t, "a"), genVector("b").Draw(t, "b"), genVector("c").Draw(t, "c")
		aBefore, bBefore := a.Clone(), b.Clone()
		m := a.Clone()
		m.Merge(b)
		if !maps.Equal(a, aBefore) || !maps.Equal(b, bBefore) {
			t.Fatalf("Merge on a clone changed its inputs: a %v→%v, b %v→%v", aBefore, a, bBefore, b)
		}
		for _, x := range []crdt.VersionVector{a, b} {
			if o := m.Compare(x); o != crdt.After && o != crdt.Equal {
				t.Fatalf("merge %v of %v and %v compares %v to %v", m, a, b, o, x)
			}
		}
		for w := range m {
			if want := max(a[w], b[w]); m[w] != want {
				t.Fatalf("merge %v of %v and %v: [%s] = %d, want %d", m, a, b, w, m[w], want)
			}
		}
		ba := b.Clone()
		ba.Merge(a)
		if m.Compare(ba) != crdt.Equal {
			t.Fatalf("a⊔b = %v, b⊔a = %v", m, ba)
		}
		left, right := m.Clone(), b.Clone()
		left.Merge(c)
		right.Merge(c)
		right.Merge(a)
		if left.Compare(right) != crdt.Equal {
			t.Fatalf("(a⊔b)⊔c = %v, a⊔(b⊔c) = %v", left, right)
		}
		mm := m.Clone()
		mm.Merge(m)
		if !maps.Equal(mm, m) {
			t.Fatalf("m⊔m = %v, m = %v", mm, m)
		}
		limit := rapid.Uint64Range(0, 5).Draw(t, "limit")
		cp := m.Capped(limit)
		for w, t0 := range m {
			if cp[w] != min(t0, limit) {
				t.Fatalf("%v.Capped(%d) = %v", m, limit, cp)
			}
		}
		if len(cp) != len(m) {
			t.Fatalf("%v.Capped(%d) = %v", m, limit, cp)
		}
	})
}

func genCounters(label string) *rapid.Generator[*crdt.Counters[string]] {
	return rapid.Custom(func(t *rapid.T) *crdt.Counters[string] {
		c := &crdt.Counters[string]{}
		for k, n := range rapid.MapOfN(rapid.SampledFrom(keys), rapid.Uint64Range(0, 6), 0, len(keys)).Draw(t, label) {
			c.Observe(k, n)
		}
		return c
	})
}

func countersOf(c *crdt.Counters[string]) map[string]uint64 {
	out := map[string]uint64{}
	for _, k := range keys {
		if n := c.Get(k); n > 0 {
			out[k] = n
		}
	}
	return out
}

func TestCountersMergeLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genCounters("a").Draw(t, "a"), genCounters("b").Draw(t, "b"), genCounters("c").Draw(t, "c")
		bBefore := b.Clone()

		ab := a.Clone()
		rose := ab.Merge(b)
		if !b.Equal(bBefore) {
			t.Fatalf("Merge changed its argument: %v → %v", countersOf(bBefore), countersOf(b))
		}
		for _, k := range keys {
			if want := max(a.Get(k), b.Get(k)); ab.Get(k) != want {
				t.Fatalf("a⊔b[%s] = %d, want %d", k, ab.Get(k), want)
			}
		}
		wantRose := map[string]bool{}
		for _, k := range keys {
			if b.Get(k) > a.Get(k) {
				wantRose[k] = true
			}
		}
		if len(rose) != len(wantRose) {
			t.Fatalf("Merge reported %v rising, want %v", rose, wantRose)
		}
		for _, k := range rose {
			if !wantRose[k] {
				t.Fatalf("Merge reported %v rising, want %v", rose, wantRose)
			}
		}

		ba := b.Clone()
		ba.Merge(a)
		if !ab.Equal(ba) || ab.Len() != ba.Len() {
			t.Fatalf("a⊔b = %v, b⊔a = %v", countersOf(ab), countersOf(ba))
		}
		left := ab.Clone()
		left.Merge(c)
		right := b.Clone()
		right.Merge(c)
		right.Merge(a)
		if !left.Equal(right) {
			t.Fatalf("(a⊔b)⊔c = %v, a⊔(b⊔c) = %v", countersOf(left), countersOf(right))
		}
		again := ab.Clone()
		if up := again.Merge(ab); len(up) != 0 || !again.Equal(ab) {
			t.Fatalf("m⊔m rose %v: %v vs %v", up, countersOf(again), countersOf(ab))
		}

		// Delta: applying what b lacks of a gives b⊔a.
		viaDelta := b.Clone()
		for k, n := range a.Delta(b) {
			if n <= b.Get(k) {
				t.Fatalf("Delta carries %s=%d, which b already has (%d)", k, n, b.Get(k))
			}
			viaDelta.Observe(k, n)
		}
		if !viaDelta.Equal(ba) {
			t.Fatalf("b+Δ = %v, b⊔a = %v", countersOf(viaDelta), countersOf(ba))
		}
	})
}
