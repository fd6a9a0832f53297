package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gossipmesh/mesh/meshpb"
)

// Peer is one member of a mesh cluster. It implements
// meshpb.GossipServiceServer; register it on a *grpc.Server you own.
// All methods are safe for concurrent use.
type Peer struct {
	meshpb.UnimplementedGossipServiceServer

	cfg       PeerConfig
	transport Transport
	ctx       context.Context // cancelled by Stop: aborts calls in flight
	cancel    context.CancelFunc
	stopCh    chan struct{}
	runDone   chan struct{}

	mu       sync.Mutex
	m        *Machine
	running  bool
	stopped  bool
	subs     map[*Subscription]struct{}
	calls    sync.WaitGroup // exchanges in flight
	stopOnce sync.Once
}

var _ meshpb.GossipServiceServer = (*Peer)(nil)

// NewPeer returns a peer for config; it starts nothing (see Run). It never
// fails: a negative duration or count falls back to its default and an
// invalid SelfEndpoint is kept as the id (peers will fail to dial it);
// both are logged. Call config.Validate first, or use New, to refuse them.
func NewPeer(config PeerConfig) *Peer {
	err := config.Validate()
	cfg := sanitize(config).withDefaults()
	if err != nil {
		cfg.Logger.Error("invalid peer config; using defaults where possible", "err", err)
	}
	p := &Peer{
		cfg:       cfg,
		transport: cfg.Transport,
		stopCh:    make(chan struct{}),
		runDone:   make(chan struct{}),
		subs:      map[*Subscription]struct{}{},
	}
	if p.transport == nil {
		p.transport = newGRPCTransport(cfg)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.m = newMachine(cfg, cfg.Clock.Now())
	return p
}

// New is NewPeer that first validates config and returns its errors.
func New(config PeerConfig) (*Peer, error) {
	if err := config.Validate(); err != nil {
		return nil, fmt.Errorf("peer config: %w", err)
	}
	return NewPeer(config), nil
}

// sanitize zeroes negative fields so that withDefaults replaces them.
func sanitize(c PeerConfig) PeerConfig {
	for _, d := range []*time.Duration{&c.PingPeriod, &c.Expiry, &c.RPCTimeout, &c.DialTimeout, &c.MaxRetryInterval, &c.TombstoneTTL} {
		if *d < 0 {
			*d = 0
		}
	}
	if c.PingPeriod > 0 && c.PingPeriod < time.Millisecond {
		c.PingPeriod = time.Millisecond
	}
	if c.Expiry > 0 && c.Expiry < 2*c.withDefaults().PingPeriod {
		c.Expiry = 0
	}
	for _, n := range []*int{&c.Fanout, &c.MaxMetaBytes, &c.MaxDeltaEntries, &c.MaxMembers} {
		if *n < 0 {
			*n = 0
		}
	}
	return c
}

// Addr returns the peer's address, which is its id.
func (p *Peer) Addr() string { return p.cfg.SelfEndpoint }

// Config returns the configuration in effect, defaults filled in. An
// Expiry left zero reads as 5 periods; the value in use is
// PeerConfig.DefaultExpiry for the current view, which is more in larger
// views or with a longer RPCTimeout.
func (p *Peer) Config() PeerConfig { return p.cfg }

// Run gossips every PingPeriod until Stop and then returns. It returns at
// once if Stop came first or Run is already running.
func (p *Peer) Run() {
	p.mu.Lock()
	if p.stopped || p.running {
		p.mu.Unlock()
		return
	}
	p.running = true
	p.mu.Unlock()
	defer close(p.runDone)

	t := time.NewTicker(p.cfg.PingPeriod)
	defer t.Stop()
	for {
		p.round()
		select {
		case <-p.stopCh:
			return
		case <-t.C:
		}
	}
}

// round runs one gossip round: the exchanges start in the background so
// that a slow partner never delays the next round or the other partners.
func (p *Peer) round() {
	now := p.cfg.Clock.Now()
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	outs := p.m.Round(now)
	p.calls.Add(len(outs))
	fx := p.flushLocked()
	p.mu.Unlock()
	p.carryOut(fx)
	for _, o := range outs {
		go p.exchange(o)
	}
}

// exchange runs one exchange (one or two Sync calls) with a partner.
func (p *Peer) exchange(o *Outgoing) {
	defer p.calls.Done()
	for o != nil {
		resp, late, err := p.call(o)
		if p.ctx.Err() != nil {
			return // stopping: a cancelled call says nothing about the partner
		}
		now := p.cfg.Clock.Now()
		p.mu.Lock()
		switch {
		case late:
			if err == nil {
				p.m.Late(o, resp, now)
			}
			o = nil
		case err != nil:
			p.m.Fail(o, err, now)
			o = nil
		default:
			to := o.To
			if o, err = p.m.Deliver(o, resp, now); err != nil {
				p.cfg.Logger.Warn("bad answer from partner", "addr", to, "err", err)
			}
		}
		fx := p.flushLocked()
		p.mu.Unlock()
		p.carryOut(fx)
	}
}

// call sends o and waits for the answer. At o.Timeout the exchange fails,
// but the call goes on up to the longest Timeout, so that an answer that
// comes late is still measured (late): see callTimer.
func (p *Peer) call(o *Outgoing) (resp *meshpb.SyncResponse, late bool, err error) {
	// DialTimeout, stretched as far as o's Timeout stretches RPCTimeout.
	dial := time.Duration(float64(p.cfg.DialTimeout) * float64(o.Timeout) / float64(p.cfg.RPCTimeout))
	if err := p.connect(p.ctx, o.To, dial); err != nil {
		return nil, false, fmt.Errorf("sync with %s: %w", o.To, err)
	}
	ctx, cancel := context.WithTimeout(p.ctx, maxCallSlowdown*p.cfg.RPCTimeout)
	defer cancel()
	o.Sent = p.cfg.Clock.Now()
	expired := make(chan struct{})
	t := time.AfterFunc(o.Timeout, func() {
		defer close(expired)
		now := p.cfg.Clock.Now()
		p.mu.Lock()
		p.m.Fail(o, fmt.Errorf("sync with %s: %w", o.To, context.DeadlineExceeded), now)
		fx := p.flushLocked()
		p.mu.Unlock()
		p.carryOut(fx)
	})
	resp, err = p.transport.Sync(ctx, o.To, o.Request)
	if !t.Stop() {
		<-expired // failed already: nothing outlives the exchange
		return resp, true, err
	}
	if err != nil {
		err = fmt.Errorf("sync with %s: %w", o.To, err)
	}
	return resp, false, err
}

// connect gives a Connector transport up to d to connect to addr, ahead
// of the call's own deadline.
func (p *Peer) connect(ctx context.Context, addr string, d time.Duration) error {
	c, ok := p.transport.(Connector)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return c.Connect(ctx, addr)
}

// Sync answers a partner's exchange; it is the gRPC handler.
func (p *Peer) Sync(ctx context.Context, req *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	now := p.cfg.Clock.Now()
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil, status.Error(codes.Unavailable, errStopped)
	}
	resp, err := p.m.Answer(req, now)
	fx := p.flushLocked()
	p.mu.Unlock()
	p.carryOut(fx)
	switch {
	case errors.Is(err, errClusterMismatch):
		p.cfg.Logger.Warn("refused a peer of another cluster", "from", req.GetFrom(), "err", err)
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, errLimit):
		p.cfg.Logger.Warn("refused a message above a limit", "from", req.GetFrom(), "err", err)
		return nil, status.Error(codes.ResourceExhausted, err.Error())
	case err != nil:
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return resp, nil
}

// Gossip answers a partner's requests over one stream, in order, as Sync
// answers one; a refusal goes back as the response's code and error and
// the stream goes on. It is the gRPC handler.
func (p *Peer) Gossip(s meshpb.GossipService_GossipServer) error {
	return serveStream(s, p.Sync)
}

// The stream metadata that names the requester and its cluster once, so
// that probes and digest requests on the stream need not (see
// withoutIdentity).
const (
	fromKey    = "mesh-from"
	clusterKey = "mesh-cluster"
)

// serveStream answers each request of s with handle, in order. A request
// without a From or a Cluster gets the stream's.
func serveStream(s meshpb.GossipService_GossipServer, handle func(context.Context, *meshpb.SyncRequest) (*meshpb.SyncResponse, error)) error {
	var from, cluster string
	if md, ok := metadata.FromIncomingContext(s.Context()); ok {
		if v := md.Get(fromKey); len(v) == 1 {
			from = v[0]
		}
		if v := md.Get(clusterKey); len(v) == 1 {
			cluster = v[0]
		}
	}
	for {
		req, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if req.GetFrom() == "" {
			req.From = from
		}
		if req.GetCluster() == "" {
			req.Cluster = cluster
		}
		resp, err := handle(s.Context(), req)
		if err != nil {
			st := status.Convert(err)
			resp = &meshpb.SyncResponse{Code: uint32(st.Code()), Error: st.Message()}
		}
		if err := s.Send(resp); err != nil {
			return err
		}
	}
}

// effects are the Machine's side effects, carried out after the lock is
// released.
type effects struct {
	forget []string    // connections to close
	pushes []*Outgoing // pushes and corroborating probes to send
}

// flushLocked delivers pending events and collects the other effects.
// Pushes are counted in calls under the lock, so Stop waits for them.
func (p *Peer) flushLocked() effects {
	for _, ev := range p.m.TakeEvents() {
		for s := range p.subs {
			s.deliver(ev)
		}
	}
	fx := effects{forget: p.m.takeForget(), pushes: p.m.TakePushes()}
	if p.stopped {
		fx.pushes = nil
	}
	p.calls.Add(len(fx.pushes))
	return fx
}

func (p *Peer) carryOut(fx effects) {
	for _, a := range fx.forget {
		p.transport.Forget(a)
	}
	for _, o := range fx.pushes {
		go p.exchange(o)
	}
}

// UpdateMeta replaces this peer's meta; the cluster learns it within a
// few rounds. The peer keeps its own copy. A meta above MaxMetaBytes is
// logged and ignored; use SetMeta to get the error.
func (p *Peer) UpdateMeta(meta *meshpb.PeerMeta) {
	if err := p.SetMeta(meta); err != nil {
		p.cfg.Logger.Error("meta not updated", "err", err)
	}
}

// SetMeta is UpdateMeta that returns why a meta was refused.
func (p *Peer) SetMeta(meta *meshpb.PeerMeta) error {
	now := p.cfg.Clock.Now()
	p.mu.Lock()
	err := p.m.SetMeta(meta, now)
	fx := p.flushLocked()
	p.mu.Unlock()
	p.carryOut(fx)
	return err
}

// AddSeed asks the peer to contact addr, retrying with capped backoff until
// it answers and whenever it is not a live member (so that partitions
// heal): at once on a running peer, else in its first round. A seed
// becomes a member only once it has answered. Self and known seeds are
// ignored; an invalid address is logged and ignored.
func (p *Peer) AddSeed(seed string) {
	now := p.cfg.Clock.Now()
	p.mu.Lock()
	err := p.m.AddSeed(seed, now)
	fx := p.flushLocked()
	p.mu.Unlock()
	p.carryOut(fx)
	if err != nil {
		p.cfg.Logger.Error("seed ignored", "err", err)
	}
}

// GetMembers returns a snapshot of the live members, self included, by
// address. The caller owns the map and the metas.
func (p *Peer) GetMembers() map[string]*meshpb.PeerMeta {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m.Members()
}

// Members returns every member this peer knows, sorted by address: live
// ones with their meta, and removed ones (failed or left, with their last
// meta) until their tombstone is purged after TombstoneTTL. The caller
// owns the result.
func (p *Peer) Members() []Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m.List()
}

// View returns Members, ViewDigest and Converged read together, so that
// they describe one state.
func (p *Peer) View() View {
	p.mu.Lock()
	defer p.mu.Unlock()
	return View{Members: p.m.List(), Digest: p.m.Digest(), Converged: p.m.Converged()}
}

// ViewDigest returns a digest of this peer's membership state (members,
// metas and tombstones): peers with equal digests hold the same state.
func (p *Peer) ViewDigest() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m.Digest()
}

// Converged reports whether every listed member is known to hold exactly
// this peer's state, and none is in doubt: no observer alerts on one, and
// this peer's own probes answer. It turns true as soon as that holds (no
// fixed sleep) and false as soon as this peer's state changes. A change
// this peer has not heard of yet is by nature invisible to it, so ask a
// peer that made or saw the change; one made by a member this side cannot
// reach shows once that member's observers alert (docs/PROTOCOL.md).
func (p *Peer) Converged() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m.Converged()
}

// Stats returns protocol counters.
func (p *Peer) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m.Stats()
}

// Leave tells every live member that this peer is leaving, then stops it.
// Members drop it at once, marked as left rather than failed. Leave
// returns an error only if no member could be told (the cluster then
// learns of the departure by expiry); the peer is stopped either way.
func (p *Peer) Leave(ctx context.Context) error {
	now := p.cfg.Clock.Now()
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return errors.New("leave: peer already stopped")
	}
	req, to := p.m.Leave(now)
	fx := p.flushLocked()
	p.mu.Unlock()
	p.carryOut(fx)

	var wg sync.WaitGroup
	var told atomic.Int32
	errs := make([]error, len(to))
	for i, addr := range to {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A leaver may tell members it never called: their
			// connections get DialTimeout before the call's RPCTimeout.
			if err := p.connect(ctx, addr, p.cfg.DialTimeout); err != nil {
				errs[i] = fmt.Errorf("tell %s: %w", addr, err)
				return
			}
			cctx, cancel := context.WithTimeout(ctx, p.cfg.RPCTimeout)
			defer cancel()
			if _, err := p.transport.Sync(cctx, addr, req); err != nil {
				errs[i] = fmt.Errorf("tell %s: %w", addr, err)
				return
			}
			told.Add(1)
		}()
	}
	wg.Wait()
	p.Stop()
	if len(to) > 0 && told.Load() == 0 {
		return fmt.Errorf("leave: no member could be told: %w", errors.Join(errs...))
	}
	return nil
}

// Stop ends every goroutine of the peer and closes its connections before
// it returns. It may be called before Run, concurrently with it, and more
// than once. The gRPC server stays the caller's to stop.
func (p *Peer) Stop() {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.stopped = true
		running := p.running
		for s := range p.subs {
			s.close()
		}
		p.subs = nil
		p.mu.Unlock()
		close(p.stopCh)
		p.cancel()
		if running {
			<-p.runDone
		}
		p.calls.Wait()
		p.transport.Close()
	})
}

// Subscription delivers membership events to C. Delivery never blocks
// gossip: when C is full the event is dropped and counted.
type Subscription struct {
	C       <-chan Event
	c       chan Event
	dropped atomic.Uint64
	p       *Peer
}

// Subscribe returns a subscription whose channel holds up to buffer
// events. C is closed by Close or when the peer stops.
func (p *Peer) Subscribe(buffer int) *Subscription {
	c := make(chan Event, max(buffer, 1))
	s := &Subscription{C: c, c: c, p: p}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		close(c)
		return s
	}
	p.subs[s] = struct{}{}
	return s
}

// Dropped returns how many events were dropped because C was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close stops delivery and closes C.
func (s *Subscription) Close() {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if _, ok := s.p.subs[s]; ok {
		delete(s.p.subs, s)
		s.close()
	}
}

func (s *Subscription) deliver(ev Event) {
	select {
	case s.c <- ev:
	default:
		s.dropped.Add(1)
	}
}

func (s *Subscription) close() { close(s.c) }
