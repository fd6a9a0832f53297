package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the run's settings, from flags.
type options struct {
	sizes        []int
	reps         int
	period       time.Duration
	steady       time.Duration // steady-state window, split into 5 samples
	lossRate     float64
	lossDuration time.Duration
	busy         int     // busy loops beside the clusters during the loss phase
	limit        float64 // periods to wait for any one change
	systems      []string
	lossGroups   [][]int // sizes whose loss phases share a window
	seed         uint64
	fdLimit      uint64
	closing      string // the closing note's text (-closing)
}

// result holds one system's figures at one cluster size. Times are in
// periods; each slice has one sample per repetition (steady-state figures:
// one per window).
type result struct {
	System string `json:"system"`
	N      int    `json:"n"`
	K      int    `json:"k"` // nodes killed at once in FailK

	Join   []float64 `json:"join"`
	Update []float64 `json:"update"`
	Fail1  []float64 `json:"fail1"`
	FailK  []float64 `json:"failk"`
	Leave  []float64 `json:"leave"`

	Bytes     []float64 `json:"bytes_per_node_s"`         // payload bytes sent per node per second
	Wire      []float64 `json:"wire_per_node_s"`          // with the system's framing
	CPU       []float64 `json:"cpu_s_per_node_min"`       // process CPU seconds per node per minute
	Conns     []float64 `json:"conns_per_node_max"`       // mesh, after the steady window: most TCP connections any node had open, both directions
	FDs       float64   `json:"fds"`                      // descriptors the process had open then
	Heal      float64   `json:"heal_after_loss"`          // periods until all see all again after the loss phase
	Loss      int       `json:"false_removals_loss"`      // observers' removals of running nodes during the loss phase
	LossNodes int       `json:"false_removed_nodes_loss"` // distinct running nodes so removed
	Other     int       `json:"false_removals_normal"`    // observers' removals of running nodes outside it, all reps

	// SteadyUnconverged: the steady state was sampled on a cluster whose
	// join never completed, because no repetition's did.
	SteadyUnconverged bool `json:"steady_unconverged,omitempty"`
	// LossSkipped says why the loss phase did not run; empty if it ran.
	LossSkipped string `json:"loss_skipped,omitempty"`
	// LossWith names the systems whose loss phase ran in the same window.
	LossWith []string `json:"loss_with,omitempty"`

	OtherLoad    []float64 `json:"other_load_cores"` // cores other processes used, per repetition
	LossDuration float64   `json:"loss_duration_s"`
	Notes        []string  `json:"notes,omitempty"` // timeouts and other anomalies
}

// runner runs the phases of one system at one size and prints progress.
type runner struct {
	o        options
	start    time.Time
	rng      *rand.Rand
	res      *result
	timeouts int // repetitions whose join did not converge
}

func (r *runner) logf(format string, args ...any) {
	fmt.Printf("[%6.1fs] %-10s N=%-3d ", time.Since(r.start).Seconds(), r.res.System, r.res.N)
	fmt.Printf(format+"\n", args...)
}

func (r *runner) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.res.Notes = append(r.res.Notes, s)
	r.logf("NOTE %s", s)
}

func (r *runner) sleepPeriods(k float64) { time.Sleep(time.Duration(k * float64(r.o.period))) }

// newCluster starts a cluster of the runner's system.
// rep numbers from 0 to reps-1 are the repetitions; rep = reps is the loss
// phase's cluster.
func (r *runner) newCluster(tr *tracker, rep int) (cluster, error) {
	seed := r.o.seed ^ uint64(r.res.N)<<32 ^ uint64(rep)
	if r.res.System == "mesh" {
		c, err := startMesh(r.res.N, r.o.period, tr, seed)
		if err != nil {
			return nil, err
		}
		meshConfig = c.configSeen
		return c, nil
	}
	c, err := startMemberlist(r.res.N, r.o.period, tr, seed)
	if err != nil {
		return nil, err
	}
	mlConfigSeen = c.config
	return c, nil
}

// run measures every repetition.
func (r *runner) run() error {
	for rep := range r.o.reps {
		if err := r.rep(rep); err != nil {
			return err
		}
		runtime.GC()
		// A cluster that twice failed to converge is overloaded on this
		// machine: more repetitions would only add timeouts and minutes.
		if r.timeouts == 2 && rep+1 < r.o.reps {
			r.note("gave up after %d repetitions: the cluster did not converge in two of them", rep+1)
			break
		}
	}
	return nil
}

func (r *runner) rep(rep int) error {
	probe := startLoadProbe()
	defer func() { r.res.OtherLoad = append(r.res.OtherLoad, probe.otherCores()) }()
	tr := newTracker()
	c, err := r.newCluster(tr, rep)
	if err != nil {
		return err
	}
	defer c.close()
	ids := c.ids()
	live := slices.Clone(ids)
	index := map[string]int{}
	for i, id := range ids {
		index[id] = i
	}
	tag := fmt.Sprintf("rep %d/%d", rep+1, r.o.reps)
	// Let the nodes' timers drift apart, as on real machines.
	r.sleepPeriods(1 + r.rng.Float64())

	wait := func(what string, t0 time.Time, done doneFunc) float64 {
		p, lag := tr.wait(live, t0, r.o.period, r.o.limit, done)
		if math.IsInf(p, 1) {
			var drops string
			if d, ok := c.(interface{ droppedEvents() uint64 }); ok {
				drops = fmt.Sprintf("; subscriptions dropped %d events", d.droppedEvents())
			}
			r.note("%s %s: %d of %d nodes not done after %.0f periods (e.g. %v, which misses %v)%s", tag, what, len(lag), len(live), r.o.limit, lag[:min(2, len(lag))], tr.missing(lag[0], live), drops)
		}
		return p
	}
	pick := func(k int) []string { // k random live nodes, never the seed
		cand := slices.Clone(live[1:])
		r.rng.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
		return cand[:k]
	}
	remove := func(gone []string) {
		live = slices.DeleteFunc(live, func(id string) bool { return slices.Contains(gone, id) })
	}

	// 1. Join: every node joins the first, all at once.
	t0 := time.Now()
	c.joinAll()
	join := wait("join", t0, tr.seesAll(live))
	r.res.Join = append(r.res.Join, join)
	converged := !math.IsInf(join, 1)
	if !converged {
		r.timeouts++
	}
	r.sleepPeriods(10)

	// The steady state is sampled once, in the first repetition that
	// converged; if none does, in the last one, flagged, so that the cost
	// of a cluster that never settles is still on record.
	last := rep == r.o.reps-1 || r.timeouts == 2
	if r.res.Bytes == nil && (converged || last) {
		r.res.SteadyUnconverged = !converged
		r.logf("%s join %s; steady state for %v", tag, fmtP(join), r.o.steady)
		r.steady(c, len(live))
	}
	if !converged {
		// Update, crash and leave times assume every node sees every
		// other; on a cluster still missing members they would time the
		// churn of an overloaded process, and each could wait out the
		// limit again.
		r.note("%s: update, failure detection and leave not measured: the join did not converge", tag)
		all, _ := tr.falseSince(time.Time{})
		r.res.Other += all
		return nil
	}

	// 2. Update propagation.
	u := pick(1)[0]
	meta := fmt.Sprintf("rep%d-%s", rep, r.res.System)
	t0 = time.Now()
	c.setMeta(index[u], meta)
	update := wait("update", t0, tr.seesMeta(u, meta))
	r.res.Update = append(r.res.Update, update)
	r.sleepPeriods(5)

	// 3. Failure detection: k = 1, then k = N/8, killed at once.
	crash := func(k int) float64 {
		victims := pick(k)
		tr.markCrashed(victims...)
		remove(victims)
		r.checkSeen(tr, tag, fmt.Sprintf("fail k=%d", k), live, victims)
		t0 := time.Now()
		done := make(chan struct{}, k)
		for _, v := range victims {
			go func() { c.crash(index[v]); done <- struct{}{} }()
		}
		for range k {
			<-done
		}
		p := wait(fmt.Sprintf("fail k=%d", k), t0, tr.dropped(victims))
		if verbose && !math.IsInf(p, 1) {
			fmt.Fprintf(os.Stderr, "%s fail k=%d: %s\n", tag, k, tr.dropSpread(live, victims, t0, r.o.period))
		}
		return p
	}
	fail1 := crash(1)
	r.res.Fail1 = append(r.res.Fail1, fail1)
	r.sleepPeriods(5)
	failK := crash(r.res.K)
	r.res.FailK = append(r.res.FailK, failK)
	r.sleepPeriods(5)

	// 4. Graceful leave.
	l := pick(1)
	tr.markLeft(l[0])
	remove(l)
	r.checkSeen(tr, tag, "leave", live, l)
	t0 = time.Now()
	c.leave(index[l[0]])
	leave := wait("leave", t0, tr.dropped(l))
	r.res.Leave = append(r.res.Leave, leave)

	all, _ := tr.falseSince(time.Time{})
	r.res.Other += all
	r.logf("%s join %s  update %s  fail1 %s  fail%d %s  leave %s  (periods); other processes used %.2f cores",
		tag, fmtP(join), fmtP(update), fmtP(fail1), r.res.K, fmtP(failK), fmtP(leave), probe.otherCores())
	return nil
}

// checkSeen notes when observers in live had already dropped one of gone
// before the crash or leave (a false removal not yet undone): for them
// the change is done before it happens, and the sample's time, never less
// than 0, understates detection.
func (r *runner) checkSeen(tr *tracker, tag, what string, live, gone []string) {
	if n := tr.notSeeing(live, gone); n > 0 {
		r.note("%s %s: %d of %d observers had already dropped %v before it; the time understates detection", tag, what, n, len(live), gone)
	}
}

// steady samples traffic and process CPU over the steady-state window in
// five equal parts. Only this cluster runs in the process meanwhile.
func (r *runner) steady(c cluster, n int) {
	w := r.o.steady / 5
	for range 5 {
		t0, c0 := c.traffic(), cpuTime()
		s := time.Now()
		time.Sleep(w)
		sec := time.Since(s).Seconds()
		t1, c1 := c.traffic(), cpuTime()
		r.res.Bytes = append(r.res.Bytes, float64(t1.payload-t0.payload)/float64(n)/sec)
		r.res.Wire = append(r.res.Wire, float64(t1.wire-t0.wire)/float64(n)/sec)
		r.res.CPU = append(r.res.CPU, (c1-c0).Seconds()/float64(n)/(sec/60))
	}
	// Connections once the window is over: a seed holds one from every
	// joiner until they have been idle for MaxRetryInterval.
	if cc, ok := c.(interface{ conns() []int }); ok {
		r.res.Conns = []float64{float64(slices.Max(cc.conns()))}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		r.res.FDs = float64(len(fds))
	}
	var conns string
	if len(r.res.Conns) > 0 {
		conns = fmt.Sprintf("%.0f connections at most per node, ", r.res.Conns[0])
	}
	r.logf("steady: %.0f B/node/s payload, %.0f wire, %.3f CPU s/node/min (medians); then %s%.0f descriptors",
		median(r.res.Bytes), median(r.res.Wire), median(r.res.CPU), conns, r.res.FDs)
}

// lossStage runs the loss phases of rs (both systems at one size, or at
// the sizes -loss-together groups) in one window: a fresh cluster per
// result, each in its own process (see lossworker.go), joined and
// converged first, then the same loss rate switched on in all of them at
// the same moment for the loss duration. Sharing the window is what keeps
// a 2-minute phase per system and size within the run's time budget;
// every cluster in it faces the same loss for the same time on the same
// machine, and the report names who shared it. memberlist's clusters start
// and join first, smallest first, before the others load the CPU, because
// its join is the one that struggles at large N. A result whose system
// never converged at its size, or whose loss cluster does not, is left out
// with the reason recorded: removals counted on a cluster still missing
// members would be churn, not the effect of loss.
func lossStage(o options, start time.Time, rs []*result) error {
	ordered := slices.Clone(rs)
	slices.SortStableFunc(ordered, func(a, b *result) int {
		if c := cmpBool(a.System != "memberlist", b.System != "memberlist"); c != 0 {
			return c
		}
		return a.N - b.N
	})
	var in []*worker
	defer func() {
		for _, w := range in {
			if w != nil {
				w.stop()
			}
		}
	}()
	for _, res := range ordered {
		r := &runner{o: o, start: start, res: res}
		if stalled(res) == len(res.Join) {
			res.LossSkipped = fmt.Sprintf("not run: no repetition's join converged at N=%d", res.N)
			r.logf("loss: %s", res.LossSkipped)
			continue
		}
		w, err := startWorker(o, r)
		if err != nil {
			return err
		}
		in = append(in, w)
		verb, rest, ok := w.next()
		switch {
		case !ok:
			in = in[:len(in)-1]
			return fmt.Errorf("%s at N=%d: loss worker exited: %v", res.System, res.N, <-w.errc)
		case verb == "skip":
			res.LossSkipped = "not run: " + rest
			r.note("loss: %s", res.LossSkipped)
			in = in[:len(in)-1]
			w.wait()
			continue
		case verb != "ready":
			return fmt.Errorf("%s at N=%d: loss worker said %q before ready", res.System, res.N, verb)
		}
		r.logf("loss: cluster joined in %s periods (own process, pid %d)", rest, w.cmd.Process.Pid)
	}
	if len(in) == 0 {
		return nil
	}
	names := make([]string, len(in))
	for i, w := range in {
		names[i] = fmt.Sprintf("%s N=%d", w.r.res.System, w.r.res.N)
	}
	for i, w := range in {
		w.r.res.LossWith = slices.Delete(slices.Clone(names), i, i+1)
	}
	in[0].r.logf("loss: %s in %s at once", o.lossText(), strings.Join(names, ", "))
	for _, w := range in {
		if _, err := io.WriteString(w.stdin, "go\n"); err != nil {
			return fmt.Errorf("%s at N=%d: loss worker: %w", w.r.res.System, w.r.res.N, err)
		}
	}
	stopBusy, err := startBusy(o.busy)
	if err != nil {
		return err
	}
	defer stopBusy()
	// Each worker's lines are read in turn; the others' wait in their
	// pipes meanwhile, which does not delay the workers (a line is far
	// smaller than a pipe's buffer).
	left := len(in)
	for left > 0 {
		for i, w := range in {
			if w == nil {
				continue
			}
			res := w.r.res
			verb, rest, ok := w.next()
			switch {
			case !ok:
				in[i] = nil
				return fmt.Errorf("%s at N=%d: loss worker exited: %v", res.System, res.N, <-w.errc)
			case verb == "progress":
				var ev, nodes int
				var secs float64
				fmt.Sscan(rest, &ev, &nodes, &secs)
				w.r.logf("loss: %3.0fs left, %d false removals (of %d nodes) so far", secs, ev, nodes)
				continue
			case verb != "result":
				return fmt.Errorf("%s at N=%d: loss worker said %q during the loss phase", res.System, res.N, verb)
			}
			var out lossOutcome
			if err := json.Unmarshal([]byte(rest), &out); err != nil {
				return fmt.Errorf("%s at N=%d: loss worker result: %w", res.System, res.N, err)
			}
			in[i] = nil
			left--
			if err := w.wait(); err != nil {
				return fmt.Errorf("%s at N=%d: loss worker: %w", res.System, res.N, err)
			}
			res.Heal = out.Heal
			if out.Heal < 0 {
				res.Heal = math.Inf(1)
				w.r.note("after the loss phase %d nodes still miss members after %.0f periods", out.Lagging, o.limit)
			}
			res.Loss, res.LossNodes = out.Loss, out.LossNodes
			res.LossDuration = o.lossDuration.Seconds()
			res.Other += out.Before
			w.r.logf("loss: %d false removals (of %d nodes), %s; all see all again %s periods after it ended",
				res.Loss, res.LossNodes, o.lossText(), fmtP(res.Heal))
		}
	}
	return nil
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// cpuTime returns the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func fmtP(p float64) string {
	if math.IsInf(p, 1) {
		return "timeout"
	}
	return fmt.Sprintf("%.1f", p)
}

// median returns the middle of xs (the mean of the middle two for even
// lengths); NaN for none.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	switch {
	case len(s) == 0:
		return math.NaN()
	case len(s)%2 == 1:
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// p95 returns the nearest-rank 95th percentile of xs: the smallest value
// at least 95% of the samples do not exceed. Below 20 samples that is the
// maximum, so with 5 repetitions p95 is the worst run.
func p95(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(0.95 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// newRand returns the random source for victim choice of one system at one
// size, derived from the run's seed.
func newRand(seed uint64, n int, system string) *rand.Rand {
	s := seed ^ uint64(n)
	for _, b := range []byte(system) {
		s = s*31 + uint64(b)
	}
	return rand.New(rand.NewPCG(s, seed))
}

// machineBusy returns the CPU time all processes on the machine have used
// (user, nice, system, irq, softirq, steal over every core), from
// /proc/stat; 0 where it cannot be read.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}

// loadProbe measures how many cores other processes kept busy meanwhile:
// machine CPU minus this process's CPU, per second of wall time.
type loadProbe struct {
	wall         time.Time
	busy, ownCPU time.Duration
}

func startLoadProbe() loadProbe {
	return loadProbe{wall: time.Now(), busy: machineBusy(), ownCPU: cpuTime()}
}

func (p loadProbe) otherCores() float64 {
	sec := time.Since(p.wall).Seconds()
	if sec <= 0 || p.busy == 0 {
		return 0
	}
	other := (machineBusy() - p.busy) - (cpuTime() - p.ownCPU)
	return max(0, other.Seconds()/sec)
}
