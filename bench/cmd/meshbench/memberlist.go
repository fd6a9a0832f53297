package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// mlCluster is N memberlist nodes, each with its own NetTransport (UDP and
// TCP on one port of 127.0.0.1) wrapped to count bytes and drop packets.
type mlCluster struct {
	period time.Duration
	tr     *tracker
	loss   *loss
	nodes  []*mlNode

	sent     atomic.Int64 // UDP bytes written and TCP bytes written, all nodes
	recv     atomic.Int64 // UDP bytes received (before drops) and TCP bytes read
	joinErrs atomic.Int64
	config   *memberlist.Config // node 0's, for the report
}

type mlNode struct {
	ml   *memberlist.Memberlist
	addr string
	meta *metaDelegate
	once sync.Once
}

// mlConfig returns the configuration every memberlist node runs with:
// DefaultLocalConfig with its LAN timings scaled to period.
func mlConfig(period time.Duration) *memberlist.Config {
	c := memberlist.DefaultLocalConfig()
	c.ProbeInterval = period
	c.ProbeTimeout = period / 2
	c.GossipInterval = period / 5
	c.PushPullInterval = 30 * period
	c.BindAddr = "127.0.0.1"
	c.AdvertiseAddr = "127.0.0.1"
	c.Logger = log.New(io.Discard, "", 0)
	return c
}

func startMemberlist(n int, period time.Duration, tr *tracker, seed uint64) (*mlCluster, error) {
	c := &mlCluster{period: period, tr: tr, loss: newLoss(seed)}
	for range n {
		if err := c.start(); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

func (c *mlCluster) start() error {
	var nt *memberlist.NetTransport
	var err error
	// Port 0 picks a TCP port, then binds UDP on the same number, which
	// another socket may hold: retry, as memberlist.Create does.
	for range 20 {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{"127.0.0.1"},
			Logger:    log.New(io.Discard, "", 0),
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("memberlist: transport on 127.0.0.1:0: %w", err)
	}
	port := nt.GetAutoBindPort()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg := mlConfig(c.period)
	cfg.Name = addr
	cfg.BindPort, cfg.AdvertisePort = port, port
	cfg.Transport = newCountTransport(nt, c)
	meta := &metaDelegate{}
	meta.set("")
	cfg.Delegate = meta
	cfg.Events = &mlEvents{obs: addr, tr: c.tr}
	c.tr.observe(addr)
	ml, err := memberlist.Create(cfg)
	if err != nil {
		cfg.Transport.Shutdown()
		return fmt.Errorf("memberlist: create %s: %w", addr, err)
	}
	if c.config == nil {
		c.config = cfg
	}
	c.nodes = append(c.nodes, &mlNode{ml: ml, addr: addr, meta: meta})
	return nil
}

func (c *mlCluster) ids() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

func (c *mlCluster) joinAll() {
	seed := c.nodes[0].addr
	for _, n := range c.nodes[1:] {
		go func() { // Join blocks for a push/pull with the seed
			if _, err := n.ml.Join([]string{seed}); err != nil {
				c.joinErrs.Add(1)
			}
		}()
	}
}

// setMeta changes what the node's Delegate.NodeMeta returns and calls
// UpdateNode, which gossips a new alive message. UpdateNode blocks until
// that broadcast is out, so it runs in the background.
func (c *mlCluster) setMeta(i int, meta string) {
	n := c.nodes[i]
	n.meta.set(meta)
	go n.ml.UpdateNode(5 * time.Second)
}

// crash shuts the node down without Leave: it stops answering, and its
// ports refuse connections, as a killed process's would.
func (c *mlCluster) crash(i int) { c.nodes[i].shutdown() }

// leave broadcasts the node's departure, waits up to 10 periods for the
// broadcast to go out, then shuts the node down.
func (c *mlCluster) leave(i int) {
	n := c.nodes[i]
	_ = n.ml.Leave(10 * c.period) // a timeout is visible in the timing
	n.shutdown()
}

func (n *mlNode) shutdown() { n.once.Do(func() { n.ml.Shutdown() }) }

func (c *mlCluster) traffic() traffic {
	s := c.sent.Load()
	return traffic{payload: s, wire: s}
}

func (c *mlCluster) setLoss(p float64) { c.loss.set(p) }

func (c *mlCluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.shutdown() }()
	}
	wg.Wait()
}

// metaDelegate is the memberlist.Delegate that publishes a node's meta;
// it uses no user messages or user state.
type metaDelegate struct{ meta atomic.Pointer[[]byte] }

var _ memberlist.Delegate = (*metaDelegate)(nil)

func (d *metaDelegate) set(s string) { b := []byte(s); d.meta.Store(&b) }

func (d *metaDelegate) NodeMeta(limit int) []byte {
	b := *d.meta.Load()
	if len(b) > limit {
		return b[:limit]
	}
	return b
}
func (d *metaDelegate) NotifyMsg([]byte)                    {}
func (d *metaDelegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (d *metaDelegate) LocalState(bool) []byte              { return nil }
func (d *metaDelegate) MergeRemoteState(buf []byte, _ bool) {}

// mlEvents forwards a node's membership events to the tracker, stamped
// with the time memberlist reported them.
type mlEvents struct {
	obs string
	tr  *tracker
}

var _ memberlist.EventDelegate = (*mlEvents)(nil)

func (e *mlEvents) NotifyJoin(n *memberlist.Node) {
	e.tr.event(e.obs, n.Name, evJoin, string(n.Meta), time.Now())
}
func (e *mlEvents) NotifyUpdate(n *memberlist.Node) {
	e.tr.event(e.obs, n.Name, evUpdate, string(n.Meta), time.Now())
}
func (e *mlEvents) NotifyLeave(n *memberlist.Node) {
	k := evFailed
	if n.State == memberlist.StateLeft {
		k = evLeft
	}
	e.tr.event(e.obs, n.Name, k, "", time.Now())
}

// countTransport wraps a NetTransport: it counts UDP packet bytes and TCP
// stream bytes both ways, and drops incoming UDP packets with the
// cluster's loss probability (TCP streams are reliable, so never dropped).
type countTransport struct {
	*memberlist.NetTransport
	c        *mlCluster
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

var _ memberlist.NodeAwareTransport = (*countTransport)(nil)

func newCountTransport(nt *memberlist.NetTransport, c *mlCluster) *countTransport {
	t := &countTransport{NetTransport: nt, c: c,
		packetCh: make(chan *memberlist.Packet), streamCh: make(chan net.Conn), done: make(chan struct{})}
	t.wg.Add(2)
	go func() { // exits at Shutdown
		defer t.wg.Done()
		for {
			select {
			case p := <-nt.PacketCh():
				c.recv.Add(int64(len(p.Buf)))
				if c.loss.drop() {
					continue
				}
				select {
				case t.packetCh <- p:
				case <-t.done:
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	go func() { // exits at Shutdown
		defer t.wg.Done()
		for {
			select {
			case conn := <-nt.StreamCh():
				w := &countConn{Conn: conn, read: &c.recv, written: &c.sent}
				select {
				case t.streamCh <- w:
				case <-t.done:
					conn.Close()
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	return t
}

func (t *countTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	at, err := t.NetTransport.WriteTo(b, addr)
	if err == nil {
		t.c.sent.Add(int64(len(b)))
	}
	return at, err
}

func (t *countTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }
func (t *countTransport) StreamCh() <-chan net.Conn           { return t.streamCh }

func (t *countTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := t.NetTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countConn{Conn: conn, read: &t.c.recv, written: &t.c.sent}, nil
}

// WriteToAddress and DialAddressTimeout override NetTransport's own
// (promoted by embedding, they make countTransport a NodeAwareTransport,
// which memberlist prefers) so that every send is counted.
func (t *countTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *countTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// Shutdown stops the NetTransport first: its listeners may be blocked
// handing a packet or connection to the forwarders, which keep forwarding
// (memberlist keeps reading until the transport is shut down) until then.
func (t *countTransport) Shutdown() error {
	var err error
	t.once.Do(func() {
		err = t.NetTransport.Shutdown()
		close(t.done)
		t.wg.Wait()
	})
	return err
}
