package peer_test

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/peer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const period = 50 * time.Millisecond

// node is a peer with its own gRPC server on loopback, as the contract
// describes: the caller owns the server.
type node struct {
	p    *peer.Peer
	srv  *grpc.Server
	addr string
	done chan struct{}
	once sync.Once
}

// startNode serves a new peer on addr ("127.0.0.1:0" for a fresh port).
func startNode(t *testing.T, addr string, mod func(*peer.PeerConfig)) *node {
	t.Helper()
	var lis net.Listener
	var err error
	// A restarted node reuses a port that was just released; retry briefly.
	for deadline := time.Now().Add(2 * time.Second); ; {
		lis, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	cfg := peer.PeerConfig{SelfEndpoint: lis.Addr().String(), PingPeriod: period}
	if mod != nil {
		mod(&cfg)
	}
	n := &node{p: peer.NewPeer(cfg), srv: grpc.NewServer(), addr: cfg.SelfEndpoint, done: make(chan struct{})}
	meshpb.RegisterGossipServiceServer(n.srv, n.p)
	go n.srv.Serve(lis)
	go func() { n.p.Run(); close(n.done) }()
	t.Cleanup(n.stop)
	return n
}

// stop stops the peer and its server, as a crash would (no goodbye).
func (n *node) stop() {
	n.once.Do(func() {
		n.p.Stop()
		n.srv.Stop()
		<-n.done
	})
}

func startCluster(t *testing.T, size int, mod func(*peer.PeerConfig)) []*node {
	t.Helper()
	nodes := make([]*node, size)
	for i := range nodes {
		nodes[i] = startNode(t, "127.0.0.1:0", mod)
		if i > 0 {
			nodes[i].p.AddSeed(nodes[0].addr)
		}
	}
	return nodes
}

func addrs(nodes []*node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.addr)
	}
	sort.Strings(out)
	return out
}

func keys(m map[string]*meshpb.PeerMeta) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// waitFor polls cond until it holds and returns how many periods that
// took, or fails the test after limit periods, printing what cond saw.
func waitFor(t *testing.T, what string, limit float64, cond func() (bool, string)) float64 {
	t.Helper()
	start := time.Now()
	deadline := start.Add(time.Duration(limit * float64(period)))
	var last string
	for {
		ok, state := cond()
		if ok {
			p := float64(time.Since(start)) / float64(period)
			t.Logf("%s: %.1f periods", what, p)
			return p
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %.0f periods; last state:\n%s", what, limit, last)
		}
		time.Sleep(period / 10)
	}
}

// allSee checks that every node in nodes sees exactly the members want.
func allSee(nodes []*node, want []string) func() (bool, string) {
	return func() (bool, string) {
		var b strings.Builder
		ok := true
		for _, n := range nodes {
			got := keys(n.p.GetMembers())
			if fmt.Sprint(got) != fmt.Sprint(want) {
				ok = false
				fmt.Fprintf(&b, "%s sees %v\n", n.addr, got)
			}
		}
		fmt.Fprintf(&b, "want %v", want)
		return ok, b.String()
	}
}

func converge(t *testing.T, nodes []*node, limit float64) float64 {
	t.Helper()
	return waitFor(t, fmt.Sprintf("%d peers converge", len(nodes)), limit, allSee(nodes, addrs(nodes)))
}

// The reference timings: 11 peers at a 50 ms period under -race see joins,
// meta updates and a stopped peer's removal within 10 periods.
func TestJoinUpdateRemoveEleven(t *testing.T) {
	nodes := startCluster(t, 11, nil)
	converge(t, nodes, 10)

	nodes[3].p.UpdateMeta(&meshpb.PeerMeta{Name: "api-7", Tags: map[string]string{"zone": "b"}})
	waitFor(t, "meta update seen by all", 10, func() (bool, string) {
		for _, n := range nodes {
			if m := n.p.GetMembers()[nodes[3].addr]; m.GetName() != "api-7" || m.GetTags()["zone"] != "b" {
				return false, fmt.Sprintf("%s sees %v", n.addr, m)
			}
		}
		return true, ""
	})

	nodes[5].stop()
	rest := append(append([]*node{}, nodes[:5]...), nodes[6:]...)
	waitFor(t, "stopped peer removed by all", 10, allSee(rest, addrs(rest)))
}

// A Peer stopped while its owner's gRPC server keeps serving (other
// services, say) answers that it stopped: its observers take that as a
// refusal and alert at once, and every member drops it.
func TestStoppedPeerOnLiveServerRemoved(t *testing.T) {
	nodes := startCluster(t, 5, nil)
	converge(t, nodes, 20)
	nodes[2].p.Stop() // its server still serves
	rest := append(append([]*node{}, nodes[:2]...), nodes[3:]...)
	waitFor(t, "stopped peer on a live server removed by all", 10, allSee(rest, addrs(rest)))
}

func TestTwoGroupsMerge(t *testing.T) {
	a := startCluster(t, 6, nil)
	b := startCluster(t, 6, nil)
	converge(t, a, 10)
	converge(t, b, 10)
	b[2].p.AddSeed(a[4].addr)
	converge(t, append(a, b...), 10)
}

func TestLatestMetaWins(t *testing.T) {
	nodes := startCluster(t, 5, nil)
	converge(t, nodes, 10)
	for i := range 50 {
		nodes[1].p.UpdateMeta(&meshpb.PeerMeta{Name: fmt.Sprintf("v%d", i)})
	}
	waitFor(t, "last of 50 fast updates seen by all", 10, func() (bool, string) {
		for _, n := range nodes {
			if m := n.p.GetMembers()[nodes[1].addr]; m.GetName() != "v49" {
				return false, fmt.Sprintf("%s sees %v", n.addr, m)
			}
		}
		return true, ""
	})
}

// A dead peer stays dead, and a peer restarted on the same address comes
// back with its new meta, overriding the tombstone of its previous life.
func TestRestartOnSameAddress(t *testing.T) {
	nodes := startCluster(t, 5, nil)
	converge(t, nodes, 10)
	victim := nodes[2]
	victim.stop()
	rest := []*node{nodes[0], nodes[1], nodes[3], nodes[4]}
	waitFor(t, "stopped peer removed", 10, allSee(rest, addrs(rest)))

	// No zombie: for 10 more periods nobody brings it back.
	deadline := time.Now().Add(10 * period)
	for time.Now().Before(deadline) {
		if ok, state := allSee(rest, addrs(rest))(); !ok {
			t.Fatalf("dead peer came back:\n%s", state)
		}
		time.Sleep(period / 5)
	}

	reborn := startNode(t, victim.addr, nil)
	reborn.p.UpdateMeta(&meshpb.PeerMeta{Name: "second-life"})
	reborn.p.AddSeed(nodes[0].addr)
	all := append(rest, reborn)
	waitFor(t, "restarted peer back with new meta", 10, func() (bool, string) {
		if ok, state := allSee(all, addrs(all))(); !ok {
			return false, state
		}
		for _, n := range all {
			if m := n.p.GetMembers()[victim.addr]; m.GetName() != "second-life" {
				return false, fmt.Sprintf("%s sees %v", n.addr, m)
			}
		}
		return true, ""
	})
}

func TestSeedIsNotAMemberUntilItAnswers(t *testing.T) {
	// Reserve a port, then free it: the seed is dead for now.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seedAddr := lis.Addr().String()
	lis.Close()

	n := startNode(t, "127.0.0.1:0", nil)
	n.p.AddSeed(seedAddr)
	n.p.AddSeed(n.addr)    // self: harmless
	n.p.AddSeed("garbage") // invalid: ignored
	deadline := time.Now().Add(5 * period)
	for time.Now().Before(deadline) {
		if got := keys(n.p.GetMembers()); len(got) != 1 || got[0] != n.addr {
			t.Fatalf("members with a dead seed = %v, want only self", got)
		}
		time.Sleep(period / 5)
	}
	// The seed comes up later: it is retried, not forgotten.
	seed := startNode(t, seedAddr, nil)
	converge(t, []*node{n, seed}, 40)
}

func TestLeaveIsSeenWithinTwoPeriods(t *testing.T) {
	nodes := startCluster(t, 6, nil)
	converge(t, nodes, 10)
	sub := nodes[0].p.Subscribe(64)
	defer sub.Close()
	if err := nodes[4].p.Leave(context.Background()); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	rest := []*node{nodes[0], nodes[1], nodes[2], nodes[3], nodes[5]}
	waitFor(t, "left peer dropped by all", 2, allSee(rest, addrs(rest)))
	for {
		select {
		case ev := <-sub.C:
			if ev.Addr != nodes[4].addr {
				continue
			}
			if ev.Type != peer.EventLeave {
				t.Fatalf("event for the leaver = %v, want leave", ev.Type)
			}
			return
		case <-time.After(time.Second):
			t.Fatal("no leave event")
		}
	}
}

func TestClustersWithDifferentNamesNeverMerge(t *testing.T) {
	a := startNode(t, "127.0.0.1:0", func(c *peer.PeerConfig) { c.ClusterName = "blue" })
	b := startNode(t, "127.0.0.1:0", func(c *peer.PeerConfig) { c.ClusterName = "green" })
	a.p.AddSeed(b.addr)
	b.p.AddSeed(a.addr)
	deadline := time.Now().Add(10 * period)
	for time.Now().Before(deadline) {
		if len(a.p.GetMembers()) != 1 || len(b.p.GetMembers()) != 1 {
			t.Fatalf("clusters merged: %v / %v", keys(a.p.GetMembers()), keys(b.p.GetMembers()))
		}
		time.Sleep(period / 5)
	}
}

func TestIPv6(t *testing.T) {
	lis, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	lis.Close()
	nodes := make([]*node, 3)
	for i := range nodes {
		nodes[i] = startNode(t, "[::1]:0", nil)
		if i > 0 {
			nodes[i].p.AddSeed(nodes[0].addr)
		}
	}
	if !strings.HasPrefix(nodes[0].addr, "[::1]:") {
		t.Fatalf("addr = %q", nodes[0].addr)
	}
	converge(t, nodes, 10)
}

func TestGetMembersIsASnapshot(t *testing.T) {
	n := startNode(t, "127.0.0.1:0", nil)
	meta := &meshpb.PeerMeta{Name: "a"}
	n.p.UpdateMeta(meta)
	meta.Name = "changed by caller" // the peer kept its own copy
	m := n.p.GetMembers()
	if got := m[n.addr].GetName(); got != "a" {
		t.Fatalf("name = %q, want a", got)
	}
	m[n.addr].Name = "mutated"
	delete(m, n.addr)
	if got := n.p.GetMembers()[n.addr].GetName(); got != "a" {
		t.Fatalf("after mutating the snapshot, name = %q, want a", got)
	}
}

func TestMetaAboveLimitIsRefused(t *testing.T) {
	n := startNode(t, "127.0.0.1:0", func(c *peer.PeerConfig) { c.MaxMetaBytes = 64 })
	n.p.UpdateMeta(&meshpb.PeerMeta{Name: "ok"})
	err := n.p.SetMeta(&meshpb.PeerMeta{Name: strings.Repeat("x", 100)})
	if err == nil || !strings.Contains(err.Error(), "MaxMetaBytes") {
		t.Fatalf("SetMeta(100-byte name) = %v, want an error naming MaxMetaBytes", err)
	}
	if got := n.p.GetMembers()[n.addr].GetName(); got != "ok" {
		t.Fatalf("after a refused meta, name = %q, want ok", got)
	}
}

func TestStopBeforeRunAndTwice(t *testing.T) {
	p := peer.NewPeer(peer.PeerConfig{SelfEndpoint: "127.0.0.1:7946", PingPeriod: period})
	p.Stop()
	p.Stop()
	done := make(chan struct{})
	go func() { p.Run(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run after Stop did not return")
	}
}

func TestStopConcurrentWithRun(t *testing.T) {
	for range 20 {
		p := peer.NewPeer(peer.PeerConfig{SelfEndpoint: "127.0.0.1:7946", PingPeriod: time.Millisecond})
		p.AddSeed("127.0.0.1:1") // gives the rounds outgoing calls to abort
		go p.Run()
		p.Stop()
	}
}

func TestInvalidConfig(t *testing.T) {
	_, err := peer.New(peer.PeerConfig{SelfEndpoint: "nope", PingPeriod: -time.Second, Fanout: -1})
	if err == nil {
		t.Fatal("New accepted an invalid config")
	}
	for _, want := range []string{"SelfEndpoint", "PingPeriod", "Fanout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	// NewPeer never fails: negative values mean defaults.
	p := peer.NewPeer(peer.PeerConfig{SelfEndpoint: "127.0.0.1:7946", PingPeriod: -time.Second})
	defer p.Stop()
	if got := p.Config().PingPeriod; got != peer.DefaultPingPeriod {
		t.Fatalf("PingPeriod = %v, want the default %v", got, peer.DefaultPingPeriod)
	}
}
