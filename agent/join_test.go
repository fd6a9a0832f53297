package agent

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

type fakeResolver struct {
	hosts map[string][]string
	calls int
}

func (r *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	r.calls++
	ips, ok := r.hosts[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	return ips, nil
}

type recordSeeds []string

func (s *recordSeeds) AddSeed(addr string) {
	if !slices.Contains(*s, addr) {
		*s = append(*s, addr)
	}
}

func newTestJoiner(r Resolver, s seeder) *joiner {
	return newJoiner(r, s, 100*time.Millisecond, slog.New(slog.DiscardHandler))
}

func TestJoinerSeedsEveryAddressAndReResolves(t *testing.T) {
	r := &fakeResolver{hosts: map[string][]string{"svc": {"10.0.0.3", "10.0.0.2"}}}
	var seeds recordSeeds
	j := newTestJoiner(r, &seeds)
	t0 := time.Unix(1000, 0)
	got, err := j.add(t.Context(), []string{"10.0.0.1:7946", "svc:7946"}, t0, false)
	want := []string{"10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"}
	if err != nil || !slices.Equal(got, want) || !slices.Equal(seeds, want) {
		t.Fatalf("add = %v, %v; seeds %v; want %v", got, err, seeds, want)
	}

	// The name is due again after one period, then 2, 4... periods.
	r.hosts["svc"] = append(r.hosts["svc"], "10.0.0.4")
	j.tick(t.Context(), t0.Add(50*time.Millisecond))
	if r.calls != 1 {
		t.Fatalf("resolved %d times before the period was up, want 1", r.calls)
	}
	j.tick(t.Context(), t0.Add(100*time.Millisecond))
	if r.calls != 2 || !slices.Contains(seeds, "10.0.0.4:7946") {
		t.Fatalf("after one period: %d lookups, seeds %v; want 2 lookups and 10.0.0.4:7946 seeded", r.calls, seeds)
	}
	j.tick(t.Context(), t0.Add(250*time.Millisecond))
	if r.calls != 2 {
		t.Fatalf("re-resolved %d times before the doubled backoff, want 2", r.calls)
	}
	j.tick(t.Context(), t0.Add(300*time.Millisecond))
	if r.calls != 3 {
		t.Fatalf("after 3 periods: %d lookups, want 3", r.calls)
	}
	// The backoff is capped at 30 periods, forever.
	now := t0.Add(300 * time.Millisecond)
	for range 20 {
		now = now.Add(time.Hour)
		j.tick(t.Context(), now)
	}
	if res := j.names["svc:7946"]; res.backoff != 3*time.Second {
		t.Errorf("backoff after many rounds = %v, want 30 periods (3s)", res.backoff)
	}
}

func TestJoinerStrictAddsNothingOnError(t *testing.T) {
	r := &fakeResolver{hosts: map[string][]string{"svc": {"10.0.0.2"}}}
	var seeds recordSeeds
	j := newTestJoiner(r, &seeds)
	_, err := j.add(t.Context(), []string{"svc:7946", "gone:7946"}, time.Unix(0, 0), true)
	if err == nil || !strings.Contains(err.Error(), "resolve gone") {
		t.Fatalf("strict add with an unresolvable name: err = %v, want 'resolve gone'", err)
	}
	if len(seeds) != 0 || len(j.names) != 0 {
		t.Errorf("strict add failed but seeded %v and kept names %v", seeds, j.names)
	}
}

func TestJoinerRetriesNameNotResolvableYet(t *testing.T) {
	r := &fakeResolver{hosts: map[string][]string{}}
	var seeds recordSeeds
	j := newTestJoiner(r, &seeds)
	t0 := time.Unix(0, 0)
	if _, err := j.add(t.Context(), []string{"later:7946"}, t0, false); err != nil {
		t.Fatalf("non-strict add: %v", err)
	}
	r.hosts["later"] = []string{"10.0.0.9"}
	j.tick(t.Context(), t0.Add(100*time.Millisecond))
	if !slices.Equal(seeds, []string{"10.0.0.9:7946"}) {
		t.Errorf("seeds after the name resolved = %v, want [10.0.0.9:7946]", seeds)
	}
}
