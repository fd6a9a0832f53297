package property_test

import (
	"testing"

	"github.com/gossipmesh/mesh/crdt"
	"pgregory.net/rapid"
)

// purgeSome purges, at each replica with probability ½, the tombstones of a
// random set of keys, and returns what each replica purged. Keys are drawn
// before Purge runs: Purge visits entries in map order, and drawing there
// would make the test unreproducible.
func purgeSome(t *rapid.T, rs []*replica) map[*replica][]entry {
	purged := map[*replica][]entry{}
	for _, r := range rs {
		if !rapid.Bool().Draw(t, "purge") {
			continue
		}
		drop := map[string]bool{}
		for _, k := range rapid.SliceOfDistinct(rapid.SampledFrom(keys), rapid.ID[string]).Draw(t, "purgeKeys") {
			drop[k] = true
		}
		floor := r.m.Floor()
		var gone []entry
		n := r.m.Purge(func(e entry) bool {
			if !e.Deleted {
				t.Fatalf("%s: Purge offered live entry %+v", r.id, e)
			}
			if drop[e.Key] {
				gone = append(gone, e)
			}
			return drop[e.Key]
		})
		if n != len(gone) {
			t.Fatalf("%s: Purge returned %d, dropped %d", r.id, n, len(gone))
		}
		for _, e := range gone {
			floor = max(floor, e.Stamp.Time)
			if _, ok := r.m.Lookup(e.Key); ok {
				t.Fatalf("%s: purged %+v still held", r.id, e)
			}
		}
		if r.m.Floor() != floor {
			t.Fatalf("%s: floor %d after purging %v, want %d", r.id, r.m.Floor(), gone, floor)
		}
		requireSane(t, r.id+" after Purge", r.m)
		if rapid.Bool().Draw(t, "prune") {
			pruneVersion(t, r)
		}
		purged[r] = gone
	}
	return purged
}

// pruneVersion drops the writers r holds nothing of from its vector
// (safe, the doc says: claiming less is) and checks that it kept the others.
func pruneVersion(t *rapid.T, r *replica) {
	before := r.m.Version()
	n := r.m.PruneVersion()
	after := r.m.Version()
	holding := map[string]bool{}
	for e := range r.m.All() {
		holding[e.Stamp.Writer] = true
	}
	for w, tm := range before {
		if _, kept := after[w]; kept != holding[w] || (kept && after[w] != tm) {
			t.Fatalf("%s: PruneVersion turned %v into %v; holding %v", r.id, before, after, holding)
		}
	}
	if n != len(before)-len(after) {
		t.Fatalf("%s: PruneVersion() = %d, vector went from %d to %d writers", r.id, n, len(before), len(after))
	}
}

// TestNoResurrectionAfterPurge: once every replica holds every tombstone
// (the GC rule), replicas purge some of them. Afterwards stale states and
// stale deltas from before the purge arrive, mixed with fresh writes and
// exchanges. A purged tombstone's key never comes back with a write at or
// below the tombstone's stamp, and after a final exchange all replicas agree
// on every live value and on every entry except the purged tombstones.
func TestNoResurrectionAfterPurge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rs := newReplicas(rapid.IntRange(2, 4).Draw(t, "replicas"))
		type stale struct {
			to    *replica
			d     delta
			state *smap
		}
		var old []stale
		for range rapid.IntRange(5, 40).Draw(t, "phase1") {
			randomOps(t, rs, 1, true)
			from := rs[rapid.IntRange(0, len(rs)-1).Draw(t, "from")]
			to := rs[rapid.IntRange(0, len(rs)-1).Draw(t, "to")]
			switch rapid.IntRange(0, 2).Draw(t, "keep") {
			case 1:
				old = append(old, stale{to: to, state: from.m.Clone()})
			case 2:
				old = append(old, stale{to: to, d: from.m.Delta(to.m.Version(), rapid.IntRange(0, 3).Draw(t, "limit"))})
			}
		}
		exchangeUntilQuiet(t, rs, 0)
		purged := purgeSome(t, rs)
		gone := map[crdt.Stamp]bool{}
		for _, es := range purged {
			for _, e := range es {
				gone[e.Stamp] = true
			}
		}

		check := func(t *rapid.T, when string) {
			for r, es := range purged {
				for _, tomb := range es {
					if e, ok := r.m.Lookup(tomb.Key); ok && !tomb.Stamp.Less(e.Stamp) {
						t.Fatalf("%s: %s purged %+v but now holds %+v: %s", when, r.id, tomb, e, dump(r.m))
					}
				}
			}
		}
		for range rapid.IntRange(5, 40).Draw(t, "phase2") {
			if len(old) > 0 && rapid.Bool().Draw(t, "stale") {
				s := old[rapid.IntRange(0, len(old)-1).Draw(t, "which")]
				if s.state != nil {
					s.to.merge(s.state)
				} else {
					s.to.apply(t, s.d)
				}
				check(t, "after a stale message")
				continue
			}
			randomOps(t, rs, 1, true)
			check(t, "after an op")
		}
		exchangeUntilQuiet(t, rs, rapid.IntRange(0, 3).Draw(t, "finalLimit"))
		check(t, "after the final exchange")

		kept := func(r *replica) map[string]entry {
			out := map[string]entry{}
			for e := range r.m.All() {
				if !gone[e.Stamp] {
					out[e.Key] = e
				}
			}
			return out
		}
		want := kept(rs[0])
		for _, r := range rs[1:] {
			got := kept(r)
			if len(got) != len(want) {
				t.Fatalf("%s holds %s, %s holds %s", r.id, dump(r.m), rs[0].id, dump(rs[0].m))
			}
			for k, e := range got {
				if want[k] != e {
					t.Fatalf("%s holds %+v for %q, %s holds %+v", r.id, e, k, rs[0].id, want[k])
				}
			}
		}
	})
}

// TestOwnerReassertWins: an owner's entry is deleted by another replica
// (as failure detection does), the tombstone spreads partly and may be
// purged anywhere, raising floors. The owner then learns the highest time
// its partners have seen (their clocks and floors, as SyncResponse carries
// them) and re-asserts its entry one tick above. After exchange the
// owner's write is the winner on every replica.
func TestOwnerReassertWins(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rs := newReplicas(rapid.IntRange(2, 4).Draw(t, "replicas"))
		owner, key := rs[0], keys[0]
		owner.write(t, key, "alive", false)
		randomOps(t, rs, rapid.IntRange(5, 40).Draw(t, "before"), true)
		rs[rapid.IntRange(1, len(rs)-1).Draw(t, "accuser")].write(t, key, "", true)
		randomOps(t, rs, rapid.IntRange(0, 20).Draw(t, "after"), true)
		purgeSome(t, rs)

		owner.clock.Observe(maxTimeSeen(rs))
		s := crdt.Stamp{Time: owner.clock.Tick(), Writer: owner.id}
		if won, err := owner.m.Set(key, "back", s); !won || err != nil {
			t.Fatalf("owner's re-assert at %v: won=%v err=%v: %s", s, won, err, dump(owner.m))
		}
		exchangeUntilQuiet(t, rs, rapid.IntRange(0, 3).Draw(t, "limit"))
		for _, r := range rs {
			e, ok := r.m.Lookup(key)
			if v, live := r.m.Get(key); !ok || e.Stamp != s || !live || v != "back" {
				t.Fatalf("%s holds %+v (held %v) for %q, want the owner's write at %v: %s", r.id, e, ok, key, s, dump(r.m))
			}
		}
	})
}
