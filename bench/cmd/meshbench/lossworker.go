package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The loss phase of each system and size runs in a child process of its
// own (this binary with -loss-worker), so that clusters sharing a loss
// window share only the machine: each has its own Go scheduler and
// garbage collector, and the kernel divides the cores between them. In
// one process, a busy memberlist cluster's allocations and goroutines
// delayed mesh's calls past their deadlines (in a trial on a loaded
// machine, hundreds of false removals at N=16 that a run alone did not
// have).
//
// The child talks in lines on stdout: "ready <join periods>" once its
// cluster converged, or "skip <reason>"; after "go" on stdin it switches
// loss on, reports "progress <removals> <nodes>" every 10 s and ends with
// "result <json>". Any other line is passed through as a note.

// lossOutcome is what a loss worker reports at the end.
type lossOutcome struct {
	Heal      float64 `json:"heal"` // -1: censored
	Loss      int     `json:"loss"`
	LossNodes int     `json:"loss_nodes"`
	Before    int     `json:"before"` // false removals before loss was switched on
	Lagging   int     `json:"lagging"`
}

// lossWorker is the child's side: system at size n.
func lossWorker(o options, system string) error {
	n := o.sizes[0]
	res := &result{System: system, N: n}
	r := &runner{o: o, res: res, rng: newRand(o.seed^0x1055, n, system)}
	tr := newTracker()
	c, err := r.newCluster(tr, o.reps)
	if err != nil {
		return err
	}
	defer c.close()
	ids := c.ids()
	r.sleepPeriods(1 + r.rng.Float64())
	t0 := time.Now()
	c.joinAll()
	join, lag := tr.wait(ids, t0, o.period, o.limit, tr.seesAll(ids))
	if math.IsInf(join, 1) {
		fmt.Printf("skip its loss cluster's join did not converge within %.0f periods (%d of %d nodes missing members)\n", o.limit, len(lag), len(ids))
		return nil
	}
	r.sleepPeriods(10)
	fmt.Printf("ready %.1f\n", join)
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if strings.TrimSpace(line) != "go" {
		return fmt.Errorf("loss worker: expected go, got %q (%v)", line, err)
	}
	before, _ := tr.falseSince(time.Time{})
	t0 = time.Now()
	c.setLoss(o.lossRate)
	end := t0.Add(o.lossDuration)
	for time.Now().Before(end) {
		time.Sleep(min(10*time.Second, time.Until(end)))
		ev, nodes := tr.falseSince(t0)
		fmt.Printf("progress %d %d %.0f\n", ev, nodes, max(0, time.Until(end).Seconds()))
	}
	c.setLoss(0)
	heal, lag := tr.wait(ids, time.Now(), o.period, o.limit, tr.seesAll(ids))
	out := lossOutcome{Heal: heal, Before: before, Lagging: len(lag)}
	if math.IsInf(heal, 1) {
		out.Heal = -1
	}
	out.Loss, out.LossNodes = tr.falseSince(t0)
	b, _ := json.Marshal(out)
	fmt.Printf("result %s\n", b)
	return nil
}

// worker is the parent's handle on one loss worker.
type worker struct {
	r     *runner
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	errc  chan error
}

// startWorker starts the child for r's system and size.
func startWorker(o options, r *runner) (*worker, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-loss-worker", r.res.System, "-n", strconv.Itoa(r.res.N),
		"-reps", strconv.Itoa(o.reps), "-period", o.period.String(),
		"-loss", strconv.FormatFloat(o.lossRate, 'g', -1, 64), "-loss-duration", o.lossDuration.String(),
		"-limit", strconv.FormatFloat(o.limit, 'g', -1, 64), "-seed", strconv.FormatUint(o.seed, 10)}
	if verbose {
		args = append(args, "-v") // its false removals are logged too
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start loss worker: %w", err)
	}
	w := &worker{r: r, cmd: cmd, stdin: stdin, lines: make(chan string), errc: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		w.errc <- cmd.Wait()
	}()
	return w, nil
}

// next returns the worker's next protocol line as verb and rest, passing
// other lines on as notes; ok is false once the worker has exited.
func (w *worker) next() (verb, rest string, ok bool) {
	for line := range w.lines {
		verb, rest, _ = strings.Cut(line, " ")
		switch verb {
		case "ready", "skip", "progress", "result":
			return verb, rest, true
		}
		w.r.logf("loss worker: %s", line)
	}
	return "", "", false
}

// stop ends the worker, whatever state it is in, and reaps it.
func (w *worker) stop() {
	w.stdin.Close()
	if w.cmd.Process != nil {
		w.cmd.Process.Kill()
	}
	for range w.lines {
	}
	<-w.errc
}

// wait reaps a worker that has reported its result.
func (w *worker) wait() error {
	for range w.lines {
	}
	return <-w.errc
}
