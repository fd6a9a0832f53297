package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"

	"github.com/gossipmesh/mesh/agent"
	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/peer"
)

const demoHelp = `Starts a cluster of --peers peers in this process on 127.0.0.1, each
seeded with the first one only, and shows, with a line per change:
  1. the peers joining until all see everyone and report "converged";
  2. a meta update spreading to every peer;
  3. a graceful leave (seen by all within about one round trip);
  4. a crash (a peer stopped with no goodbye) detected by all, a few
     periods later: its observers' probes are refused, they alert, and
     every peer removes it once a majority of its observers (at least two)
     do.
Then prints one peer's members table and a summary in periods, and exits 0.`

// stepLimit bounds each demo step, in periods; the contract is 10.
const stepLimit = 60

// demoPeer is one peer of the demo with its own gRPC server.
type demoPeer struct {
	name string
	p    *peer.Peer
	srv  *grpc.Server
	down bool // left or crashed
}

func (d *demoPeer) stop() {
	d.p.Stop()
	d.srv.Stop()
}

type demo struct {
	w      io.Writer
	period time.Duration
	start  time.Time
	peers  []*demoPeer
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo")
	n := fs.Int("peers", 8, "how many peers (3..64)")
	period := fs.Duration("period", 100*time.Millisecond, "gossip round P (10ms..1s)")
	pos, code, ok := parseCommand(fs, args, "[--peers 8] [--period 100ms]", demoHelp, stdout, stderr)
	if !ok {
		return code
	}
	if err := noArgs(pos); err != nil {
		return fail(stderr, "demo", err)
	}
	if *n < 3 || *n > 64 {
		return fail(stderr, "demo", usagef("--peers %d: want 3..64 (one leaves, one crashes, the rest watch)", *n))
	}
	if *period < 10*time.Millisecond || *period > time.Second {
		return fail(stderr, "demo", usagef("--period %v: want 10ms..1s", *period))
	}
	d := &demo{w: stdout, period: *period}
	defer d.stopAll()
	if err := d.run(ctx, *n); err != nil {
		return fail(stderr, "demo", err)
	}
	return exitOK
}

func (d *demo) stopAll() {
	for _, p := range d.peers {
		if !p.down {
			p.stop()
		}
	}
}

func (d *demo) run(ctx context.Context, n int) error {
	d.start = time.Now()
	fmt.Fprintf(d.w, "mesh demo: %d peers on 127.0.0.1, gossip period P = %v; each is seeded with peer-1 only\n", n, d.period)
	for i := range n {
		if err := d.startPeer(fmt.Sprintf("peer-%d", i+1)); err != nil {
			return err
		}
	}
	for _, p := range d.peers[1:] {
		p.p.AddSeed(d.peers[0].p.Addr())
	}
	d.logf("started %d peers, %s … %s", n, d.peers[0].p.Addr(), d.peers[n-1].p.Addr())

	// 1. Join and converge.
	joined, err := d.wait(ctx, "join", func(live []*demoPeer) (bool, string) {
		lo, hi := n, 0
		for _, p := range live {
			k := len(p.p.GetMembers())
			lo, hi = min(lo, k), max(hi, k)
		}
		return lo == n, fmt.Sprintf("views hold %d to %d of %d members", lo, hi, n)
	})
	if err != nil {
		return err
	}
	d.logf("join: every peer sees all %d members", n)
	converged, err := d.waitConverged(ctx, "join")
	if err != nil {
		return err
	}

	// 2. A meta update.
	target := d.peers[n/2]
	if err := target.p.SetMeta(&meshpb.PeerMeta{Name: target.name, Tags: map[string]string{"version": "2"}}); err != nil {
		return err
	}
	d.logf("meta: %s sets version=2", target.name)
	meta, err := d.wait(ctx, "meta", func(live []*demoPeer) (bool, string) {
		k := 0
		for _, p := range live {
			if p.p.GetMembers()[target.p.Addr()].GetTags()["version"] == "2" {
				k++
			}
		}
		return k == len(live), fmt.Sprintf("%d of %d peers see %s at version=2", k, len(live), target.name)
	})
	if err != nil {
		return err
	}

	// 3. A graceful leave.
	leaver := d.peers[n-2]
	d.logf("leave: %s leaves gracefully", leaver.name)
	leaveStart := time.Now()
	lctx, cancel := context.WithTimeout(ctx, 2*d.period)
	err = leaver.p.Leave(lctx)
	cancel()
	leaver.srv.Stop()
	leaver.down = true
	if err != nil {
		return err
	}
	if _, err := d.wait(ctx, "leave", d.seenAs(leaver, meshpb.State_STATE_LEFT)); err != nil {
		return err
	}
	left := time.Since(leaveStart) // Leave itself pushes to every member

	// 4. A crash: no goodbye, the others must notice.
	victim := d.peers[n-1]
	victim.stop()
	victim.down = true
	d.logf("crash: %s stopped with no goodbye; removed once its observers' probes are refused and a majority of them (at least two) alert", victim.name)
	failed, err := d.wait(ctx, "crash", d.seenAs(victim, meshpb.State_STATE_FAILED))
	if err != nil {
		return err
	}
	healed, err := d.waitConverged(ctx, "crash")
	if err != nil {
		return err
	}

	fmt.Fprintf(d.w, "\nmembers as %s sees them:\n", d.peers[0].name)
	view := agent.MembersResponse(d.peers[0].p)
	for _, m := range view.Members {
		for _, p := range d.peers {
			if m.Meta == nil && m.Addr == p.p.Addr() {
				m.Meta = &meshpb.PeerMeta{Name: p.name}
			}
		}
	}
	printMembers(d.w, view)
	total := time.Since(d.start)
	fmt.Fprintf(d.w, "\nSummary: %d peers on loopback with P = %v, each seeded with peer-1 only, all saw every member after %s "+
		"and agreed on one view (converged) after %s; %s's meta update reached every peer in %s; "+
		"%s's graceful leave was seen by all in %s; %s's crash was detected by all in %s (refused probes, its observers' alerts), "+
		"and the %d survivors agreed again %s after the crash. Total %s (%s).\n",
		n, d.period, d.inP(joined), d.inP(joined+converged), target.name, d.inP(meta),
		leaver.name, d.inP(left), victim.name, d.inP(failed), n-2, d.inP(failed+healed),
		d.inP(total), total.Round(10*time.Millisecond))
	return nil
}

func (d *demo) startPeer(name string) error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen on 127.0.0.1: %w", err)
	}
	p, err := peer.New(peer.PeerConfig{SelfEndpoint: lis.Addr().String(), PingPeriod: d.period})
	if err != nil {
		lis.Close()
		return err
	}
	if err := p.SetMeta(&meshpb.PeerMeta{Name: name, Tags: map[string]string{"version": "1"}}); err != nil {
		lis.Close()
		return err
	}
	srv := grpc.NewServer(peer.ServerOptions()...)
	meshpb.RegisterGossipServiceServer(srv, p)
	go srv.Serve(lis) // returns when srv stops
	go p.Run()        // returns when p stops
	d.peers = append(d.peers, &demoPeer{name: name, p: p, srv: srv})
	return nil
}

// seenAs is a wait condition: every live peer lists gone in state st.
func (d *demo) seenAs(gone *demoPeer, st meshpb.State) func([]*demoPeer) (bool, string) {
	return func(live []*demoPeer) (bool, string) {
		k := 0
		for _, p := range live {
			for _, m := range p.p.Members() {
				if m.Addr == gone.p.Addr() && m.State == st {
					k++
				}
			}
		}
		return k == len(live), fmt.Sprintf("%d of %d peers list %s as %s", k, len(live), gone.name, agent.StateName(st))
	}
}

func (d *demo) waitConverged(ctx context.Context, step string) (time.Duration, error) {
	return d.wait(ctx, step, func(live []*demoPeer) (bool, string) {
		k := 0
		for _, p := range live {
			if p.p.Converged() {
				k++
			}
		}
		return k == len(live), fmt.Sprintf("%d of %d peers report converged", k, len(live))
	})
}

// wait polls cond on the live peers every P/4 and prints its progress
// when it changes, until it holds; it returns how long that took.
func (d *demo) wait(ctx context.Context, step string, cond func(live []*demoPeer) (bool, string)) (time.Duration, error) {
	start := time.Now()
	last := ""
	t := time.NewTicker(d.period / 4)
	defer t.Stop()
	for {
		var live []*demoPeer
		for _, p := range d.peers {
			if !p.down {
				live = append(live, p)
			}
		}
		done, progress := cond(live)
		if progress != last {
			d.logf("%s: %s", step, progress)
			last = progress
		}
		if done {
			return time.Since(start), nil
		}
		if time.Since(start) > stepLimit*d.period {
			return 0, fmt.Errorf("%s: not done after %d periods: %s", step, stepLimit, progress)
		}
		select {
		case <-ctx.Done():
			return 0, errors.New("interrupted")
		case <-t.C:
		}
	}
}

func (d *demo) logf(format string, a ...any) {
	el := time.Since(d.start)
	fmt.Fprintf(d.w, "[%5.2fs %5.1fP] %s\n", el.Seconds(), float64(el)/float64(d.period), fmt.Sprintf(format, a...))
}

// inP formats a duration in periods.
func (d *demo) inP(t time.Duration) string {
	p := float64(t) / float64(d.period)
	if p < 1 {
		return fmt.Sprintf("%.2fP", p)
	}
	return fmt.Sprintf("%.1fP", p)
}
