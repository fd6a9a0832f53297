package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/peer"
)

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// logBuffer collects JSON log records for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) records() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func (l *logBuffer) find(msg string) []map[string]any {
	var out []map[string]any
	for _, r := range l.records() {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func testDispatcher(t *testing.T, timeout time.Duration, hs ...EventHandler) (*dispatcher, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	d := newDispatcher(hs, timeout, "127.0.0.1:7946", "test", slog.New(slog.NewJSONHandler(lb, nil)))
	t.Cleanup(d.stop)
	return d, lb
}

func ev(typ peer.EventType, addr, name string, tags map[string]string) peer.Event {
	return peer.Event{Type: typ, Addr: addr, Meta: &meshpb.PeerMeta{Name: name, Tags: tags}, Time: time.Now()}
}

// lines polls path until it holds n lines.
func lines(t *testing.T, path string, n int) []string {
	t.Helper()
	var got []string
	eventually(t, fmt.Sprintf("%d lines in %s", n, filepath.Base(path)), func() (bool, string) {
		b, _ := os.ReadFile(path)
		got = strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(b) == 0 {
			got = nil
		}
		return len(got) >= n, strings.Join(got, " | ")
	})
	return got
}

// A handler gets the event in its environment and the tags on stdin; a
// type filter selects events; each member's events arrive in order.
func TestHandlerEnvironmentFilterAndOrder(t *testing.T) {
	dir := t.TempDir()
	all := filepath.Join(dir, "all.log")
	leaves := filepath.Join(dir, "leaves.log")
	rec := script(t, dir, "rec.sh", `read -r tags
echo "$MESH_EVENT|$MESH_ADDR|$MESH_NAME|$MESH_SELF|$MESH_CLUSTER|$tags" >> `+all+"\n")
	onLeave := script(t, dir, "leave.sh", `echo "$MESH_EVENT $MESH_ADDR" >> `+leaves+"\n")
	d, lb := testDispatcher(t, 10*time.Second, EventHandler{Program: rec}, EventHandler{Types: []string{"leave", "failed"}, Program: onLeave})

	// 3 members, 10 events each, interleaved.
	const perMember = 10
	var want = map[string][]string{}
	for i := range perMember {
		for _, m := range []string{"10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"} {
			typ := peer.EventUpdate
			switch i {
			case 0:
				typ = peer.EventJoin
			case perMember - 1:
				typ = peer.EventLeave
			}
			name := fmt.Sprintf("n%d", i)
			d.enqueue(ev(typ, m, name, map[string]string{"i": strconv.Itoa(i)}))
			want[m] = append(want[m], fmt.Sprintf(`%s|%s|%s|127.0.0.1:7946|test|{"i":"%d"}`, typ, m, name, i))
		}
	}
	got := lines(t, all, 3*perMember)
	byMember := map[string][]string{}
	for _, l := range got {
		addr := strings.Split(l, "|")[1]
		byMember[addr] = append(byMember[addr], l)
	}
	for m, w := range want {
		if !slices.Equal(byMember[m], w) {
			t.Errorf("events of %s as the handler saw them:\n got  %q\n want %q", m, byMember[m], w)
		}
	}
	gotLeaves := lines(t, leaves, 3)
	slices.Sort(gotLeaves)
	if want := []string{"leave 10.0.0.1:7946", "leave 10.0.0.2:7946", "leave 10.0.0.3:7946"}; !slices.Equal(gotLeaves, want) {
		t.Errorf("leave,failed handler saw %q, want %q", gotLeaves, want)
	}
	eventually(t, "33 runs logged", func() (bool, string) {
		n := len(lb.find("event handler ran"))
		return n == 3*perMember+3, fmt.Sprint(n)
	})
}

// At most MaxHandlerProcs handlers run at once, and more than one does.
func TestHandlerConcurrencyBound(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace")
	slow := script(t, dir, "slow.sh", `echo + >> `+trace+`
sleep 0.2
echo - >> `+trace+"\n")
	d, _ := testDispatcher(t, 10*time.Second, EventHandler{Program: slow})
	const members = 3 * MaxHandlerProcs
	for i := range members {
		d.enqueue(ev(peer.EventJoin, fmt.Sprintf("10.0.0.%d:7946", i+1), "", nil))
	}
	got := lines(t, trace, 2*members)
	running, most := 0, 0
	for _, l := range got {
		if l == "+" {
			running++
		} else {
			running--
		}
		most = max(most, running)
	}
	if most > MaxHandlerProcs || most < 2 {
		t.Errorf("at most %d handlers ran at once; want 2..%d\ntrace %q", most, MaxHandlerProcs, got)
	}
}

// A failing handler is logged with its exit status and stderr; a hanging
// one is killed at the timeout with the processes it started, and delays
// neither another handler nor another member.
func TestHandlerFailureAndTimeout(t *testing.T) {
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	fast := filepath.Join(dir, "fast.log")
	failing := script(t, dir, "fail.sh", "echo \"no route to $MESH_ADDR\" >&2\nexit 3\n")
	hang := script(t, dir, "hang.sh", `if [ "$MESH_EVENT $MESH_ADDR" = "join 10.0.0.1:7946" ]; then
  sleep 600 &
  echo $! >> `+pids+`
  echo "hanging on $MESH_ADDR" >&2
  wait
fi
`)
	rec := script(t, dir, "rec.sh", `echo "$MESH_EVENT $MESH_ADDR" >> `+fast+"\n")
	const timeout = 2 * time.Second
	d, lb := testDispatcher(t, timeout, EventHandler{Types: []string{"failed"}, Program: failing}, EventHandler{Program: hang}, EventHandler{Program: rec})

	start := time.Now()
	d.enqueue(ev(peer.EventJoin, "10.0.0.1:7946", "a", nil)) // hang.sh hangs on this one
	d.enqueue(ev(peer.EventFailed, "10.0.0.1:7946", "a", nil))
	d.enqueue(ev(peer.EventJoin, "10.0.0.2:7946", "b", nil))
	got := lines(t, fast, 3)
	if took := time.Since(start); took >= timeout {
		t.Errorf("the other handler's 3 runs took %v, not less than the hanging one's timeout %v", took, timeout)
	}
	if want := []string{"join 10.0.0.1:7946", "failed 10.0.0.1:7946"}; !slices.Equal(slices.DeleteFunc(slices.Clone(got), func(s string) bool { return strings.Contains(s, "10.0.0.2") }), want) {
		t.Errorf("rec.sh saw %q; want %q in order, and b's join", got, want)
	}

	var failed, killed map[string]any
	eventually(t, "the failure and the kill logged", func() (bool, string) {
		if f := lb.find("event handler failed"); len(f) > 0 {
			failed = f[0]
		}
		if k := lb.find("event handler killed: timed out"); len(k) > 0 {
			killed = k[0]
		}
		return failed != nil && killed != nil, fmt.Sprint(lb.records())
	})
	if failed["status"] != "exit 3" || failed["stderr"] != "no route to 10.0.0.1:7946" || failed["handler"] != "failed="+failing {
		t.Errorf("failure logged as %v; want status exit 3, the stderr line and the handler", failed)
	}
	if killed["status"] != "signal: killed" || killed["stderr"] != "hanging on 10.0.0.1:7946" || killed["addr"] != "10.0.0.1:7946" || killed["event"] != "join" {
		t.Errorf("kill logged as %v", killed)
	}
	// The hanging handler's child died with it.
	pid, err := strconv.Atoi(strings.TrimSpace(lines(t, pids, 1)[0]))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the hanging handler's sleep is gone", func() (bool, string) {
		err := syscall.Kill(pid, 0)
		return err == syscall.ESRCH, fmt.Sprintf("kill(%d, 0) = %v", pid, err)
	})
	// hang.sh then ran a's failed event, and b's join, without hanging.
	eventually(t, "hang.sh ran its other 2 events", func() (bool, string) {
		var done []string
		for _, r := range lb.find("event handler ran") {
			if r["handler"] == hang {
				done = append(done, fmt.Sprint(r["event"], " ", r["addr"]))
			}
		}
		return len(done) == 2, fmt.Sprint(done)
	})
}

// A handler hanging on as many members as it may run at once delays no
// other handler. Stopping kills a handler still running after stopGrace
// and skips queued events; every worker has exited when stop returns.
func TestHandlerStopKills(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	other := filepath.Join(dir, "other")
	hang := script(t, dir, "hang.sh", "echo $MESH_ADDR >> "+started+"\nsleep 600\n")
	rec := script(t, dir, "rec.sh", "echo $MESH_ADDR >> "+other+"\n")
	d, lb := testDispatcher(t, time.Hour, EventHandler{Program: hang}, EventHandler{Program: rec})
	for i := range MaxHandlerProcs + 2 {
		d.enqueue(ev(peer.EventJoin, fmt.Sprintf("10.0.0.%d:7946", i+1), "", nil))
	}
	lines(t, started, MaxHandlerProcs)
	lines(t, other, MaxHandlerProcs+2)
	start := time.Now()
	d.stop()
	if took := time.Since(start); took > stopGrace+handlerWaitDelay+time.Second {
		t.Errorf("stop took %v", took)
	}
	if n := len(lb.find("event handler killed: the agent is stopping")); n != MaxHandlerProcs {
		t.Errorf("%d handlers logged as killed at stop, want %d\n%v", n, MaxHandlerProcs, lb.records())
	}
	if w := lb.find("event handlers not run: the agent is stopping"); len(w) != 1 || w[0]["events"] != float64(2) {
		t.Errorf("skipped events logged as %v, want 2", w)
	}
}

func TestParseEventHandler(t *testing.T) {
	for in, want := range map[string]EventHandler{
		"/bin/true":                {Program: "/bin/true"},
		"join=/bin/true":           {Types: []string{"join"}, Program: "/bin/true"},
		"leave,failed=/x/on-leave": {Types: []string{"leave", "failed"}, Program: "/x/on-leave"},
		"/opt/a=b/handler":         {Program: "/opt/a=b/handler"},
	} {
		got, err := ParseEventHandler(in)
		if err != nil || got.Program != want.Program || !slices.Equal(got.Types, want.Types) || got.String() != in {
			t.Errorf("ParseEventHandler(%q) = %+v (%q), %v; want %+v", in, got, got.String(), err, want)
		}
	}
	for in, msg := range map[string]string{
		"member-join=/bin/true": `unknown event type "member-join"`,
		"join=":                 "no program",
		"":                      "no program",
	} {
		if _, err := ParseEventHandler(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseEventHandler(%q) = %v, want %q", in, err, msg)
		}
	}
	c := Config{Bind: "127.0.0.1:0", EventHandlers: []EventHandler{{Program: "/no/such/handler"}, {Program: "/bin/true"}}, HandlerTimeout: -1}
	err := c.Validate()
	for _, want := range []string{"--event-handler /no/such/handler: no such file or directory; give the path of an executable file", "--event-handler-timeout -1ns"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want %q", err, want)
		}
	}
}

// Behind a handler that hangs, events queue up to maxPendingEvents; the
// rest are dropped and logged (a few lines, not one per event).
func TestHandlerQueueBound(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	hang := script(t, dir, "hang.sh", "echo $MESH_ADDR >> "+started+"\nsleep 600\n")
	d, lb := testDispatcher(t, time.Hour, EventHandler{Program: hang})
	d.enqueue(ev(peer.EventJoin, "10.0.0.1:7946", "", nil))
	lines(t, started, 1) // the first runs, and hangs
	const extra = 100
	for range maxPendingEvents + extra {
		d.enqueue(ev(peer.EventUpdate, "10.0.0.1:7946", "", nil))
	}
	d.mu.Lock()
	pending, dropped := d.pending, d.dropped
	d.mu.Unlock()
	if pending != maxPendingEvents || dropped != extra {
		t.Errorf("pending %d, dropped %d; want %d and %d", pending, dropped, maxPendingEvents, extra)
	}
	logged := lb.find("event handler queue full: event dropped")
	var last map[string]any
	if len(logged) > 0 {
		last = logged[len(logged)-1]
	}
	if n := len(logged); n == 0 || n > 8 || last["dropped_total"] != float64(64) {
		t.Errorf("%d drop lines logged, the last %v; want a few, at powers of two up to 64", n, last)
	}
}
