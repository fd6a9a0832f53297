package peer

import (
	"testing"
)

// A seed added to a running machine is contacted at once, not at the next
// round, which is up to a period away: a joiner calls AddSeed after Run.
// Before the first round, the first round contacts it; an invalid seed is
// refused and starts nothing.
func TestSeedIsContactedAtOnceOnARunningMachine(t *testing.T) {
	const first, second = "10.0.0.2:7946", "10.0.0.3:7946"
	m := NewMachine(PeerConfig{SelfEndpoint: "10.0.0.1:7946", PingPeriod: p}, t0)
	if err := m.AddSeed(first, t0); err != nil {
		t.Fatal(err)
	}
	if got := m.TakePushes(); len(got) != 0 {
		t.Fatalf("AddSeed before the first round started %d exchanges; the first round is to", len(got))
	}
	if got := callees(m.Round(t0)); len(got) != 1 || got[0] != first {
		t.Fatalf("the first round called %v, want the seed %s", got, first)
	}
	if err := m.AddSeed("no port", t0.Add(p/10)); err == nil {
		t.Fatal("AddSeed accepted an address without a port")
	}
	if got := m.TakePushes(); len(got) != 0 {
		t.Fatalf("an invalid seed started %d exchanges", len(got))
	}
	if err := m.AddSeed(second, t0.Add(p/10)); err != nil {
		t.Fatal(err)
	}
	if got := callees(m.TakePushes()); len(got) != 1 || got[0] != second {
		t.Fatalf("AddSeed on a running machine started %v, want the seed %s at once", got, second)
	}
	// In flight: the next round does not call it a second time.
	for _, a := range callees(m.Round(t0.Add(p))) {
		if a == second {
			t.Fatalf("the next round called %s again while its exchange was in flight", second)
		}
	}
}

func callees(outs []*Outgoing) []string {
	var out []string
	for _, o := range outs {
		out = append(out, o.To)
	}
	return out
}
