package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedianAndP95(t *testing.T) {
	for _, c := range []struct {
		xs        []float64
		med, p95v float64
	}{
		{[]float64{5, 1, 3}, 3, 5},
		{[]float64{4, 1, 3, 2}, 2.5, 4},
		{[]float64{1, 2, 3, 4, math.Inf(1)}, 3, math.Inf(1)},
		{seq(40), 20.5, 38}, // rank ceil(0.95·40) = 38
	} {
		if got := median(c.xs); got != c.med {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.med)
		}
		if got := p95(c.xs); got != c.p95v {
			t.Errorf("p95(%v) = %v, want %v", c.xs, got, c.p95v)
		}
	}
	if !math.IsNaN(median(nil)) || !math.IsNaN(p95(nil)) {
		t.Error("median or p95 of no samples is not NaN")
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i + 1)
	}
	return out
}

// A change is complete at the latest event among the observers that must
// see it, whatever order the events arrive in.
func TestTrackerTimesAChangeByItsLastObserver(t *testing.T) {
	tr := newTracker()
	live := []string{"a", "b", "c"}
	for _, id := range live {
		tr.observe(id)
	}
	t0 := time.Now().Add(-time.Second)
	p := 100 * time.Millisecond
	at := func(periods float64) time.Time { return t0.Add(time.Duration(periods * float64(p))) }
	tr.event("a", "b", evJoin, "", at(1))
	tr.event("a", "c", evJoin, "", at(3))
	tr.event("b", "a", evJoin, "", at(2))
	tr.event("b", "c", evJoin, "", at(1))
	tr.event("c", "b", evJoin, "", at(4))
	if got, lag := tr.wait(live, t0, p, 0.5, tr.seesAll(live)); !math.IsInf(got, 1) || len(lag) != 1 || lag[0] != "c" {
		t.Fatalf("before c sees a: wait = %v, lagging %v; want a timeout with c lagging", got, lag)
	}
	tr.event("c", "a", evJoin, "", at(6))
	if got, _ := tr.wait(live, t0, p, 20, tr.seesAll(live)); math.Abs(got-6) > 1e-9 {
		t.Fatalf("join complete after %v periods, want 6", got)
	}

	tr.event("a", "c", evUpdate, "v2", at(7))
	tr.event("b", "c", evUpdate, "v2", at(8))
	if got, _ := tr.wait(live, t0, p, 20, tr.seesMeta("c", "v2")); math.Abs(got-8) > 1e-9 {
		t.Fatalf("update complete after %v periods, want 8", got)
	}
}

func TestTrackerCountsOnlyFalseRemovals(t *testing.T) {
	tr := newTracker()
	for _, id := range []string{"a", "b", "c", "d"} {
		tr.observe(id)
	}
	tr.markCrashed("c")
	tr.markLeft("d")
	now := time.Now()
	tr.event("a", "c", evFailed, "", now) // crashed: expected
	tr.event("a", "d", evLeft, "", now)   // left: expected
	tr.event("a", "d", evFailed, "", now) // left, then expired: not false
	tr.event("c", "a", evFailed, "", now) // from a stopped node's late timer
	tr.event("a", "b", evFailed, "", now) // false
	tr.event("c", "b", evLeft, "", now)   // a leave is never a false removal
	tr.event("d", "b", evFailed, "", now) // observer left: not counted
	tr.event("a", "b", evJoin, "", now)   // b refutes
	tr.event("b", "a", evFailed, "", now) // false
	if ev, nodes := tr.falseSince(time.Time{}); ev != 2 || nodes != 2 {
		t.Fatalf("falseSince = %d events of %d nodes, want 2 of 2", ev, nodes)
	}
	if ev, _ := tr.falseSince(time.Now().Add(time.Second)); ev != 0 {
		t.Fatalf("falseSince(future) = %d, want 0", ev)
	}
	// Observers are the live nodes other than the ones going.
	if n := tr.notSeeing([]string{"a"}, []string{"b"}); n != 0 {
		t.Errorf("notSeeing(b) = %d, want 0: a saw b come back", n)
	}
	if n := tr.notSeeing([]string{"b"}, []string{"a"}); n != 1 {
		t.Errorf("notSeeing(a) = %d, want 1: b dropped a and never saw it back", n)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	o := options{reps: 0, period: time.Millisecond, steady: time.Second, lossRate: 1, limit: 400, busy: -1}
	err := o.parse("16,x,4", "mesh,consul")
	if err == nil {
		t.Fatal("parse accepted bad options")
	}
	for _, want := range []string{`"x"`, `"4"`, `"consul"`, "-reps", "-period", "-loss", "-busy"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	o = options{reps: 5, period: 100 * time.Millisecond, steady: 10 * time.Second, lossRate: 0.1, limit: 400}
	if err := o.parse("16, 64", "memberlist"); err != nil {
		t.Fatalf("parse good options: %v", err)
	}
	if len(o.sizes) != 2 || o.sizes[1] != 64 || o.systems[0] != "memberlist" {
		t.Fatalf("parsed sizes %v systems %v", o.sizes, o.systems)
	}
}

// -closing picks one of the embedded closing notes, and names them when
// given another.
func TestClosingNotes(t *testing.T) {
	for _, name := range []string{"closing.md", "closing-1s.md"} {
		o, _, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), []string{"-closing", name})
		if err != nil || !strings.HasPrefix(o.closing, "## Closing note") {
			t.Errorf("-closing %s: err %v, note starts %.20q", name, err, o.closing)
		}
	}
	_, _, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), []string{"-closing", "../main.go"})
	if err == nil || !strings.Contains(err.Error(), "closing-1s.md") {
		t.Errorf("-closing ../main.go: err %v, want one naming the notes", err)
	}
}

// The report renders timeouts and missing systems, its SVG is well-formed
// XML, and its JSON holds no infinities.
func TestReportRenders(t *testing.T) {
	fake := func(system string, n int, scale float64) *result {
		r := &result{System: system, N: n, K: n / 8}
		for i := range 5 {
			x := scale * float64(i+1)
			r.Join = append(r.Join, x)
			r.Update = append(r.Update, 2*x)
			r.Fail1 = append(r.Fail1, 6+x)
			r.FailK = append(r.FailK, 7+x)
			r.Leave = append(r.Leave, x/10)
			r.Bytes = append(r.Bytes, 1000*x)
			r.Wire = append(r.Wire, 2000*x)
			r.CPU = append(r.CPU, 0.1*x)
			r.OtherLoad = append(r.OtherLoad, 0)
		}
		return r
	}
	ml64 := fake("memberlist", 64, 10)
	ml64.Update[4] = math.Inf(1)
	rp := report{
		o:       options{sizes: []int{16, 64}, reps: 5, period: 100 * time.Millisecond, steady: 10 * time.Second, lossRate: 0.1, lossDuration: 30 * time.Second, limit: 400},
		results: []*result{fake("mesh", 16, 1), fake("mesh", 64, 1), ml64},
		wall:    time.Minute,
	}
	md := string(rp.markdown())
	for _, want := range []string{"## Targets at N = 64", "| join convergence | ≤ 0.2× | 0.10× | 0.10× | met |",
		"| update propagation | ≤ 0.4× | 0.10× | < 0.03× | met |", "> 400.0", "[20.0 40.0 60.0 80.0 >400]", "## N = 16", "results.svg"} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md lacks %q", want)
		}
	}
	dec := xml.NewDecoder(bytes.NewReader(rp.svg()))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("results.svg is not well-formed: %v", err)
		}
	}
	var v any
	if err := json.Unmarshal(rp.json(), &v); err != nil {
		t.Fatalf("results.json: %v", err)
	}
}

// A timeout says only that a change took longer than the limit: a median
// or p95 that reaches one is a lower bound, a ratio against it a bound,
// and a verdict that a bound cannot settle is not given.
func TestCensoredFiguresAreBounds(t *testing.T) {
	inf := math.Inf(1)
	rp := report{o: options{limit: 100}}
	for _, c := range []struct {
		xs   []float64
		f    func([]float64) float64
		want bound
	}{
		{[]float64{1, 2, 3, 4, inf}, median, bound{v: 3}},
		{[]float64{1, 2, 3, 4, inf}, p95, bound{100, ">"}},
		{[]float64{1, 2, inf, inf, inf}, median, bound{100, ">"}},
		{[]float64{30, inf}, median, bound{65, ">"}}, // mean of 30 and more than 100
	} {
		if got := rp.stat(c.xs, c.f); got != c.want {
			t.Errorf("stat(%v) = %+v, want %+v", c.xs, got, c.want)
		}
	}
	for _, c := range []struct {
		a, b bound
		want string
	}{
		{bound{v: 2}, bound{v: 4}, "0.50×"},
		{bound{v: 2}, bound{100, ">"}, "< 0.02×"},
		{bound{100, ">"}, bound{v: 50}, "> 2.00×"},
		{bound{100, ">"}, bound{100, ">"}, "–"},
	} {
		if got := fmtRatio(ratio(c.a, c.b)); got != c.want {
			t.Errorf("ratio(%+v, %+v) = %s, want %s", c.a, c.b, got, c.want)
		}
	}
	for _, c := range []struct {
		m, p bound
		want string
	}{
		{bound{v: 0.1}, bound{0.02, "<"}, "met"},
		{bound{v: 0.1}, bound{0.5, "<"}, "undetermined: a bound only (censored)"},
		{bound{0.5, ">"}, bound{v: 0.1}, "**missed**"},
		{bound{0.1, ">"}, bound{v: 0.1}, "undetermined: a bound only (censored)"},
		{bound{v: 0.1}, bound{v: 0.3}, "met on median, **missed on p95**"},
	} {
		if got := verdict(c.m, c.p, 0.2); got != c.want {
			t.Errorf("verdict(%+v, %+v) = %q, want %q", c.m, c.p, got, c.want)
		}
	}
}

// Sizes grouped by -loss-together share one window, which opens after the
// repetitions at the group's last size; the others each get their own.
func TestLossGroups(t *testing.T) {
	o := options{sizes: []int{16, 64, 128}}
	if err := o.parseLossGroups("16+64"); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[int][]int{16: nil, 64: {16, 64}, 128: {128}} {
		if got := o.lossGroupEndingAt(n); !slices.Equal(got, want) {
			t.Errorf("window after N=%d: %v, want %v", n, got, want)
		}
	}
	for _, bad := range []string{"16+32", "16+64,64", "x"} {
		o := options{sizes: []int{16, 64, 128}}
		if err := o.parseLossGroups(bad); err == nil {
			t.Errorf("parseLossGroups(%q) accepted", bad)
		}
	}
}
