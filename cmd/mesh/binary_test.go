package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binPeriod is the agents' gossip period in the multi-process test.
const binPeriod = 100 * time.Millisecond

// binWait bounds every wait on real processes; the machine is shared, so
// it is far above what the protocol needs (removal takes about 6 periods).
const binWait = 30 * time.Second

// TestBinary builds the mesh binary and runs it as separate processes: a
// 5-agent cluster on loopback, then the one-line errors.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildMesh(t)
	t.Run("cluster", func(t *testing.T) { testCluster(t, bin) })
	t.Run("default admin", func(t *testing.T) { testDefaultAdmin(t, bin) })
	t.Run("errors", func(t *testing.T) { testErrors(t, bin) })
}

func buildMesh(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mesh")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race") // reuses this test's compiled packages
	}
	start := time.Now()
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// proc is a mesh process whose stdout and stderr go to files.
type proc struct {
	name     string
	cmd      *exec.Cmd
	out, err string // file paths
	done     chan struct{}
	state    *os.ProcessState
	addr     string // an agent's address, from its "agent started" log line
	admin    string // its admin address, from the same line
	metrics  string
}

func startProc(t *testing.T, bin, name string, args ...string) *proc {
	t.Helper()
	return startProcWith(t, nil, bin, name, args...)
}

// startProcWith is startProc with a change to the command before it starts.
func startProcWith(t *testing.T, tweak func(*exec.Cmd), bin, name string, args ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	p := &proc{name: name, out: filepath.Join(dir, "stdout"), err: filepath.Join(dir, "stderr"), done: make(chan struct{})}
	stdout, err := os.Create(p.out)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(p.err)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = childEnv()
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	if tweak != nil {
		tweak(p.cmd)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	stdout.Close()
	stderr.Close()
	go func() {
		p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", p.name, readFile(p.err))
		}
	})
	return p
}

// childEnv is the environment of the processes under test. A -race binary
// otherwise sleeps 1s at exit (atexit_sleep_ms); a race it finds still
// makes it exit non-zero, which the test checks.
func childEnv() []string {
	return append(os.Environ(), "GORACE=atexit_sleep_ms=0")
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// wait waits for the process to exit and returns its state.
func (p *proc) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	select {
	case <-p.done:
		return p.state
	case <-time.After(binWait):
		t.Fatalf("%s did not exit within %v", p.name, binWait)
		return nil
	}
}

func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.name, err)
	}
}

// startAgent starts `mesh agent` on a free port, with its admin API on a
// unix socket of its own, and reads both addresses from its JSON log.
func startAgent(t *testing.T, bin, name string, args ...string) *proc {
	t.Helper()
	args = append([]string{"agent", "--bind", "127.0.0.1:0", "--admin", "unix:" + filepath.Join(t.TempDir(), name+".sock"),
		"--name", name, "--period", binPeriod.String(), "--log-format", "json"}, args...)
	return awaitStarted(t, startProc(t, bin, name, args...))
}

// awaitStarted waits for an agent's "agent started" log line and reads its
// addresses from it.
func awaitStarted(t *testing.T, p *proc) *proc {
	t.Helper()
	deadline := time.Now().Add(binWait)
	for {
		sc := bufio.NewScanner(strings.NewReader(readFile(p.err)))
		for sc.Scan() {
			var l struct{ Msg, Addr, Admin, Metrics string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "agent started" {
				p.addr, p.admin, p.metrics = l.Addr, l.Admin, l.Metrics
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("agent %s exited before starting: %v\n%s", p.name, p.state, readFile(p.err))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s did not log 'agent started' within %v", p.name, binWait)
		}
	}
}

// cli runs a client command to completion.
func cli(bin string, args ...string) (code int, stdout, stderr string) {
	ctx, cancel := context.WithTimeout(context.Background(), binWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		code = -1
	}
	return code, out.String(), errb.String()
}

// membersOf runs `mesh members --json` against an agent's admin address.
func membersOf(t *testing.T, bin, admin string) (membersJSON, error) {
	t.Helper()
	code, out, errOut := cli(bin, "members", "--json", "--admin", admin)
	var m membersJSON
	if code != 0 {
		return m, fmt.Errorf("mesh members --admin %s: exit %d: %s", admin, code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return m, fmt.Errorf("mesh members --json output %q: %v", out, err)
	}
	return m, nil
}

func statusIn(m membersJSON, addr string) string {
	for _, mb := range m.Members {
		if mb.Addr == addr {
			return mb.Status
		}
	}
	return "absent"
}

func (m membersJSON) alive() int {
	n := 0
	for _, mb := range m.Members {
		if mb.Status == "alive" {
			n++
		}
	}
	return n
}

// until polls cond on every agent in on until it holds for all.
func until(t *testing.T, bin, what string, on []*proc, cond func(membersJSON) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		last, ok := "", true
		for _, a := range on {
			m, err := membersOf(t, bin, a.admin)
			if err != nil || !cond(m) {
				last, ok = fmt.Sprintf("%s: %+v %v", a.name, m, err), false
				break
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > binWait {
			t.Fatalf("%s: not within %v; last: %s", what, binWait, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testCluster(t *testing.T, bin string) {
	// a0 runs two event handlers: one records every event, one hangs on
	// every event until killed at the timeout.
	dir := t.TempDir()
	recorded := filepath.Join(dir, "events")
	rec := writeScript(t, dir, "rec.sh", `read -r tags
printf '%s|%s|%s|%s|%s|%s\n' "$(date +%s.%N)" "$MESH_EVENT" "$MESH_ADDR" "$MESH_NAME" "$MESH_SELF" "$tags" >> `+recorded+"\n")
	hang := writeScript(t, dir, "hang.sh", "sleep 600\n")
	const handlerTimeout = 2 * time.Second
	agents := []*proc{startAgent(t, bin, "a0", "--metrics", "127.0.0.1:0",
		"--event-handler", rec, "--event-handler", "join,update,leave,failed="+hang, "--event-handler-timeout", handlerTimeout.String())}
	for i := 1; i < 4; i++ {
		agents = append(agents, startAgent(t, bin, fmt.Sprintf("a%d", i), "--join", agents[0].addr))
	}
	// a4 joins with `mesh join` instead of --join.
	agents = append(agents, startAgent(t, bin, "a4"))
	code, out, errOut := cli(bin, "join", "--admin", agents[4].admin, agents[1].addr)
	if code != 0 || !strings.Contains(out, "joined: "+agents[1].addr+" answered") {
		t.Errorf("mesh join: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = cli(bin, "wait-converged", "--admin", agents[2].admin, "--members", "5")
	if code != 0 || !strings.HasPrefix(out, "converged: 5 members alive") {
		t.Errorf("mesh wait-converged --members 5: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	took := until(t, bin, "5 agents see each other, converged", agents, func(m membersJSON) bool {
		return m.alive() == 5 && m.Converged
	})
	t.Logf("5 agents converged %v after wait-converged returned", took.Round(time.Millisecond))
	code, out, errOut = cli(bin, "meta", "set", "--admin", agents[1].admin, "name=one", "zone=b")
	if code != 0 || out != "meta of "+agents[1].addr+": name=one tags=zone=b\n" {
		t.Errorf("mesh meta set: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	until(t, bin, "a0 sees a1's new meta", agents[:1], func(m membersJSON) bool {
		for _, mb := range m.Members {
			if mb.Addr == agents[1].addr {
				return mb.Name == "one" && mb.Tags["zone"] == "b"
			}
		}
		return false
	})
	for _, a := range agents {
		m, err := membersOf(t, bin, a.admin)
		if err != nil || m.Self != a.addr || m.Period != binPeriod.String() || len(m.ViewDigest) != 16 {
			t.Errorf("members of %s: %+v, %v", a.name, m, err)
		}
	}
	resp, err := http.Get("http://" + agents[0].metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `mesh_members{state="alive"} 5`) {
		t.Errorf("a0 /metrics lacks mesh_members{state=\"alive\"} 5")
	}

	// Watchers on two observers record when they see the leave.
	watchers := []*proc{
		startProc(t, bin, "watch-a0", "watch", "--json", "--admin", agents[0].admin),
		startProc(t, bin, "watch-a1", "watch", "--json", "--admin", agents[1].admin),
	}

	// SIGKILL a4: no goodbye; the others declare it failed.
	killed := agents[4]
	killed.signal(t, syscall.SIGKILL)
	if st := killed.wait(t); st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("a4 exit %v, want killed", st)
	}
	took = until(t, bin, "a0..a3 see a4 failed", agents[:4], func(m membersJSON) bool {
		return statusIn(m, killed.addr) == "failed"
	})
	t.Logf("SIGKILLed agent seen failed by all after %v (%.1f periods)", took.Round(time.Millisecond), float64(took)/float64(binPeriod))

	// SIGTERM a3: it leaves, everyone marks it left within 2 periods.
	leaver := agents[3]
	sent := time.Now()
	leaver.signal(t, syscall.SIGTERM)
	if st := leaver.wait(t); st.ExitCode() != 0 {
		t.Errorf("a3 after SIGTERM: %v, want exit 0\n%s", st, readFile(leaver.err))
	}
	until(t, bin, "a0..a2 see a3 left", agents[:3], func(m membersJSON) bool {
		return statusIn(m, leaver.addr) == "left"
	})
	for _, w := range watchers {
		seen := leaveSeen(t, w, leaver.addr)
		if d := seen.Sub(sent); d > 2*binPeriod {
			t.Errorf("%s saw a3 leave %v after SIGTERM, want within 2 periods (%v)", w.name, d, 2*binPeriod)
		} else {
			t.Logf("%s saw a3 leave %v after SIGTERM", w.name, d.Round(time.Millisecond))
		}
	}

	// a0's recording handler saw the leave promptly, although the other
	// handler hangs on every event.
	seen := awaitRecorded(t, recorded, "leave", leaver.addr)
	if d := seen.Sub(sent); d > handlerTimeout/2 {
		t.Errorf("a0's handler recorded a3's leave %v after SIGTERM; want well within the hanging handler's timeout (%v)", d, handlerTimeout)
	} else {
		t.Logf("a0's handler recorded a3's leave %v after SIGTERM", d.Round(time.Millisecond))
	}

	// Stop the rest: watchers exit 0 on SIGINT, agents 0 on SIGTERM.
	for _, w := range watchers {
		w.signal(t, syscall.SIGINT)
		if st := w.wait(t); st.ExitCode() != 0 {
			t.Errorf("%s after SIGINT: %v, want exit 0\n%s", w.name, st, readFile(w.err))
		}
	}
	for _, a := range agents[:3] {
		a.signal(t, syscall.SIGTERM)
	}
	for _, a := range agents[:3] {
		if st := a.wait(t); st.ExitCode() != 0 {
			t.Errorf("%s after SIGTERM: %v, want exit 0\n%s", a.name, st, readFile(a.err))
		}
	}
	checkHandlers(t, agents, recorded, hang)
	for _, addr := range []string{agents[0].addr, agents[1].addr, agents[2].addr, agents[3].addr, agents[4].addr, agents[0].metrics} {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("port %s still bound after every process exited: %v", addr, err)
			continue
		}
		lis.Close()
	}
}

// leaveSeen returns when a `mesh watch --json` process saw addr leave.
func leaveSeen(t *testing.T, w *proc, addr string) time.Time {
	t.Helper()
	deadline := time.Now().Add(binWait)
	for {
		sc := bufio.NewScanner(strings.NewReader(readFile(w.out)))
		for sc.Scan() {
			var ev eventJSON
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("%s printed %q: %v", w.name, sc.Text(), err)
			}
			if ev.Type == "leave" && ev.Addr == addr {
				return ev.Time
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s saw no leave of %s within %v:\n%s", w.name, addr, binWait, readFile(w.out))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// testErrors: a bad flag, a taken port and an unreachable --addr each give
// one line on stderr and a non-zero exit.
func testErrors(t *testing.T, bin string) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	unreachable := freeAddr(t)
	noSock := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"agent", "--bogus"}, exitUsage, "mesh agent: flag provided but not defined: -bogus (see 'mesh agent -h')"},
		{[]string{"agent", "--bind", "127.0.0.1"}, exitUsage, `mesh agent: --bind: "127.0.0.1" is not host:port`},
		{[]string{"agent", "--bind", taken.Addr().String()}, exitFail, "mesh agent: --bind " + taken.Addr().String() + ": cannot listen: bind: address already in use"},
		{[]string{"members", "--admin", unreachable}, exitFail, "mesh members: cannot reach an agent at " + unreachable + ": connect: connection refused"},
		{[]string{"wait-converged", "--admin", unreachable, "--timeout", "300ms"}, exitFail, "mesh wait-converged: not converged within 300ms (last: cannot reach an agent at " + unreachable},
		{[]string{"members", "--admin", "unix:" + noSock}, exitFail, "mesh members: cannot reach an agent at unix:" + noSock + ": connect: no such file or directory; is an agent running on this host with this --admin?"},
		{[]string{"members", "--addr", "127.0.0.1:7946"}, exitUsage, "mesh members: invalid value \"127.0.0.1:7946\" for flag -addr: the admin API is no longer served on the gossip port; pass the agent's --admin address as --admin"},
		{[]string{"agent", "--admin", "10.1.2.3:7373"}, exitUsage, "mesh agent: --admin 10.1.2.3:7373 is not a loopback address"},
		{[]string{"agent", "--event-handler", "join=/no/such/handler"}, exitUsage, "mesh agent: --event-handler join=/no/such/handler: no such file or directory; give the path of an executable file"},
		{[]string{"agent", "--event-handler", "joined=/bin/true"}, exitUsage, "mesh agent: invalid value \"joined=/bin/true\" for flag -event-handler: unknown event type \"joined\""},
	} {
		code, out, errOut := cli(bin, tc.args...)
		if code != tc.code || out != "" || !oneLine(errOut) || !strings.HasPrefix(errOut, tc.want) {
			t.Errorf("mesh %q: exit %d, stdout %q, stderr %q; want exit %d and one line starting %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
}

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// handlerLine is one event as rec.sh recorded it.
type handlerLine struct {
	at                            time.Time
	event, addr, name, self, tags string
}

func readRecorded(t *testing.T, path string) []handlerLine {
	t.Helper()
	var out []handlerLine
	for _, l := range strings.Split(strings.TrimSpace(readFile(path)), "\n") {
		f := strings.SplitN(l, "|", 6)
		if len(f) != 6 {
			continue // empty file, or a line being written
		}
		secs, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			t.Fatalf("recorded line %q: %v", l, err)
		}
		out = append(out, handlerLine{time.Unix(0, int64(secs*1e9)), f[1], f[2], f[3], f[4], f[5]})
	}
	return out
}

// awaitRecorded waits until rec.sh recorded event for addr, and returns when.
func awaitRecorded(t *testing.T, path, event, addr string) time.Time {
	t.Helper()
	deadline := time.Now().Add(binWait)
	for {
		for _, l := range readRecorded(t, path) {
			if l.event == event && l.addr == addr {
				return l.at
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s of %s recorded within %v:\n%s", event, addr, binWait, readFile(path))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkHandlers checks, once a0 has exited, that its recording handler saw
// each member's events in the order a0 logged them, join first, with the meta, and that the
// hanging handler was killed at its timeout and logged so.
func checkHandlers(t *testing.T, agents []*proc, recorded, hang string) {
	t.Helper()
	a0 := agents[0]
	type seen struct{ event, name string }
	logged := map[string][]seen{}
	var kills int
	sc := bufio.NewScanner(strings.NewReader(readFile(a0.err)))
	for sc.Scan() {
		var l struct{ Msg, Type, Event, Addr, Name, Handler, Status string }
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		switch {
		case l.Msg == "membership event":
			logged[l.Addr] = append(logged[l.Addr], seen{l.Type, l.Name})
		case l.Msg == "event handler killed: timed out" && l.Handler == "join,update,leave,failed="+hang && l.Status == "signal: killed":
			kills++
		case l.Msg == "event handlers not run: the agent is stopping": // the hanging one's queue
		case strings.HasPrefix(l.Msg, "event handler") && l.Handler != "join,update,leave,failed="+hang && l.Msg != "event handler ran":
			t.Errorf("a0 logged for the recording handler: %s", sc.Text())
		}
	}
	got := map[string][]seen{}
	for _, l := range readRecorded(t, recorded) {
		if l.self != a0.addr {
			t.Errorf("MESH_SELF %q, want %s", l.self, a0.addr)
		}
		got[l.addr] = append(got[l.addr], seen{l.event, l.name})
		if l.addr == agents[1].addr && l.name == "one" && l.tags != `{"zone":"b"}` {
			t.Errorf("a1's update recorded with tags %s on stdin, want {\"zone\":\"b\"}", l.tags)
		}
	}
	for i, a := range agents[1:] {
		// Each sequence ends where its subscriber stopped as a0 shut down:
		// one is a prefix of the other.
		g, w := got[a.addr], logged[a.addr]
		n := min(len(g), len(w))
		if n == 0 || !slices.Equal(g[:n], w[:n]) {
			t.Errorf("a%d's events: handler saw %v, a0 logged %v; want the same order", i+1, g, w)
			continue
		}
		if g[0].event != "join" {
			t.Errorf("a%d's first event for the handler: %v, want join", i+1, g[0])
		}
	}
	for _, want := range []struct {
		a     *proc
		event string
		name  string
	}{{agents[1], "update", "one"}, {agents[3], "leave", "a3"}, {agents[4], "failed", "a4"}} {
		if !slices.Contains(got[want.a.addr], seen{want.event, want.name}) {
			t.Errorf("handler never saw %s of %s (%s): %v", want.event, want.name, want.a.addr, got[want.a.addr])
		}
	}
	if kills == 0 {
		t.Errorf("a0 logged no kill of the hanging handler:\n%s", readFile(a0.err))
	}
	t.Logf("a0's handlers: %d events recorded in order, %d runs of the hanging one killed", len(readRecorded(t, recorded)), kills)
}

// testDefaultAdmin: an agent and `mesh members`, both without --admin and
// without MESH_ADMIN, meet on the default socket of their user. As root
// they run as nobody (root's default, /run/mesh, belongs to the host);
// TMPDIR gives that user's default a directory of the test's.
func testDefaultAdmin(t *testing.T, bin string) {
	uid := os.Geteuid()
	var cred *syscall.Credential
	if uid == 0 {
		uid = 65534
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	tmp := t.TempDir()
	if err := os.Chmod(tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	// Let that user run the binary and reach TMPDIR.
	for _, from := range []string{filepath.Dir(bin), filepath.Dir(tmp)} {
		for d := from; d != filepath.Clean(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	var env []string
	for _, kv := range childEnv() {
		if !strings.HasPrefix(kv, "MESH_ADMIN=") && !strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") && !strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	env = append(env, "TMPDIR="+tmp)
	asUser := func(cmd *exec.Cmd) {
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	a := awaitStarted(t, startProcWith(t, asUser, bin, "default", "agent", "--bind", "127.0.0.1:0", "--log-format", "json"))
	sock := filepath.Join(tmp, fmt.Sprintf("mesh-%d", uid), "mesh.sock")
	if a.admin != "unix:"+sock {
		t.Errorf("agent's default admin address %q, want unix:%s", a.admin, sock)
	}
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o600 || int(st.Sys().(*syscall.Stat_t).Uid) != uid {
		t.Errorf("default socket: %v, %v; want mode 0600 owned by uid %d", st, err, uid)
	}

	ctx, cancel := context.WithTimeout(context.Background(), binWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "members", "--json")
	asUser(cmd)
	out, err := cmd.Output()
	var m membersJSON
	if err != nil || json.Unmarshal(out, &m) != nil || m.Self != a.addr {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("mesh members with no flags, as uid %d: %v %s, output %q; want the agent %s", uid, err, stderr, out, a.addr)
	}
	t.Logf("mesh members with no flags, as uid %d, reached %s via %s", uid, m.Self, a.admin)
	a.signal(t, syscall.SIGTERM)
	if st := a.wait(t); st.ExitCode() != 0 {
		t.Errorf("agent after SIGTERM: %v", st)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("default socket after the agent stopped: %v, want removed", err)
	}
}
