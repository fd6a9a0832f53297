package sim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gossipmesh/mesh/peer"
)

// size returns n, or small under the race detector.
func size(n, small int) int {
	if raceEnabled {
		return small
	}
	return n
}

// run runs a scenario and fails the test on any violation, printing the
// report, which names the seed and the command that replays it.
func run(t *testing.T, name string, o Options) *Report {
	t.Helper()
	if o.Seed == 0 {
		o.Seed = 1
	}
	r, err := Run(name, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", r)
	if r.Err != nil {
		t.Errorf("%s: invariant violated:\n%v", name, r.Err)
	}
	return r
}

// target fails the test when a metric misses its target.
func target(t *testing.T, r *Report, name string) {
	t.Helper()
	for _, m := range r.Metrics {
		if m.Name == name {
			if m.Target != "" && !m.Met {
				t.Errorf("%s: %s = %.4g, target %s (seed %d)", r.Scenario, name, m.Value, m.Target, r.Seed)
			}
			return
		}
	}
	t.Errorf("%s: no metric %q (did the run converge?)", r.Scenario, name)
}

// Same seed, same run, event for event; another seed, another run.
func TestSameSeedSameTrace(t *testing.T) {
	trace := func(seed uint64) (uint64, Stats) {
		s := New(Config{Seed: seed, Loss: 0.05, Latency: Latency{Min: time.Millisecond, Mean: 5 * time.Millisecond, Max: 80 * time.Millisecond}, AllowFalseRemovals: true})
		startCluster(s, 16)
		s.Run(10 * time.Second)
		live := s.Live()
		s.Crash(live[3])
		s.Leave(live[4])
		s.SetMeta(live[5])
		s.Stall(live[6], 2*time.Second)
		s.Slow(live[7], 500*time.Millisecond)
		s.Partition(live[:8], live[8:])
		s.Run(20 * time.Second)
		s.Heal()
		s.Restart(live[3])
		s.Restart(live[4])
		s.Run(20 * time.Second)
		return s.TraceDigest(), s.Stats()
	}
	a, sa := trace(7)
	b, sb := trace(7)
	c, _ := trace(8)
	if a != b || sa != sb {
		t.Fatalf("seed 7 twice: digests %016x and %016x, stats\n%+v\n%+v", a, b, sa, sb)
	}
	if a == c {
		t.Fatalf("seeds 7 and 8 give the same digest %016x", a)
	}
	t.Logf("seed 7: %016x (%d events, %d messages); seed 8: %016x", a, sa.Events, sa.Messages, c)
}

// A scenario's report, digest included, is reproducible from its seed.
func TestScenarioReproducible(t *testing.T) {
	o := Options{N: 20, Seed: 3}
	a, _ := Run("restart", o)
	b, _ := Run("restart", o)
	if a.TraceDigest != b.TraceDigest || a.Stats != b.Stats {
		t.Fatalf("restart seed 3 twice: %016x vs %016x", a.TraceDigest, b.TraceDigest)
	}
}

// The checkers must be able to fail: a peer silenced without telling
// them is a false removal, and the report names the seed, the command
// to replay and a trace.
func TestCheckersCatchUnexcusedRemoval(t *testing.T) {
	s := New(Config{Seed: 11, Repro: "go run ./cmd/mesh-sim -scenario test"})
	startCluster(s, 8)
	s.AwaitConvergence(time.Minute, "join")
	victim := s.Live()[5]
	s.silence(victim)
	s.Run(20 * time.Second)
	err := s.Err()
	if err == nil || s.Stats().FalseRemovals == 0 {
		t.Fatalf("a silenced running peer was not reported: err %v, stats %+v", err, s.Stats())
	}
	for _, want := range []string{"seed 11", "false removal", victim, "reproduce: go run"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("report lacks %q:\n%v", want, err)
		}
	}
	// The silenced peer, cut off, also stops listing the others; among
	// the violations, the others' removal of it shows who declared it.
	found := false
	for _, v := range s.Violations() {
		found = found || strings.Contains(v.Msg, "declared "+victim+" failed") && strings.Contains(strings.Join(v.Trace, "\n"), "DECLARES")
	}
	if !found {
		t.Errorf("no violation reports the removal of %s with its declaration in the trace:\n%v", victim, err)
	}
	// And the cluster, which cannot reach the victim, never converges.
	if _, ok := s.AwaitConvergence(10*time.Second, "silenced"); ok {
		t.Fatal("converged although a running peer is unreachable")
	}
	vs := s.Violations()
	if last := vs[len(vs)-1]; last.Check != "convergence" {
		t.Fatalf("last violation is %v, want a convergence one", last)
	}
}

func TestJoin(t *testing.T) {
	for _, n := range []int{10, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if n == 1000 && (raceEnabled || testing.Short()) {
				t.Skip("1,000 peers take minutes under -race or -short; run without them, or BenchmarkJoin")
			}
			o := Options{N: n}
			if raceEnabled {
				o.Duration = 6 * time.Second
			}
			if n == 1000 {
				o.Duration = 3 * time.Second // steady state costs O(N²) a round; BenchmarkJoin measures it
			}
			r := run(t, "join", o)
			target(t, r, "rounds to converge")
		})
	}
}

func TestChurn(t *testing.T) {
	r := run(t, "churn", Options{N: size(50, 30), Duration: time.Duration(size(10, 4)) * time.Minute})
	target(t, r, "removal by all, max")
	target(t, r, "rounds to converge after last fault")
}

func TestLoss(t *testing.T) {
	for _, loss := range []float64{0.05, 0.10, 0.20} {
		t.Run(fmt.Sprint(loss), func(t *testing.T) {
			d := time.Duration(size(10, 4)) * time.Minute
			if loss > 0.10 && raceEnabled {
				d = 2 * time.Minute // refutation storms make high loss slow
			}
			r := run(t, "loss", Options{N: size(64, 32), Loss: loss, Duration: d})
			if loss <= 0.10 {
				target(t, r, "false removals")
			}
		})
	}
}

func TestPartition(t *testing.T) {
	r := run(t, "partition", Options{N: size(200, 60)})
	target(t, r, "rounds to re-merge after heal")
}

// 3 of 7 peers cut from the other 4, as a group (partition) and each on
// its own (cut: the fault suite's partition, which takes the three hosts'
// links down). The three are cut off from most of what they observe, and
// must still drop the four, within 10 rounds.
func TestSmallPartition(t *testing.T) {
	for _, sc := range []string{"partition", "cut"} {
		for seed := uint64(1); seed <= 8; seed++ {
			r := run(t, sc, Options{N: 7, Seed: seed, Partition: 30 * time.Second,
				Config: Config{Peer: peer.PeerConfig{PingPeriod: 200 * time.Millisecond}}})
			if d := r.Metric("rounds until each side dropped the other"); !(d <= 10) {
				t.Errorf("%s, 3 of 7, seed %d: each side dropped the other after %.1f rounds, want within 10", sc, seed, d)
			}
			target(t, r, "rounds to re-merge after heal")
		}
	}
}

func TestOneWayPartition(t *testing.T) {
	r := run(t, "oneway", Options{N: size(50, 30)})
	target(t, r, "rounds to re-merge after heal")
}

func TestRestart(t *testing.T) {
	r := run(t, "restart", Options{N: size(100, 40)})
	for _, m := range r.Metrics {
		if strings.HasPrefix(m.Name, "rounds to new meta") {
			target(t, r, m.Name)
		}
	}
}

// A peer that crash-loops: the last incarnation's meta must win and no
// observer may ever go back to an older incarnation's meta.
func TestCrashLoop(t *testing.T) {
	run(t, "crashloop", Options{N: 5, Seed: 4})
	run(t, "crashloop", Options{N: size(20, 10), Seed: 1})
}

func TestMetaStorm(t *testing.T) {
	r := run(t, "metastorm", Options{N: size(50, 20)})
	target(t, r, "rounds to converge after storm")
}

func TestSlowAndStalledPeers(t *testing.T) {
	run(t, "slow", Options{N: size(50, 20)})
}

// A peer whose calls go out but that nobody can call is removed by all,
// listed by nobody while it stays so, and back once reachable.
func TestUnreachablePeer(t *testing.T) {
	r := run(t, "unreachable", Options{N: size(64, 20)})
	target(t, r, "rounds to removal by all")
	target(t, r, "rounds back everywhere once reachable")
}

func TestFlipFlop(t *testing.T) {
	r := run(t, "flipflop", Options{N: size(64, 20)})
	for _, m := range []string{"rounds to removal by all, worst phase", "rounds back everywhere, worst phase", "removals of other peers"} {
		target(t, r, m)
	}
}

func TestBrokenLinkRemovesNobody(t *testing.T) {
	r := run(t, "brokenlink", Options{N: size(64, 20), Duration: time.Duration(size(120, 30)) * time.Second})
	target(t, r, "removals of running peers")
}

func TestIsolatedPeerRemovesNobody(t *testing.T) {
	r := run(t, "isolated", Options{N: size(64, 20), Duration: time.Duration(size(120, 30)) * time.Second})
	target(t, r, "peers still listing the isolated one")
	target(t, r, "removals of peers other than the isolated one")
	target(t, r, "rounds to re-merge after the isolation")
}
