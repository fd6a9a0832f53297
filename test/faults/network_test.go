package faults

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	nsPrefix = "meshf-"
	bridgeNS = nsPrefix + "br"
	numHosts = 7
)

// ipCmd is iproute2's ip; /usr/sbin is not always on root's PATH in CI.
var ipCmd = func() string {
	if p, err := exec.LookPath("ip"); err == nil {
		return p
	}
	return "/usr/sbin/ip"
}()

// host is one network stack: a namespace with one veth into the bridge,
// or, in the fallback, one loopback address.
type host struct {
	n  int    // 1-based
	ns string // "" in the fallback
	ip string
}

func (h *host) String() string { return fmt.Sprintf("h%d", h.n) }

// addr is ip:port on this host.
func (h *host) addr(port int) string { return net.JoinHostPort(h.ip, fmt.Sprint(port)) }

// command runs name inside the host's namespace. `ip netns exec` execs the
// command in place, so the process's pid is the command's own and signals
// reach it directly.
func (h *host) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if h.ns == "" {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, ipCmd, append([]string{"netns", "exec", h.ns, name}, args...)...)
}

// dial connects to addr from inside the host's namespace: the socket is
// created on a thread moved into the namespace, and stays there.
func (h *host) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	if h.ns == "" {
		return d.DialContext(ctx, "tcp", addr)
	}
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread exits with this goroutine, so no
		// other goroutine ever runs in the namespace.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + h.ns)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns %s: %w", h.ns, err)}
			return
		}
		c, err := d.DialContext(ctx, "tcp", addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// httpGet fetches url from inside the host's namespace.
func (h *host) httpGet(url string) (string, error) {
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return h.dial(ctx, addr)
		},
	}}
	resp, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// network is the hosts of one test run.
type network struct {
	netns bool
	hosts []*host
	why   string // why the fallback, if it is one
}

// newNetwork builds the namespaces, or the loopback fallback, and says
// which in one line.
func newNetwork(t *testing.T) *network {
	nw := &network{}
	if os.Getenv("MESH_FAULTS_NETNS") == "0" {
		nw.why = "MESH_FAULTS_NETNS=0"
	} else if os.Geteuid() != 0 {
		nw.why = "not root"
	} else if err := setupNetns(t); err != nil {
		nw.why = err.Error()
	} else {
		nw.netns = true
	}
	for i := 1; i <= numHosts; i++ {
		if nw.netns {
			nw.hosts = append(nw.hosts, &host{n: i, ns: fmt.Sprintf("%sh%d", nsPrefix, i), ip: fmt.Sprintf("10.77.0.%d", i)})
		} else {
			nw.hosts = append(nw.hosts, &host{n: i, ip: fmt.Sprintf("127.0.77.%d", i)})
		}
	}
	if nw.netns {
		say(t, "faults: network: %d hosts, each its own network namespace (%sh1..%d, 10.77.0.1-%d/24), veth pairs into a bridge in namespace %s", numHosts, nsPrefix, numHosts, numHosts, bridgeNS)
	} else {
		say(t, "faults: NO NETWORK NAMESPACES (%s): falling back to processes on 127.0.77.1-%d with a fault-injecting TCP proxy; the partition scenario cannot run and fails", nw.why, numHosts)
	}
	return nw
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeStale deletes namespaces with our prefix, and kills what runs in
// them: leftovers of a run that crashed before its cleanup.
func removeStale() {
	out, _ := exec.Command(ipCmd, "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		killIn(f[0])
		_ = run(ipCmd, "netns", "del", f[0])
	}
}

// killIn SIGKILLs every process in namespace ns.
func killIn(ns string) {
	pids, _ := exec.Command(ipCmd, "netns", "pids", ns).Output()
	for _, p := range strings.Fields(string(pids)) {
		var pid int
		if _, err := fmt.Sscan(p, &pid); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// setupNetns creates the bridge namespace and one namespace per host, and
// registers their removal.
func setupNetns(t *testing.T) error {
	removeStale()
	t.Cleanup(removeStale)
	cmds := [][]string{
		{"netns", "add", bridgeNS},
		{"-n", bridgeNS, "link", "add", "br0", "type", "bridge"},
		{"-n", bridgeNS, "link", "set", "br0", "up"},
	}
	for i := 1; i <= numHosts; i++ {
		ns, v := fmt.Sprintf("%sh%d", nsPrefix, i), fmt.Sprintf("v%d", i)
		cmds = append(cmds,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", bridgeNS, "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", bridgeNS, "link", "set", v, "master", "br0", "up"},
			[]string{"-n", ns, "addr", "add", fmt.Sprintf("10.77.0.%d/24", i), "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
		)
	}
	for _, c := range cmds {
		if err := run(ipCmd, c...); err != nil {
			removeStale()
			return err
		}
	}
	return nil
}

// setLink sets host h's link (its veth's bridge end) up or down.
func (nw *network) setLink(t *testing.T, h *host, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if err := run(ipCmd, "-n", bridgeNS, "link", "set", fmt.Sprintf("v%d", h.n), state); err != nil {
		t.Fatal(err)
	}
}

// say prints a line on stdout (so that `go test -v` shows it at once, in
// order) and logs it.
func say(t *testing.T, format string, a ...any) {
	t.Helper()
	fmt.Println(fmt.Sprintf(format, a...))
}
