package sim

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// Options selects and sizes a scenario. Zero fields take the scenario's
// defaults (see Scenarios).
type Options struct {
	N         int
	Seed      uint64
	Loss      float64       // loss scenario: message loss rate
	Duration  time.Duration // virtual length of the fault phase
	Partition time.Duration // partition scenario: how long the halves are cut
	// Config is the base simulation config; Seed, Loss and the checks are
	// set by the scenario.
	Config   Config
	Progress io.Writer // progress lines during long runs
}

// Metric is one measured figure of a scenario.
type Metric struct {
	Name   string
	Value  float64
	Unit   string
	Target string // empty when none is set
	Met    bool   // Value meets Target (when set)
}

// Report is what a scenario measured.
type Report struct {
	Scenario    string
	Seed        uint64
	N           int
	Metrics     []Metric
	Stats       Stats
	TraceDigest uint64
	Virtual     time.Duration
	Wall        time.Duration
	Err         error // non-nil when an invariant failed: seed, repro, trace
	sim         *Sim
}

// Metric returns the value of the named metric (NaN if absent).
func (r *Report) Metric(name string) float64 {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m.Value
		}
	}
	return math.NaN()
}

func (r *Report) add(name string, v float64, unit string) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Value: v, Unit: unit})
}

// addTarget records a metric with an upper bound it should meet.
func (r *Report) addTarget(name string, v float64, unit string, limit float64) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Value: v, Unit: unit,
		Target: fmt.Sprintf("≤ %.4g", limit), Met: v <= limit})
}

// String formats the report for a terminal.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s  n=%d  seed=%d\n", r.Scenario, r.N, r.Seed)
	for _, m := range r.Metrics {
		fmt.Fprintf(&b, "  %-44s %12.4g %-14s", m.Name, m.Value, m.Unit)
		if m.Target != "" {
			ok := "MET"
			if !m.Met {
				ok = "MISSED"
			}
			fmt.Fprintf(&b, " target %s: %s", m.Target, ok)
		}
		b.WriteByte('\n')
	}
	st := r.Stats
	fmt.Fprintf(&b, "  %d events, %d rounds, %d messages, %.1f MB, %d lost, %d partitioned, %d timeouts\n",
		st.Events, st.Rounds, st.Messages, float64(st.Bytes)/1e6, st.Lost, st.Partitioned, st.Timeouts)
	fmt.Fprintf(&b, "  declarations %d, removals of running peers %d, false removals %d, zombies %d, joins %d, crashes %d\n",
		st.Declarations, st.Removals, st.FalseRemovals, st.Zombies, st.Joins, st.Crashes)
	fmt.Fprintf(&b, "  virtual %v, wall %v, trace digest %016x\n", r.Virtual, r.Wall.Round(time.Millisecond), r.TraceDigest)
	if r.Err != nil {
		fmt.Fprintf(&b, "INVARIANT VIOLATED\n%v\n", r.Err)
	} else {
		b.WriteString("  invariants: all held\n")
	}
	return b.String()
}

// Scenario is a named, sized run.
type Scenario struct {
	Name string
	Doc  string
	// Defaults fills o's zero fields.
	Defaults func(o *Options)
	run      func(s *Sim, o Options, r *Report)
}

// Scenarios lists every scenario by name.
var Scenarios = []Scenario{
	{"join", "N peers start at once and join through one seed; rounds to convergence vs log2 N; then Duration of steady state: bytes, suspicions",
		func(o *Options) { def(&o.N, 100); defD(&o.Duration, 30*time.Second) }, runJoin},
	{"steady", "N peers start converged (no join) and gossip for Duration: wall time per round, bytes/peer/round, heap per peer",
		func(o *Options) { def(&o.N, 1000); defD(&o.Duration, 100*time.Second) }, runSteady},
	{"churn", "10% of peers crash and 10% join per minute; detection time, accuracy, convergence after",
		func(o *Options) { def(&o.N, 100); defD(&o.Duration, 10*time.Minute) }, runChurn},
	{"loss", "message loss for Duration with a crash every 3 minutes; false removals, detection time",
		func(o *Options) { def(&o.N, 256); defD(&o.Duration, 30*time.Minute); defF(&o.Loss, 0.10) }, runLoss},
	{"partition", "two halves cut for Partition, then healed; rounds to re-merge",
		func(o *Options) { def(&o.N, 200); defD(&o.Partition, 2*time.Minute) }, runPartition},
	{"cut", "each peer of the smaller half cut from everyone, as a host whose link goes down, for Partition, then healed; rounds until each side dropped the other, and to re-merge",
		func(o *Options) { def(&o.N, 7); defD(&o.Partition, 30*time.Second) }, runCut},
	{"oneway", "messages from one half to the other dropped for Partition, then healed",
		func(o *Options) { def(&o.N, 50); defD(&o.Partition, time.Minute) }, runOneWay},
	{"restart", "restart at the same address with new meta: after removal, before detection, after leave",
		func(o *Options) { def(&o.N, 100) }, runRestart},
	{"crashloop", "restart, crash after half a round, restart again; the last incarnation's meta must win",
		func(o *Options) { def(&o.N, 20) }, runCrashLoop},
	{"metastorm", "every peer changes its meta every round for Duration; bytes, staleness, convergence lag",
		func(o *Options) { def(&o.N, 100); defD(&o.Duration, time.Minute) }, runMetaStorm},
	{"slow", "a slow peer, a short stall and a long stall; nobody falsely removed",
		func(o *Options) { def(&o.N, 50) }, runSlow},
	{"unreachable", "a peer whose calls go out but to which no call gets through, for Partition, then reachable again",
		func(o *Options) { def(&o.N, 64); defD(&o.Partition, 30*time.Second) }, runUnreachable},
	{"flipflop", "a peer unreachable for 20 rounds, reachable for 20, five times over",
		func(o *Options) { def(&o.N, 64) }, runFlipFlop},
	{"brokenlink", "two peers that cannot reach each other for Duration; nobody removed",
		func(o *Options) { def(&o.N, 64); defD(&o.Duration, 2*time.Minute) }, runBrokenLink},
	{"isolated", "a peer that reaches nobody and that nobody reaches, for Duration; it lists nobody but removes nobody from the others' views",
		func(o *Options) { def(&o.N, 64); defD(&o.Duration, 2*time.Minute) }, runIsolated},
}

func def(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func defD(p *time.Duration, v time.Duration) {
	if *p == 0 {
		*p = v
	}
}

func defF(p *float64, v float64) {
	if *p == 0 {
		*p = v
	}
}

// Lookup returns the scenario called name.
func Lookup(name string) (Scenario, bool) {
	for _, sc := range Scenarios {
		if sc.Name == name {
			return sc, true
		}
	}
	return Scenario{}, false
}

// Run runs the named scenario and returns its report; an unknown name is
// an error. Invariant violations are in Report.Err.
func Run(name string, o Options) (*Report, error) {
	sc, ok := Lookup(name)
	if !ok {
		var names []string
		for _, sc := range Scenarios {
			names = append(names, sc.Name)
		}
		return nil, fmt.Errorf("unknown scenario %q; known: %s", name, strings.Join(names, ", "))
	}
	sc.Defaults(&o)
	cfg := o.Config
	cfg.Seed = o.Seed
	cfg.Progress = o.Progress
	cfg.Repro = fmt.Sprintf("go run ./cmd/mesh-sim -scenario %s -n %d -seed %d", name, o.N, o.Seed)
	if o.Loss > 0 {
		cfg.Repro += fmt.Sprintf(" -loss %g", o.Loss)
	}
	if o.Duration > 0 {
		cfg.Repro += fmt.Sprintf(" -duration %v", o.Duration)
	}
	if o.Partition > 0 {
		cfg.Repro += fmt.Sprintf(" -partition %v", o.Partition)
	}
	if pc := cfg.Peer; pc.PingPeriod != 0 || pc.Expiry != 0 || pc.Fanout != 0 {
		cfg.Repro += fmt.Sprintf(" -period %v -expiry %v -fanout %d", pc.PingPeriod, pc.Expiry, pc.Fanout)
	}
	if cfg.Wire != WireCopy {
		cfg.Repro += " -wire " + cfg.Wire.String()
	}
	if l := cfg.Latency; l != (Latency{}) {
		cfg.Repro += fmt.Sprintf(" -latency-min %v -latency-max %v -latency-mean %v", l.Min, l.Max, l.Mean)
	}
	wall := time.Now()
	s := New(cfg)
	r := &Report{Scenario: name, Seed: o.Seed, N: o.N, sim: s}
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "seed %d: %s, n=%d\n", o.Seed, name, o.N)
	}
	sc.run(s, o, r)
	r.Stats = s.Stats()
	r.TraceDigest = s.TraceDigest()
	r.Virtual = s.Elapsed()
	r.Wall = time.Since(wall)
	r.Err = s.Err()
	return r, nil
}

// Sim returns the simulation a report came from, for further checks.
func (r *Report) Sim() *Sim { return r.sim }

// rounds converts virtual time to PingPeriods.
func (s *Sim) rounds(d time.Duration) float64 { return float64(d) / float64(s.period) }

// startCluster starts n peers at once, all seeded with the first.
func startCluster(s *Sim, n int) {
	seed := s.AddPeer()
	for range n - 1 {
		s.AddPeer(seed)
	}
}

// joinBound is the convergence deadline that fails a run: far above the
// target, so that it flags a stuck cluster, not a slow one.
func (s *Sim) joinBound(n int) time.Duration {
	return time.Duration((4*Log2(n) + 20) * float64(s.period))
}

// converge starts n peers and waits for convergence.
func converge(s *Sim, n int) time.Duration {
	startCluster(s, n)
	d, _ := s.AwaitConvergence(s.joinBound(n), "initial join")
	return d
}

func (s *Sim) suspicions() uint64 {
	var n uint64
	for _, nd := range s.nodes {
		if nd.up {
			n += nd.m.Stats().Suspicions
		}
	}
	return n
}

// measure runs d and returns bytes and suspicions per peer-round in it.
// Suspicions of peers that crash in the window are not counted.
func (s *Sim) measure(d time.Duration) (bytesPerPeerRound, suspicionsPerPeerRound float64) {
	st0, sus0 := s.stats, s.suspicions()
	s.Run(d)
	rounds := float64(s.stats.Rounds - st0.Rounds)
	if rounds == 0 {
		return 0, 0
	}
	return float64(s.stats.Bytes-st0.Bytes) / rounds, float64(s.suspicions()-sus0) / rounds
}

// quiesce runs a few quiet rounds, waits (checking every period, within
// joinBound) for all live peers' digests to agree, then checks the state.
// Digests cover tombstones, which the convergence checker does not look
// at and which may still be spreading when the live membership agrees.
func (s *Sim) quiesce(r *Report, sample int) {
	s.Run(3 * s.Period())
	start, limit := s.now, s.now+int64(s.joinBound(len(s.Live())))
	for !s.digestsAgree() && s.now < limit {
		s.Run(s.Period())
	}
	r.add("rounds until digests agree, after 3 quiet", s.rounds(time.Duration(s.now-start)), "rounds")
	s.CheckQuiescent(sample)
}

// digestsAgree reports whether all live peers hold the same digest.
func (s *Sim) digestsAgree() bool {
	var d uint64
	first := true
	for _, n := range s.nodes {
		if !n.up {
			continue
		}
		if first {
			d, first = n.m.Digest(), false
		} else if n.m.Digest() != d {
			return false
		}
	}
	return true
}

func runJoin(s *Sim, o Options, r *Report) {
	startCluster(s, o.N)
	d, ok := s.AwaitConvergence(s.joinBound(o.N), "join")
	if ok {
		r.addTarget("rounds to converge", s.rounds(d), "rounds", 2*Log2(o.N)+3)
	}
	r.add("log2 N", Log2(o.N), "")
	// Steady state: a third of Duration to settle (past the first expiry
	// wave), the rest measured.
	s.Run(o.Duration / 3)
	b, sus := s.measure(o.Duration - o.Duration/3)
	r.add("steady bytes/peer/round", b, "bytes")
	r.add("steady bytes/peer/round / N", b/float64(o.N), "bytes")
	r.add("suspicions/peer/round", sus, "")
	s.quiesce(r, 200)
}

func runChurn(s *Sim, o Options, r *Report) {
	p := s.Period()
	converge(s, o.N)
	// The bound: Expiry (as the converged peers apply it) +
	// log2 N rounds.
	bound := s.Expiry() + time.Duration(math.Ceil(Log2(o.N)))*p
	s.cfg.CrashBound = bound
	k := max(1, o.N/10)
	minutes := int(o.Duration / time.Minute)
	var last time.Duration
	for m := range minutes {
		base := time.Duration(m) * time.Minute
		for range k {
			d1 := base + time.Duration(s.rng.Int64N(int64(time.Minute)))
			d2 := base + time.Duration(s.rng.Int64N(int64(time.Minute)))
			last = max(last, d1, d2)
			s.After(d1, func() {
				if live := s.Live(); len(live) > 1 {
					s.Crash(live[s.rng.IntN(len(live))])
				}
			})
			s.After(d2, func() {
				if live := s.Live(); len(live) > 0 {
					s.AddPeer(live[s.rng.IntN(len(live))])
				}
			})
		}
	}
	if o.Progress != nil {
		s.Every(time.Minute, func() bool {
			fmt.Fprintf(o.Progress, "  minute %d: %d live, %d not converged\n", int(s.Elapsed()/time.Minute), s.chk.liveCount, s.Unconverged())
			return s.Elapsed() < o.Duration
		})
	}
	s.Run(last) // up to and including the last fault
	d, ok := s.AwaitConvergence(30*p, "after churn")
	if ok {
		r.addTarget("rounds to converge after last fault", s.rounds(d), "rounds", 2*Log2(o.N)+3)
	}
	addRemoval(s, r, o.N, bound)
	r.add("live peers at end", float64(len(s.Live())), "")
	s.quiesce(r, 200)
}

// addRemoval reports how long crashed peers took to be removed by all.
func addRemoval(s *Sim, r *Report, n int, bound time.Duration) {
	ts := s.RemovalTimes()
	if len(ts) == 0 {
		return
	}
	slices.Sort(ts)
	var sum time.Duration
	for _, t := range ts {
		sum += t
	}
	r.add("crashes removed by all", float64(len(ts)), "")
	r.add("removal by all, mean", s.rounds(sum/time.Duration(len(ts))), "rounds")
	r.add("removal by all, median", s.rounds(ts[len(ts)/2]), "rounds")
	r.addTarget("removal by all, max", s.rounds(ts[len(ts)-1]), "rounds", s.rounds(bound))
}

func runLoss(s *Sim, o Options, r *Report) {
	p := s.Period()
	converge(s, o.N)
	bound := s.Expiry() + time.Duration(math.Ceil(Log2(o.N)))*p
	s.cfg.AllowFalseRemovals = o.Loss > 0.10
	s.SetLoss(o.Loss)
	// A crash every 3 minutes, to time detection under loss.
	s.Every(3*time.Minute, func() bool {
		live := s.Live()
		s.Crash(live[s.rng.IntN(len(live))])
		return s.Elapsed() < o.Duration
	})
	if o.Progress != nil {
		s.Every(time.Minute, func() bool {
			fmt.Fprintf(o.Progress, "  minute %d: %d false removals, %d declarations\n", int(s.Elapsed()/time.Minute), s.stats.FalseRemovals, s.stats.Declarations)
			return s.Elapsed() < o.Duration
		})
	}
	st0, sus0 := s.stats, s.suspicions()
	s.Run(o.Duration)
	peerRounds := float64(s.stats.Rounds - st0.Rounds)
	r.add("loss", o.Loss, "")
	if o.Loss <= 0.10 {
		r.addTarget("false removals", float64(s.stats.FalseRemovals), "", 0)
	} else {
		r.add("false removals", float64(s.stats.FalseRemovals), "")
	}
	r.add("false removals per peer-hour", float64(s.stats.FalseRemovals)/(peerRounds*p.Hours()), "")
	r.add("suspicions/peer/round", float64(s.suspicions()-sus0)/peerRounds, "")
	addRemoval(s, r, o.N, bound)
	s.SetLoss(0)
	d, ok := s.AwaitConvergence(30*p, "after loss stopped")
	if ok {
		r.add("rounds to converge after loss stopped", s.rounds(d), "rounds")
	}
	s.quiesce(r, 200)
}

func halves(s *Sim) (a, b []string) {
	live := s.Live()
	return live[:len(live)/2], live[len(live)/2:]
}

func runPartition(s *Sim, o Options, r *Report) {
	partitionAndHeal(s, o, r, func(a, b []string) [][]string { return [][]string{a, b} })
}

// runCut cuts each peer of the smaller half from everyone, the others of
// that half included, as the fault suite's partition takes its hosts'
// links down.
func runCut(s *Sim, o Options, r *Report) {
	partitionAndHeal(s, o, r, func(a, b []string) [][]string {
		groups := [][]string{b}
		for _, x := range a {
			groups = append(groups, []string{x})
		}
		return groups
	})
}

// partitionAndHeal converges the cluster, cuts the groups that split
// makes of its halves from each other for o.Partition, and heals them.
func partitionAndHeal(s *Sim, o Options, r *Report, split func(a, b []string) [][]string) {
	p := s.Period()
	converge(s, o.N)
	groups := split(halves(s))
	s.Partition(groups...)
	start := s.now
	across := func() int {
		n := 0
		for i := range groups {
			for j := range groups {
				if i != j {
					n += s.listings(groups[i], groups[j])
				}
			}
		}
		return n
	}
	// A member with fewer than two observers on a side may stay listed
	// there until the heal (docs/PROTOCOL.md), so this is a figure, not
	// a check.
	if s.pollUntil(o.Partition, func() bool { return across() == 0 }) {
		r.add("rounds until each side dropped the other", s.rounds(time.Duration(s.now-start)), "rounds")
	} else {
		r.add("members listed across the partition at the heal", float64(across()), "")
	}
	s.runUntil(start+int64(o.Partition), nil)
	s.Heal()
	d, ok := s.AwaitConvergence(60*p, "after heal")
	if ok {
		r.addTarget("rounds to re-merge after heal", s.rounds(d), "rounds", 10)
	}
	r.add("partition", o.Partition.Seconds()/p.Seconds(), "rounds")
	s.quiesce(r, 200)
}

// listings counts the pairs in which a peer of holders lists a peer of
// members as live.
func (s *Sim) listings(holders, members []string) int {
	n := 0
	for _, h := range holders {
		row := s.chk.views[s.node(h).slot]
		for _, x := range members {
			if present(row[s.node(x).slot]) {
				n++
			}
		}
	}
	return n
}

// pollUntil runs until done, checked every twentieth of a round, or until d
// passes; for conditions too costly to check after every event.
func (s *Sim) pollUntil(d time.Duration, done func() bool) bool {
	met := done()
	s.Every(s.Period()/20, func() bool { met = met || done(); return !met })
	return s.RunUntil(d, func() bool { return met })
}

func runOneWay(s *Sim, o Options, r *Report) {
	p := s.Period()
	converge(s, o.N)
	a, b := halves(s)
	s.Block(a, b)
	s.Run(o.Partition)
	s.Heal()
	d, ok := s.AwaitConvergence(60*p, "after heal")
	if ok {
		r.addTarget("rounds to re-merge after heal", s.rounds(d), "rounds", 10)
	}
	s.quiesce(r, 200)
}

func runRestart(s *Sim, o Options, r *Report) {
	p := s.Period()
	converge(s, o.N)
	pick := func() string { live := s.Live(); return live[1+s.rng.IntN(len(live)-1)] }
	restart := func(name, addr string) {
		s.Restart(addr)
		d, ok := s.AwaitConvergence(30*p, "restart "+name)
		if ok {
			r.addTarget("rounds to new meta everywhere: "+name, s.rounds(d), "rounds", 2*Log2(o.N)+3)
		}
		s.Run(5 * p)
	}
	// After everyone removed it.
	x := pick()
	s.Crash(x)
	s.RunUntil(30*p, func() bool { return s.chk.holders[s.node(x).slot] == 0 })
	restart("after removal", x)
	// Before anyone noticed.
	y := pick()
	s.Crash(y)
	s.Run(2 * p)
	restart("before detection", y)
	// After a graceful leave.
	z := pick()
	s.Leave(z)
	s.Run(5 * p)
	restart("after leave", z)
	s.quiesce(r, 0)
}

// runCrashLoop restarts a peer, crashes the new process half a round
// later, and restarts it again: the middle incarnation's entry is still
// spreading when the last one starts.
func runCrashLoop(s *Sim, o Options, r *Report) {
	p := s.Period()
	converge(s, o.N)
	for i := range 3 {
		live := s.Live()
		w := live[1+s.rng.IntN(len(live)-1)]
		s.Crash(w)
		s.Run(3 * p)
		s.Restart(w)
		s.Run(p / 2)
		s.Crash(w)
		s.Run(p)
		s.Restart(w)
		d, ok := s.AwaitConvergence(30*p, "crash loop")
		if ok {
			r.addTarget(fmt.Sprintf("rounds to new meta everywhere: loop %d", i+1), s.rounds(d), "rounds", 2*Log2(o.N)+3)
		}
		s.Run(5 * p)
	}
	s.quiesce(r, 0)
}

func runMetaStorm(s *Sim, o Options, r *Report) {
	p := s.Period()
	converge(s, o.N)
	s.Run(10 * p)
	before, _ := s.measure(10 * p)
	end := s.Elapsed() + o.Duration
	for _, a := range s.Live() {
		s.After(time.Duration(s.rng.Int64N(int64(p))), func() {
			s.SetMeta(a)
			s.Every(p, func() bool {
				if s.Elapsed() >= end {
					return false
				}
				s.SetMeta(a)
				return true
			})
		})
	}
	var stale []time.Duration
	var worst time.Duration
	st0 := s.stats
	for s.Elapsed() < end {
		s.Run(5 * p)
		mean, w := s.MetaStaleness()
		stale = append(stale, mean)
		worst = max(worst, w)
	}
	during := float64(s.stats.Bytes-st0.Bytes) / float64(s.stats.Rounds-st0.Rounds)
	sort.Slice(stale, func(i, j int) bool { return stale[i] < stale[j] })
	var sum time.Duration
	for _, d := range stale {
		sum += d
	}
	r.add("bytes/peer/round before storm", before, "bytes")
	r.add("bytes/peer/round during storm", during, "bytes")
	r.add("meta staleness during storm, mean", s.rounds(sum/time.Duration(max(1, len(stale)))), "rounds")
	r.add("meta staleness during storm, max", s.rounds(worst), "rounds")
	d, ok := s.AwaitConvergence(30*p, "after storm")
	if ok {
		r.addTarget("rounds to converge after storm", s.rounds(d), "rounds", 2*Log2(o.N)+3)
	}
	s.quiesce(r, 0)
}

func runSlow(s *Sim, o Options, r *Report) {
	p := s.Period()
	converge(s, o.N)
	live := s.Live()
	slow, short, long := live[1], live[2], live[3]
	s.Slow(slow, 3*p/2) // rounds every 2.5 periods; answers at once
	s.Run(5 * p)
	s.Stall(short, 3*p) // shorter than Expiry: nobody may remove it
	s.Run(20 * p)
	s.Stall(long, 20*p) // far past Expiry: removed, then refutes on resume
	s.Run(30 * p)
	d, ok := s.AwaitConvergence(30*p, "after stalls")
	if ok {
		r.add("rounds to converge after long stall", s.rounds(d), "rounds")
	}
	s.Run(30 * p)
	s.Slow(slow, 0)
	r.add("refutations by the long-stalled peer", float64(s.Machine(long).Stats().Refutations), "")
	r.add("starved rounds of the long-stalled peer", float64(s.Machine(long).Stats().StarvedRounds), "")
	s.quiesce(r, 0)
}

// runSteady measures the simulator itself: N peers that start converged
// (StartConverged) gossip for Duration. Heap per peer is the live heap
// after the start, over N: the machines' state, every peer holding every
// other, and the checkers' views.
func runSteady(s *Sim, o Options, r *Report) {
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	wall, cpu := time.Now(), processCPU()
	s.StartConverged(o.N)
	r.add("start, wall", time.Since(wall).Seconds(), "s")
	r.add("start, cpu", (processCPU() - cpu).Seconds(), "s")
	runtime.GC()
	runtime.ReadMemStats(&m1)
	r.add("live heap per peer", float64(m1.HeapAlloc-m0.HeapAlloc)/float64(o.N), "bytes")
	r.add("live heap per (peer, member) pair", float64(m1.HeapAlloc-m0.HeapAlloc)/float64(o.N)/float64(o.N), "bytes")
	wall, cpu = time.Now(), processCPU()
	b, sus := s.measure(o.Duration)
	w := time.Since(wall)
	rounds := s.rounds(o.Duration)
	r.add("rounds", rounds, "")
	r.add("rounds, wall", w.Seconds(), "s")
	// CPU time too: the process's, collector included, which wall time
	// overstates whenever others use the machine.
	r.add("rounds, cpu", (processCPU() - cpu).Seconds(), "s")
	r.add("wall per round", w.Seconds()/rounds, "s")
	r.add("steady bytes/peer/round", b, "bytes")
	r.add("steady bytes/peer/round / N", b/float64(o.N), "bytes")
	r.add("suspicions/peer/round", sus, "")
	if !s.Converged() {
		s.chk.violate(s, "convergence", fmt.Sprintf("a converged start diverged: %d of %d live peers differ%s", s.Unconverged(), s.chk.liveCount, s.chk.describeUnconverged(s)), s.chk.unconvergedSlots(s, 3)...)
	}
	s.quiesce(r, 200)
}

// unreachablePhase makes x unreachable until every other peer dropped
// it, checks every round that none lists it again while it stays
// unreachable for hold, then makes it reachable and waits until every
// peer lists it again. It returns the rounds to removal by all and back.
func (s *Sim) unreachablePhase(x string, hold time.Duration, r *Report, label string) (removed, back float64, ok bool) {
	p := s.Period()
	s.Unreachable(x, true)
	d, ok := s.AwaitConvergence(s.Expiry()+20*p, label+": removal by all")
	if !ok {
		return 0, 0, false
	}
	removed = s.rounds(d)
	listed := 0
	xs := s.node(x).slot
	s.Every(p, func() bool {
		if s.chk.holders[xs] > 0 {
			listed++
		}
		return true
	})
	s.Run(hold)
	if listed > 0 {
		s.chk.violate(s, "resurrection", fmt.Sprintf("%s: unreachable %s was listed again by someone in %d rounds of %v", label, x, listed, hold), xs)
	}
	s.Unreachable(x, false)
	d, ok = s.AwaitConvergence(20*p, label+": back everywhere")
	return removed, s.rounds(d), ok
}

func runUnreachable(s *Sim, o Options, r *Report) {
	converge(s, o.N)
	live := s.Live()
	x := live[s.rng.IntN(len(live))]
	removed, back, ok := s.unreachablePhase(x, o.Partition, r, "unreachable")
	if !ok {
		return
	}
	p := s.Period()
	r.addTarget("rounds to removal by all", removed, "rounds", s.rounds(s.Expiry()+3*p))
	r.addTarget("rounds back everywhere once reachable", back, "rounds", 5)
	s.quiesce(r, 200)
}

func runFlipFlop(s *Sim, o Options, r *Report) {
	p := s.Period()
	converge(s, o.N)
	live := s.Live()
	x := live[s.rng.IntN(len(live))]
	var worstRemoved, worstBack float64
	for i := range 5 {
		removed, back, ok := s.unreachablePhase(x, 20*p-s.Expiry(), r, fmt.Sprintf("flip-flop %d", i+1))
		if !ok {
			return
		}
		worstRemoved, worstBack = max(worstRemoved, removed), max(worstBack, back)
		s.Run(20 * p)
	}
	r.addTarget("rounds to removal by all, worst phase", worstRemoved, "rounds", s.rounds(s.Expiry()+3*p))
	r.addTarget("rounds back everywhere, worst phase", worstBack, "rounds", 5)
	r.addTarget("removals of other peers", float64(s.stats.Removals)-float64(5*(o.N-1)), "", 0)
	s.quiesce(r, 200)
}

func runBrokenLink(s *Sim, o Options, r *Report) {
	converge(s, o.N)
	live := s.Live()
	a := live[0]
	b := s.Machine(a).Subjects()[0] // a probes b: the link is used
	s.Unreach([]string{a}, []string{b})
	s.Unreach([]string{b}, []string{a})
	removals := s.stats.Removals
	s.Run(o.Duration)
	r.addTarget("removals of running peers", float64(s.stats.Removals-removals), "", 0)
	s.Heal()
	s.quiesce(r, 200)
}

func runIsolated(s *Sim, o Options, r *Report) {
	converge(s, o.N)
	live := s.Live()
	x := live[s.rng.IntN(len(live))]
	var others []string
	for _, a := range live {
		if a != x {
			others = append(others, a)
		}
	}
	s.Unreachable(x, true)
	s.Unreach([]string{x}, others)
	xs := s.node(x).slot
	s.Run(o.Duration)
	// The others drop x, x stops listing its subjects (all the others in
	// a cluster of at most K+1; removals local to x), and no other
	// removal happens: x's own alerts remove nobody.
	r.addTarget("peers still listing the isolated one", float64(s.chk.holders[xs]), "", 0)
	listed := 0
	for _, a := range others {
		if present(s.chk.views[xs][s.node(a).slot]) {
			listed++
		}
	}
	hidden := len(others) - listed
	r.addTarget("removals of peers other than the isolated one", float64(s.stats.Removals)-float64(len(others)+hidden), "", 0)
	r.add("members the isolated peer lists besides itself", float64(listed), "")
	s.Unreachable(x, false)
	d, ok := s.AwaitConvergence(20*s.Period(), "after the isolation")
	if ok {
		r.addTarget("rounds to re-merge after the isolation", s.rounds(d), "rounds", 5)
	}
	s.quiesce(r, 200)
}
