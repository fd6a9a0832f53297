package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	gossipPort  = 7946 // the agent's id: the agent, or its proxy
	agentPort   = 7947 // the agent behind a proxy
	metricsPort = 9100
)

// proc is a child process whose output goes to files.
type proc struct {
	name     string
	cmd      *exec.Cmd
	out, err string
	done     chan struct{}
}

func startProc(t *testing.T, dir, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, out: filepath.Join(dir, name+".out"), err: filepath.Join(dir, name+".err"), done: make(chan struct{})}
	stdout, err := os.Create(p.out)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(p.err)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	stdout.Close()
	stderr.Close()
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// kill SIGKILLs p and waits for it.
func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stop sends SIGTERM and waits up to 10 s, then kills.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

// agent is one incarnation of `mesh agent` on a host.
type agent struct {
	h       *host
	name    string // unique per incarnation
	p       *proc
	w       *proc // its `mesh watch --json`
	proxy   *proc // nil unless proxied
	ctl     string
	started time.Time
}

// cluster is one agent per host, started fresh for each scenario.
type cluster struct {
	t       *testing.T
	nw      *network
	bin     string
	period  time.Duration
	dir     string
	proxied bool
	rpc     time.Duration // --rpc-timeout; 0: the agent's default (the period)
	agents  []*agent      // by host index
	incs    map[int]int
}

type clusterOpts struct {
	proxied    bool
	rpcTimeout time.Duration
}

func newCluster(t *testing.T, nw *network, bin string, period time.Duration, o clusterOpts) *cluster {
	c := &cluster{t: t, nw: nw, bin: bin, period: period, dir: faultsDir(t), proxied: o.proxied, rpc: o.rpcTimeout, agents: make([]*agent, len(nw.hosts)), incs: map[int]int{}}
	for i := range nw.hosts {
		seeds := []string{}
		if i > 0 {
			seeds = append(seeds, nw.hosts[0].addr(gossipPort))
		}
		c.start(i, fmt.Sprintf("n%d", i+1), seeds)
	}
	took := c.waitAll("all agents see 7 alive, converged", 60*time.Second, func(i int, m members) bool {
		return m.alive() == len(c.agents) && m.Converged
	})
	c.t.Logf("cluster of %d converged %v after the last agent started", len(c.agents), took.Round(time.Millisecond))
	return c
}

// gossipAddr is the id of host i's agent.
func (c *cluster) gossipAddr(i int) string { return c.nw.hosts[i].addr(gossipPort) }

// adminSock is host i's admin socket, where client commands reach its
// agent: a file, so reachable from every network namespace.
func (c *cluster) adminSock(i int) string {
	return "unix:" + filepath.Join(c.dir, fmt.Sprintf("h%d.sock", i+1))
}

// adminAddr is where host i's agent listens for gossip, behind its proxy
// when proxied.
func (c *cluster) adminAddr(i int) string {
	if c.proxied {
		return c.nw.hosts[i].addr(agentPort)
	}
	return c.gossipAddr(i)
}

// start starts an agent (and its proxy, and its watcher) on host i.
func (c *cluster) start(i int, name string, seeds []string) *agent {
	t := c.t
	t.Helper()
	h := c.nw.hosts[i]
	c.incs[i]++
	a := &agent{h: h, name: name}
	args := []string{"agent", "--bind", c.adminAddr(i), "--admin", c.adminSock(i), "--name", name, "--period", c.period.String(),
		"--log-format", "json", "--metrics", h.addr(metricsPort)}
	if c.proxied {
		args = append(args, "--advertise", c.gossipAddr(i))
		if c.incs[i] == 1 {
			a.ctl = filepath.Join(c.dir, fmt.Sprintf("h%d.faults", i+1))
			if err := os.WriteFile(a.ctl, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			self, _ := os.Executable()
			cmd := h.command(context.Background(), self)
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=listen=%s target=%s ctl=%s", envProxy, c.gossipAddr(i), c.adminAddr(i), a.ctl))
			a.proxy = startProc(t, c.dir, fmt.Sprintf("proxy-h%d", i+1), cmd)
		} else {
			a.proxy, a.ctl = c.agents[i].proxy, c.agents[i].ctl
		}
	}
	if len(seeds) > 0 {
		args = append(args, "--join", strings.Join(seeds, ","))
	}
	if c.rpc > 0 {
		args = append(args, "--rpc-timeout", c.rpc.String())
	}
	a.p = startProc(t, c.dir, fmt.Sprintf("%s-h%d", name, i+1), h.command(context.Background(), c.bin, args...))
	a.started = time.Now()
	c.agents[i] = a
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(readFile(a.p.err), `"msg":"agent started"`) {
		if a.p.exited() || time.Now().After(deadline) {
			t.Fatalf("agent %s on %s did not start:\n%s", name, h, readFile(a.p.err))
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.w = startProc(t, c.dir, fmt.Sprintf("watch-%s-h%d", name, i+1), h.command(context.Background(), c.bin, "watch", "--json", "--admin", c.adminSock(i)))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s on %s, removals it wrote:\n%s", name, h, grep(readFile(a.p.err), `"msg":"member failed"`))
			t.Logf("%s on %s, last log lines:\n%s", name, h, tail(readFile(a.p.err), 10))
		}
	})
	return a
}

// others are the gossip addresses of every host but i.
func (c *cluster) others(i int) []string {
	var s []string
	for j := range c.agents {
		if j != i {
			s = append(s, c.gossipAddr(j))
		}
	}
	return s
}

// crash SIGKILLs host i's agent.
func (c *cluster) crash(i int) time.Time {
	a := c.agents[i]
	at := time.Now()
	a.p.kill()
	return at
}

// setFaults writes spec to every proxy's control file.
func (c *cluster) setFaults(spec string) {
	for _, a := range c.agents {
		if err := os.WriteFile(a.ctl, []byte(spec), 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
}

// stopAll stops agents, watchers and proxies (proxies print their counts).
func (c *cluster) stopAll() []string {
	var counts []string
	for _, a := range c.agents {
		a.p.stop()
	}
	for _, a := range c.agents {
		a.w.stop()
		if a.proxy != nil {
			a.proxy.stop()
			counts = append(counts, strings.TrimSpace(readFile(a.proxy.out)))
		}
	}
	return counts
}

// members is `mesh members --json`.
type members struct {
	Self       string   `json:"self"`
	ViewDigest string   `json:"view_digest"`
	Converged  bool     `json:"converged"`
	Members    []member `json:"members"`
}

type member struct {
	Addr   string            `json:"addr"`
	Name   string            `json:"name"`
	Tags   map[string]string `json:"tags"`
	Status string            `json:"status"`
}

func (m members) get(addr string) member {
	for _, mb := range m.Members {
		if mb.Addr == addr {
			return mb
		}
	}
	return member{Addr: addr, Status: "absent"}
}

func (m members) alive() int {
	n := 0
	for _, mb := range m.Members {
		if mb.Status == "alive" {
			n++
		}
	}
	return n
}

// cli runs a mesh client command on host i against its agent.
func (c *cluster) cli(i int, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args = append(args, "--admin", c.adminSock(i), "--timeout", "3s")
	cmd := c.nw.hosts[i].command(ctx, c.bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("mesh %s on h%d: %v: %s", strings.Join(args, " "), i+1, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (c *cluster) members(i int) (members, error) {
	var m members
	out, err := c.cli(i, "members", "--json")
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return m, fmt.Errorf("mesh members --json on h%d printed %q: %v", i+1, out, err)
	}
	return m, nil
}

func (c *cluster) metaSet(i int, kv ...string) {
	c.t.Helper()
	if _, err := c.cli(i, append([]string{"meta", "set"}, kv...)...); err != nil {
		c.t.Fatal(err)
	}
}

// waitAll polls `mesh members --json` on every running agent until cond
// holds for all of them at once, and returns how long that took; it fails
// the test after limit.
func (c *cluster) waitAll(what string, limit time.Duration, cond func(i int, m members) bool) time.Duration {
	c.t.Helper()
	return c.waitOn(what, limit, c.running(), cond)
}

func (c *cluster) waitOn(what string, limit time.Duration, on []int, cond func(i int, m members) bool) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		ok, last := true, ""
		for _, i := range on {
			m, err := c.members(i)
			if err != nil || !cond(i, m) {
				ok = false
				last = fmt.Sprintf("h%d: %s %v", i+1, brief(m), err)
				break
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			c.t.Fatalf("%s: not within %v; last: %s", what, limit, last)
		}
		time.Sleep(c.period / 2)
	}
}

// brief is a one-line view: each member's host, name, status and tags.
func brief(m members) string {
	var b strings.Builder
	fmt.Fprintf(&b, "converged=%v", m.Converged)
	for _, mb := range m.Members {
		fmt.Fprintf(&b, " %s/%s/%s%v", mb.Addr, mb.Name, mb.Status, mb.Tags)
	}
	return b.String()
}

func (c *cluster) running() []int {
	var on []int
	for i, a := range c.agents {
		if !a.p.exited() {
			on = append(on, i)
		}
	}
	return on
}

// event is one line of `mesh watch --json`.
type event struct {
	Time    time.Time         `json:"time"`
	Type    string            `json:"type"`
	Addr    string            `json:"addr"`
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Dropped uint64            `json:"dropped"`
	watcher string            // which agent saw it
}

// events reads every event the watcher of a has printed so far.
func events(t *testing.T, a *agent) []event {
	t.Helper()
	var evs []event
	sc := bufio.NewScanner(strings.NewReader(readFile(a.w.out)))
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("watch of %s printed %q: %v", a.name, sc.Text(), err)
		}
		ev.watcher = a.name
		if ev.Dropped > 0 {
			t.Errorf("watch of %s: %d events dropped", a.name, ev.Dropped)
		}
		evs = append(evs, ev)
	}
	return evs
}

// metrics is the label-free samples of an agent's /metrics.
func (c *cluster) metrics(i int) (map[string]float64, error) {
	h := c.nw.hosts[i]
	body, err := h.httpGet("http://" + h.addr(metricsPort) + "/metrics")
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, nil
}

// sumMetric sums a metric over the running agents.
func (c *cluster) sumMetric(name string) float64 {
	var s float64
	for _, i := range c.running() {
		m, err := c.metrics(i)
		if err != nil {
			c.t.Logf("metrics of h%d: %v", i+1, err)
			continue
		}
		s += m[name]
	}
	return s
}

func (c *cluster) periods(d time.Duration) float64 { return float64(d) / float64(c.period) }

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// faultsDir is where a cluster's agents write their logs and events:
// under MESH_FAULTS_DIR, one directory a test, kept for reading after
// the run; or a temporary one.
func faultsDir(t *testing.T) string {
	root := os.Getenv("MESH_FAULTS_DIR")
	if root == "" {
		return t.TempDir()
	}
	d := filepath.Join(root, t.Name())
	if err := os.RemoveAll(d); err != nil {
		t.Fatalf("MESH_FAULTS_DIR: %v", err)
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatalf("MESH_FAULTS_DIR: %v", err)
	}
	return d
}
