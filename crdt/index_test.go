package crdt

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestHashIndexAgainstMap runs random inserts and removes of many keys,
// so that probe sequences collide and removals shift entries back, and
// compares every lookup with a map.
func TestHashIndexAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var keys []string // position → key, "" when free
	var x hashIndex
	want := map[string]int32{}
	hashAt := func(p int32) uint64 { return hashOf(keys[p]) }
	find := func(k string) int32 { return x.find(hashOf(k), func(p int32) bool { return keys[p] == k }) }
	for step := range 20000 {
		k := strconv.Itoa(r.IntN(3000))
		if p, ok := want[k]; ok {
			if got := find(k); got != p {
				t.Fatalf("step %d: find(%q) = %d, want %d", step, k, got, p)
			}
			if r.IntN(2) == 0 {
				x.remove(hashOf(k), p, hashAt)
				keys[p] = ""
				delete(want, k)
			}
			continue
		}
		if got := find(k); got != -1 {
			t.Fatalf("step %d: find(%q) = %d, want absent", step, k, got)
		}
		keys = append(keys, k)
		p := int32(len(keys) - 1)
		x.insert(hashOf(k), p, hashAt)
		want[k] = p
		if step%1000 == 0 {
			x.reserve(x.n+r.IntN(2000), hashAt)
		}
	}
	if x.n != len(want) {
		t.Fatalf("n = %d, want %d", x.n, len(want))
	}
	for k, p := range want {
		if got := find(k); got != p {
			t.Fatalf("find(%q) = %d, want %d", k, got, p)
		}
	}
}
