package crdt

import "testing"

func TestPruneVersionDropsOnlyWritersWithNothingLeft(t *testing.T) {
	var m Map[string, int]
	mustSet := func(k string, v int, s Stamp) {
		t.Helper()
		if _, err := m.Set(k, v, s); err != nil {
			t.Fatal(err)
		}
	}
	mustSet("a", 1, Stamp{1, "old"})
	mustSet("b", 2, Stamp{2, "old"})
	mustSet("a", 3, Stamp{3, "new"}) // "old" still holds b
	if n := m.PruneVersion(); n != 0 {
		t.Fatalf("pruned %d writers while both hold entries", n)
	}
	if _, err := m.Delete("b", Stamp{4, "new"}); err != nil {
		t.Fatal(err)
	}
	if n := m.PruneVersion(); n != 1 {
		t.Fatalf("pruned %d writers, want 1 (old)", n)
	}
	if _, ok := m.Version()["old"]; ok {
		t.Fatal("old is still in the version vector")
	}
	if got := m.Version()["new"]; got != 4 {
		t.Fatalf("version[new] = %d, want 4", got)
	}
	// A write of the pruned writer sent again is dominated: no change.
	if ch, err := m.ApplyDelta(Delta[string, int]{Entries: []Entry[string, int]{{Key: "a", Stamp: Stamp{1, "old"}, Value: 1}}}); err != nil || len(ch) != 0 {
		t.Fatalf("re-sent pruned write: changes %v, err %v", ch, err)
	}
}
