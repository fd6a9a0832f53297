// Command meshbench runs mesh and hashicorp/memberlist side by side on this
// machine, at the same period, and writes RESULTS.md, results.svg and
// results.json.
//
// For each cluster size N it starts N mesh peers (each with its own gRPC
// server on 127.0.0.1) and, afterwards, N memberlist nodes (each with its
// own UDP+TCP port on 127.0.0.1), never both at once, so that neither
// competes with the other for the CPU. Per repetition it measures, in
// periods: join convergence after concurrent joins, propagation of one
// meta update, removal of 1 and of N/8 crashed nodes, and removal of one
// node that left gracefully; the first converged repetition also samples
// steady-state bytes and CPU. Then a fresh cluster of each system runs the
// loss phase, both in the same window (and the windows of the sizes that
// -loss-together groups merged into one), counting false removals.
//
// Run from bench/:
//
//	go run ./cmd/meshbench -n 16,64,128 -reps 5 -loss-together 16+64
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/gossipmesh/mesh/peer"
)

// The configs the clusters actually ran with, for the report, and -v.
var (
	verbose      bool
	meshConfig   peer.PeerConfig
	mlConfigSeen *memberlist.Config
)

func main() {
	render := flag.String("render", "", "re-render RESULTS.md and results.svg from this results.json (after editing closing.md) instead of running")
	worker := flag.String("loss-worker", "", "internal: run the loss phase of this system at the one size -n, talking to the parent run on stdin and stdout")
	spinner := flag.Bool("spin", false, "internal: spin on one core until killed (a -busy loop)")
	o, out, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "meshbench: %v\n", err)
		os.Exit(2)
	}
	switch {
	case *spinner:
		spin()
	case *worker != "":
		err = lossWorker(o, *worker)
	case *render != "":
		err = rerender(*render, out)
	default:
		err = run(o, out)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "meshbench: %v\n", err)
		os.Exit(1)
	}
}

// parseFlags defines the run's flags on fs, parses args and returns the
// checked options and the output directory.
func parseFlags(fs *flag.FlagSet, args []string) (options, string, error) {
	var (
		sizes   = fs.String("n", "16,64,128", "comma-separated cluster sizes")
		reps    = fs.Int("reps", 5, "fresh clusters per system and size (at least 5 for the report's p95)")
		period  = fs.Duration("period", 100*time.Millisecond, "P: mesh PingPeriod = memberlist ProbeInterval")
		steady  = fs.Duration("steady", 10*time.Second, "steady-state window for bytes and CPU (first repetition)")
		lossR   = fs.Float64("loss", 0.10, "probability of dropping each message during the loss phase")
		lossD   = fs.Duration("loss-duration", 2*time.Minute, "length of the loss phase (its own cluster per system, after the repetitions)")
		busy    = fs.Int("busy", 0, "busy loops (processes spinning on one core each) beside the clusters during the loss phase: a starved machine")
		groups  = fs.String("loss-together", "", "sizes whose loss phases share one window, e.g. 16+64 (comma-separated groups; other sizes each get their own)")
		limit   = fs.Float64("limit", 150, "periods to wait for any one change; a change still incomplete then is recorded as censored (> limit)")
		systems = fs.String("systems", "mesh,memberlist", "systems to run, in order")
		seed    = fs.Uint64("seed", 0, "seed for victim choice and loss (0: from the clock)")
		out     = fs.String("out", ".", "directory for RESULTS.md, results.svg and results.json")
		note    = fs.String("closing", "closing.md", "which closing note of cmd/meshbench ends RESULTS.md: closing.md (the P = 100 ms run) or closing-1s.md")
	)
	fs.BoolVar(&verbose, "v", false, "log every false removal, and when each crash was first and last seen, to stderr")
	if err := fs.Parse(args); err != nil {
		return options{}, "", err
	}
	o := options{reps: *reps, period: *period, steady: *steady, lossRate: *lossR,
		lossDuration: *lossD, busy: *busy, limit: *limit, seed: *seed}
	if err := o.parse(*sizes, *systems); err != nil {
		return options{}, "", err
	}
	if err := o.parseLossGroups(*groups); err != nil {
		return options{}, "", err
	}
	c, err := closingNotes.ReadFile(*note)
	if err != nil {
		var names []string
		entries, _ := closingNotes.ReadDir(".")
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return options{}, "", fmt.Errorf("-closing: %q is not one of the closing notes (%s)", *note, strings.Join(names, ", "))
	}
	o.closing = string(c)
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		o.fdLimit = rl.Cur
	}
	return o, *out, nil
}

// parse fills sizes and systems and checks every setting, reporting all
// problems at once.
func (o *options) parse(sizes, systems string) error {
	var errs []string
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 8 {
			errs = append(errs, fmt.Sprintf("-n: %q is not a cluster size of at least 8", s))
			continue
		}
		o.sizes = append(o.sizes, n)
	}
	for _, s := range strings.Split(systems, ",") {
		switch s = strings.TrimSpace(s); s {
		case "mesh", "memberlist":
			o.systems = append(o.systems, s)
		default:
			errs = append(errs, fmt.Sprintf("-systems: %q is neither mesh nor memberlist", s))
		}
	}
	if o.reps < 1 {
		errs = append(errs, fmt.Sprintf("-reps: %d must be at least 1 (5 for a meaningful p95)", o.reps))
	}
	if o.period < 10*time.Millisecond {
		errs = append(errs, fmt.Sprintf("-period: %v is below 10ms", o.period))
	}
	if o.steady < 5*o.period {
		errs = append(errs, fmt.Sprintf("-steady: %v is below 5 periods", o.steady))
	}
	if o.lossRate < 0 || o.lossRate >= 1 {
		errs = append(errs, fmt.Sprintf("-loss: %v is not in [0, 1)", o.lossRate))
	}
	if o.busy < 0 {
		errs = append(errs, fmt.Sprintf("-busy: %d is not a number of busy loops", o.busy))
	}
	if o.lossDuration < 0 {
		errs = append(errs, fmt.Sprintf("-loss-duration: %v is negative", o.lossDuration))
	}
	if o.limit < 10 {
		errs = append(errs, fmt.Sprintf("-limit: %v periods is below 10", o.limit))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// parseLossGroups fills lossGroups from groups such as "16+64,128": the
// sizes joined by + run their loss phases in one window. Every size of -n
// not named gets a window of its own.
func (o *options) parseLossGroups(groups string) error {
	seen := map[int]bool{}
	for _, g := range strings.Split(groups, ",") {
		if strings.TrimSpace(g) == "" {
			continue
		}
		var grp []int
		for _, s := range strings.Split(g, "+") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || !slices.Contains(o.sizes, n) {
				return fmt.Errorf("-loss-together: %q is not one of the sizes -n %v", s, o.sizes)
			}
			if seen[n] {
				return fmt.Errorf("-loss-together: %d is in two groups", n)
			}
			seen[n] = true
			grp = append(grp, n)
		}
		o.lossGroups = append(o.lossGroups, grp)
	}
	for _, n := range o.sizes {
		if !seen[n] {
			o.lossGroups = append(o.lossGroups, []int{n})
		}
	}
	return nil
}

// lossGroupEndingAt returns the group whose loss window is due once the
// repetitions at size n are done (n is its last size in -n order), or nil.
func (o *options) lossGroupEndingAt(n int) []int {
	for _, g := range o.lossGroups {
		last := -1
		for _, m := range g {
			last = max(last, slices.Index(o.sizes, m))
		}
		if o.sizes[last] == n {
			return g
		}
	}
	return nil
}

func run(o options, out string) error {
	start := time.Now()
	fmt.Printf("meshbench: N=%v, %d reps, P=%v, steady %v, loss phase %s, seed %d\n",
		o.sizes, o.reps, o.period, o.steady, o.lossText(), o.seed)
	probe := startLoadProbe()
	time.Sleep(time.Second)
	if other := probe.otherCores(); other > 0.25 {
		fmt.Printf("meshbench: WARNING: other processes are using %.1f of %d cores; timings will be slow and noisy\n", other, runtime.NumCPU())
	}
	var results []*result
	for _, n := range o.sizes {
		for _, sys := range o.systems {
			res := &result{System: sys, N: n, K: max(1, n/8)}
			r := &runner{o: o, start: start, res: res, rng: newRand(o.seed, n, sys)}
			if err := r.run(); err != nil {
				return fmt.Errorf("%s at N=%d: %w", sys, n, err)
			}
			results = append(results, res)
		}
		var window []*result
		for _, r := range results {
			if slices.Contains(o.lossGroupEndingAt(n), r.N) {
				window = append(window, r)
			}
		}
		if o.lossDuration == 0 {
			for _, r := range window {
				r.LossSkipped = "not run (-loss-duration 0)"
			}
		} else if err := lossStage(o, start, window); err != nil {
			return err
		}
	}
	wall := time.Since(start)
	fmt.Printf("meshbench: done in %v\n", wall.Round(time.Second))
	rep := report{o: o, results: results, wall: wall, started: start, args: os.Args[1:]}
	return rep.write(out, true)
}

// write writes the report's files to out; results.json only if withJSON.
func (rep *report) write(out string, withJSON bool) error {
	files := map[string][]byte{
		"RESULTS.md":  rep.markdown(),
		"results.svg": rep.svg(),
	}
	if withJSON {
		files["results.json"] = rep.json()
	}
	for name, b := range files {
		p := filepath.Join(out, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		fmt.Printf("meshbench: wrote %s\n", p)
	}
	return nil
}

// rerender rebuilds RESULTS.md and results.svg from a results.json written
// by an earlier run, with that run's flags, so that the closing note can be
// revised without measuring again. Configs and machine facts are read
// afresh: run it on the machine that measured.
func rerender(path, out string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	var saved struct {
		Args    []string  `json:"args"`
		Started time.Time `json:"started"`
		WallS   float64   `json:"wall_s"`
		Limit   float64   `json:"limit_periods"`
		Seed    uint64    `json:"seed"`
		Results []*result `json:"results"`
	}
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("render %s: %w", path, err)
	}
	var args []string
	for i := 0; i < len(saved.Args); i++ { // drop -out and -render from the saved flags
		a := saved.Args[i]
		if a == "-out" || a == "-render" {
			i++
			continue
		}
		if strings.HasPrefix(a, "-out=") || strings.HasPrefix(a, "-render=") {
			continue
		}
		args = append(args, a)
	}
	o, _, err := parseFlags(flag.NewFlagSet("saved", flag.ContinueOnError), args)
	if err != nil {
		return fmt.Errorf("render %s: saved flags: %w", path, err)
	}
	o.seed = saved.Seed
	if saved.Limit > 0 { // runs before it was saved used -limit, default 300
		o.limit = saved.Limit
	} else if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "-limit") }) {
		o.limit = 300
	}
	for _, r := range saved.Results {
		for _, xs := range [][]float64{r.Join, r.Update, r.Fail1, r.FailK, r.Leave} {
			for i, x := range xs {
				if x < 0 { // a timeout, stored as -1
					xs[i] = math.Inf(1)
				}
			}
		}
		if r.Heal < 0 {
			r.Heal = math.Inf(1)
		}
	}
	meshConfig = peer.NewPeer(peer.PeerConfig{SelfEndpoint: "127.0.0.1:1", PingPeriod: o.period}).Config()
	mlConfigSeen = mlConfig(o.period)
	rep := report{o: o, results: saved.Results, wall: time.Duration(saved.WallS * float64(time.Second)),
		started: saved.Started, args: saved.Args}
	return rep.write(out, false)
}
