package crdt_test

import (
	"fmt"
	"maps"
	"slices"

	"github.com/gossipmesh/mesh/crdt"
)

// Two replicas write under their own ids with their own Lamport clocks and
// exchange deltas: each sends what the other's version vector lacks.
func Example() {
	var clockA, clockB crdt.Clock
	a := &crdt.Map[string, string]{}
	b := &crdt.Map[string, string]{}

	a.Set("10.0.0.1", "alpha", crdt.Stamp{Time: clockA.Tick(), Writer: "A"})
	a.Set("10.0.0.2", "beta", crdt.Stamp{Time: clockA.Tick(), Writer: "A"})

	// B learns A's writes from a delta against its (empty) version vector.
	d := a.Delta(b.Version(), 0)
	for _, e := range d.Entries {
		clockB.Observe(e.Stamp.Time)
	}
	changes, _ := b.ApplyDelta(d)
	fmt.Println("B got", len(changes), "changes:", sorted(b))

	// B deletes beta; its stamp (3@B) beats A's write (2@A).
	b.Delete("10.0.0.2", crdt.Stamp{Time: clockB.Tick(), Writer: "B"})

	// A's delta for B is empty now; B's delta for A carries the tombstone.
	fmt.Println("A→B:", len(a.Delta(b.Version(), 0).Entries), "entries")
	d = b.Delta(a.Version(), 0)
	fmt.Println("B→A:", d.Entries[0].Key, "deleted:", d.Entries[0].Deleted, "at", d.Entries[0].Stamp)
	for _, c := range must(a.ApplyDelta(d)) {
		fmt.Printf("A: %s changed from %v to deleted=%v\n", c.New.Key, c.Old.Stamp, c.New.Deleted)
	}

	fmt.Println("A:", sorted(a), "B:", sorted(b), "equal:", a.Equal(b))
	// Output:
	// B got 2 changes: [10.0.0.1=alpha 10.0.0.2=beta]
	// A→B: 0 entries
	// B→A: 10.0.0.2 deleted: true at 3@B
	// A: 10.0.0.2 changed from 2@A to deleted=true
	// A: [10.0.0.1=alpha] B: [10.0.0.1=alpha] equal: true
}

// Merge joins whole states: concurrent writes to one key resolve the same
// way on both sides, by (time, writer).
func ExampleMap_Merge() {
	a := &crdt.Map[string, string]{}
	b := &crdt.Map[string, string]{}
	a.Set("k", "from a", crdt.Stamp{Time: 5, Writer: "a"})
	b.Set("k", "from b", crdt.Stamp{Time: 5, Writer: "b"}) // same time: "b" > "a" wins

	ab, ba := a.Clone(), b.Clone()
	ab.Merge(b)
	ba.Merge(a)
	v1, _ := ab.Get("k")
	v2, _ := ba.Get("k")
	fmt.Println(v1, "|", v2, "|", ab.Equal(ba))
	// Output:
	// from b | from b | true
}

// A delta cut to a size limit carries every missing write up to a Lamport
// time and claims no more; the next round sends the rest.
func ExampleMap_Delta() {
	a := &crdt.Map[string, string]{}
	for i, k := range []string{"k1", "k2", "k3"} {
		a.Set(k, "v", crdt.Stamp{Time: uint64(i + 1), Writer: "a"})
	}
	b := &crdt.Map[string, string]{}
	for round := 1; ; round++ {
		d := a.Delta(b.Version(), 2)
		if len(d.Entries) == 0 {
			break
		}
		b.ApplyDelta(d)
		fmt.Println("round", round, "entries", len(d.Entries), "cut", d.Cut, "b version", b.Version())
	}
	fmt.Println(a.Equal(b))
	// Output:
	// round 1 entries 2 cut 2 b version map[a:2]
	// round 2 entries 1 cut 0 b version map[a:3]
	// true
}

// Purge forgets tombstones and raises the floor, so a stale write of a
// purged key cannot come back.
func ExampleMap_Purge() {
	m := &crdt.Map[string, string]{}
	m.Set("k", "old", crdt.Stamp{Time: 1, Writer: "a"})
	m.Delete("k", crdt.Stamp{Time: 2, Writer: "b"})
	n := m.Purge(func(e crdt.Entry[string, string]) bool { return true })
	fmt.Println("purged", n, "floor", m.Floor())

	stale := &crdt.Map[string, string]{}
	stale.Set("k", "old", crdt.Stamp{Time: 1, Writer: "a"})
	m.Merge(stale)
	_, ok := m.Get("k")
	fmt.Println("resurrected:", ok)

	won, _ := m.Set("k", "new", crdt.Stamp{Time: 3, Writer: "a"}) // above the floor
	fmt.Println("re-asserted:", won)
	// Output:
	// purged 1 floor 2
	// resurrected: false
	// re-asserted: true
}

func sorted(m *crdt.Map[string, string]) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(maps.Collect(m.Live()))) {
		v, _ := m.Get(k)
		out = append(out, k+"="+v)
	}
	return out
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
