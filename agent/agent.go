package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/meshtls"
	"github.com/gossipmesh/mesh/peer"
)

// stopGrace bounds the graceful stop of the gRPC server; calls still
// running after it are cut.
const stopGrace = 2 * time.Second

// Connection limits of the agent's gRPC server (see docs/SECURITY.md).
const (
	// handshakeTimeout bounds the TLS handshake and HTTP/2 preface of a
	// new connection: a client that opens one and stalls is cut.
	handshakeTimeout = 10 * time.Second
	// maxStreams bounds concurrent calls per connection; a peer keeps one
	// Gossip stream open, a CLI at most a watch and a call.
	maxStreams = 64
	// pingMinTime: a client that pings more often than this (or at all
	// with no call open) is sent GOAWAY "too_many_pings" after 3 strikes.
	// gRPC clients ping at most every 10s; mesh peers do not ping.
	pingMinTime = 10 * time.Second
	// idleClose closes connections idle this long; peers reconnect on
	// their next exchange. maxAge makes every connection handshake again
	// at least this often, so a rotated or dropped CA applies to all;
	// calls in flight (a watch; a peer renews its Gossip stream every
	// 20 MaxRetryInterval) may finish first.
	idleClose = 5 * time.Minute
	maxAge    = time.Hour
)

// Agent is one member of a cluster as a service: a peer, the gRPC server
// it answers on (gossip and grpc.health.v1), the admin server (MeshAdmin,
// on its own address), event handlers, and optionally a snapshot file and
// a Prometheus endpoint.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	self    string
	lis     net.Listener
	alis    net.Listener // nil without an admin address
	mlis    net.Listener // nil without metrics
	peer    *peer.Peer
	srv     *grpc.Server
	asrv    *grpc.Server // nil without an admin address
	admins  *adminCAs    // nil without --admin-ca
	events  *dispatcher
	health  *health.Server
	httpSrv *http.Server // nil without metrics
	joiner  *joiner
	tls     *meshtls.Reloader // nil without TLS

	metaMu sync.Mutex // serialises SetMeta's read-modify-write

	leaveOnce sync.Once
	leaveResp *meshpb.LeaveResponse
	stopOnce  sync.Once
	stopReq   chan struct{} // closed by a Leave call: Run returns

	ran atomic.Bool
}

// New validates cfg and binds the agent's ports (so that an address in use
// fails here, with a one-line error); it starts nothing. Call Run, or
// Close to release the ports without running.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lis, err := listen(cfg.Bind, "--bind")
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.logger(), lis: lis, stopReq: make(chan struct{})}
	if cfg.Advertise == "" {
		a.self = lis.Addr().String() // the address bound: "localhost" becomes 127.0.0.1
	} else {
		a.self = withPort(cfg.Advertise, lis.Addr().(*net.TCPAddr).Port)
	}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()

	reg := prometheus.NewRegistry()
	srvMetrics, cliMetrics := newGRPCMetrics(reg)
	pc := cfg.peerConfig(a.self)
	maxMsg := cfg.MaxMsgBytes
	if maxMsg == 0 {
		maxMsg = pc.MaxMessageBytes()
	}
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	srvOpts := append(peer.ServerOptions(),
		grpc.StatsHandler(srvMetrics),
		grpc.MaxRecvMsgSize(maxMsg),
		grpc.MaxSendMsgSize(maxMsg),
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.MaxConcurrentStreams(maxStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: pingMinTime}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: idleClose, MaxConnectionAge: maxAge}),
	)
	adminOpts := slices.Clone(srvOpts) // the same limits, other credentials
	if cfg.tls() {
		if a.tls, err = meshtls.LoadFiles(cfg.TLSCert, cfg.TLSKey, cfg.TLSCA); err != nil {
			return nil, err
		}
		if err := selfCheck(a.tls, a.self); err != nil {
			return nil, fmt.Errorf("--tls-cert %s: %w; peers would refuse this agent's entries (give a certificate for its --advertise address)", cfg.TLSCert, err)
		}
		a.tls.RequireName(a.self) // and so must every reloaded one
		creds = a.tls.DialOption()
		srvOpts = append(srvOpts, a.tls.ServerOption())
		pc.Authority = a.tls.Authority()
		if cfg.AdminCA != "" {
			if a.admins, err = loadAdminCAs(cfg.AdminCA, cfg.TLSCA); err != nil {
				return nil, err
			}
		}
	}
	if cfg.Admin != "" {
		ad, _ := ParseAdmin(cfg.Admin) // validated
		if a.alis, err = listenAdmin(ad, a.admins != nil); err != nil {
			return nil, err
		}
	}
	pc.DialOptions = []grpc.DialOption{
		creds,
		grpc.WithStatsHandler(cliMetrics),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)),
	}
	a.peer, err = peer.New(pc)
	if err != nil {
		return nil, err
	}
	if err := a.peer.SetMeta(&meshpb.PeerMeta{Name: cfg.Name, Tags: cfg.Tags}); err != nil {
		return nil, fmt.Errorf("--name/--tag: %w", err)
	}
	if cfg.Metrics != "" {
		if a.mlis, err = listen(cfg.Metrics, "--metrics"); err != nil {
			return nil, err
		}
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newPeerCollector(a.peer))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		a.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}

	// The gossip port serves gossip and health only: every member must be
	// able to reach it, and no member may control another agent.
	a.srv = grpc.NewServer(srvOpts...)
	meshpb.RegisterGossipServiceServer(a.srv, a.peer)
	a.health = health.NewServer()
	healthpb.RegisterHealthServer(a.srv, a.health)
	if a.alis != nil {
		if a.admins != nil {
			adminOpts = append(adminOpts, grpc.Creds(credentials.NewTLS(adminTLS(a.tls, a.admins))))
		}
		a.asrv = grpc.NewServer(adminOpts...)
		meshpb.RegisterMeshAdminServer(a.asrv, &admin{a: a})
	}
	a.events = newDispatcher(cfg.EventHandlers, cfg.handlerTimeout(), a.self, cfg.Cluster, a.log)
	a.joiner = newJoiner(cfg.Resolver, a.peer, a.peer.Config().PingPeriod, a.log)
	if a.tls != nil {
		a.tls.OnReload(a.reloaded)
	}
	ok = true
	return a, nil
}

// ReloadTLS re-reads the TLS files and the admin CAs (`mesh agent` calls
// it on SIGHUP; the agent also polls them every period). New connections
// use the new certificates at once, and the agent re-signs its own entry
// with its new one. On error the agent keeps the previous files' contents.
func (a *Agent) ReloadTLS() error {
	if a.tls == nil {
		return errors.New("reload TLS: the agent runs without --tls-cert/--tls-key/--tls-ca")
	}
	err := a.tls.Reload()
	if a.admins != nil {
		changed, aerr := a.admins.reload(false) // logged only if the contents changed
		a.adminReloaded(changed, aerr)
		err = errors.Join(err, aerr)
	}
	return err
}

// adminReloaded logs a reload of the admin CAs.
func (a *Agent) adminReloaded(changed bool, err error) {
	if err != nil {
		a.log.Error("admin CAs not reloaded; keeping the previous ones", "err", err)
	} else if changed {
		a.log.Info("admin CAs reloaded", "file", a.cfg.AdminCA)
	}
}

// selfCheck checks that peers would accept an entry this agent signs.
func selfCheck(r *meshtls.Reloader, self string) error {
	data := []byte("self-check")
	cert, sig, err := r.Authority().Sign(data)
	if err != nil {
		return err
	}
	return r.Authority().Verify(self, data, cert, sig)
}

// reloaded logs a reload and re-signs this agent's entry with the new
// certificate, so that its entry stays valid once an old CA is dropped.
func (a *Agent) reloaded(err error) {
	if err != nil {
		a.log.Error("TLS files not reloaded; keeping the previous certificate", "err", err)
		return
	}
	leaf := a.tls.Leaf()
	a.log.Info("TLS certificate reloaded", "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.String(),
		"not_after", leaf.NotAfter, "cas", a.tls.CAs())
	a.metaMu.Lock()
	defer a.metaMu.Unlock()
	if cur := a.peer.GetMembers()[a.self]; cur != nil {
		_ = a.peer.SetMeta(cur) // the same meta: only the stamp and signature change
	}
}

// listen binds addr, naming the flag in its error.
func listen(addr, flag string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
		}
		return nil, fmt.Errorf("%s %s: cannot listen: %w", flag, addr, err)
	}
	return lis, nil
}

// Addr returns the agent's address: its peer id, which clients and other
// peers dial.
func (a *Agent) Addr() string { return a.self }

// AdminAddr returns the address the admin API is served on ("unix:PATH"
// or host:port, with the port bound), or "" without one.
func (a *Agent) AdminAddr() string {
	if a.alis == nil {
		return ""
	}
	if ua, ok := a.alis.Addr().(*net.UnixAddr); ok {
		return "unix:" + ua.Name
	}
	return a.alis.Addr().String()
}

// MetricsAddr returns the address metrics are served on, or "".
func (a *Agent) MetricsAddr() string {
	if a.mlis == nil {
		return ""
	}
	return a.mlis.Addr().String()
}

// Peer returns the agent's peer.
func (a *Agent) Peer() *peer.Peer { return a.peer }

// Close releases what New acquired, for an agent that will not Run.
func (a *Agent) Close() {
	if a.ran.Load() {
		return // Run releases everything itself
	}
	if a.peer != nil {
		a.peer.Stop()
	}
	a.lis.Close()
	if a.alis != nil {
		a.alis.Close()
	}
	if a.mlis != nil {
		a.mlis.Close()
	}
}

// Run serves and gossips until ctx is done or a client calls Leave, then
// leaves the cluster gracefully (every member is told at once) and shuts
// down. Every goroutine it started has exited and every port is released
// when it returns. The error is a serving failure; a Leave that reached no
// member is logged, not returned. Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	var pending []string // snapshot members not yet met
	if a.cfg.Snapshot != "" {
		seeds, err := loadSnapshot(a.cfg.Snapshot)
		if err != nil {
			a.log.Warn("snapshot ignored", "err", err)
		}
		for _, s := range seeds {
			a.peer.AddSeed(s) // an invalid address is logged and ignored
		}
		pending = seeds
		if len(seeds) > 0 {
			a.log.Info("rejoining members from snapshot", "file", a.cfg.Snapshot, "seeds", len(seeds))
		}
	}
	loopCtx, stopLoop := context.WithCancel(context.Background())
	defer stopLoop()

	var wg sync.WaitGroup
	failed := make(chan error, 3)
	// Subscribed before the peer runs, so handlers see every event.
	handlerSub := a.peer.Subscribe(handlerBuffer)
	handlersDone := make(chan struct{})
	wg.Go(func() {
		defer close(handlersDone)
		a.events.run(handlerSub)
	})
	wg.Go(func() {
		if err := a.srv.Serve(a.lis); err != nil {
			failed <- fmt.Errorf("serve gRPC on %s: %w", a.lis.Addr(), err)
		}
	})
	if a.asrv != nil {
		wg.Go(func() {
			if err := a.asrv.Serve(a.alis); err != nil {
				failed <- fmt.Errorf("serve the admin API on %s: %w", a.AdminAddr(), err)
			}
		})
	}
	wg.Go(a.peer.Run)
	if a.tls != nil {
		wg.Go(func() { a.tls.WatchFiles(loopCtx, a.peer.Config().PingPeriod) })
	}
	if a.admins != nil {
		wg.Go(func() { a.admins.poll(loopCtx, a.peer.Config().PingPeriod, a.adminReloaded) })
	}
	if a.httpSrv != nil {
		wg.Go(func() {
			if err := a.httpSrv.Serve(a.mlis); !errors.Is(err, http.ErrServerClosed) {
				failed <- fmt.Errorf("serve metrics on %s: %w", a.mlis.Addr(), err)
			}
		})
	}
	loopDone := make(chan struct{})
	wg.Go(func() {
		defer close(loopDone)
		a.loop(loopCtx, pending)
	})
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	a.log.Info("agent started", "addr", a.self, "bind", a.lis.Addr().String(), "admin", a.AdminAddr(), "metrics", a.MetricsAddr(),
		"cluster", a.cfg.Cluster, "period", a.peer.Config().PingPeriod.String(), "name", a.cfg.Name)

	var err error
	select {
	case <-ctx.Done():
		a.log.Info("stopping: leaving the cluster")
	case <-a.stopReq:
	case err = <-failed:
		a.log.Error("stopping", "err", err)
	}
	a.health.Shutdown()
	stopLoop()
	<-loopDone // final snapshot saved
	a.leave()

	handlerSub.Close() // the dispatcher stops, giving running handlers stopGrace
	var stops sync.WaitGroup
	for _, srv := range []*grpc.Server{a.srv, a.asrv} {
		if srv != nil {
			stops.Go(func() { gracefulStop(srv) })
		}
	}
	stops.Wait()
	<-handlersDone
	if a.httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), stopGrace)
		if err := a.httpSrv.Shutdown(sctx); err != nil {
			a.httpSrv.Close()
		}
		cancel()
	}
	wg.Wait()
	a.log.Info("agent stopped")
	return err
}

// gracefulStop stops srv, cutting calls still running after stopGrace.
func gracefulStop(srv *grpc.Server) {
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		srv.Stop()
		<-stopped
	}
}

// leave tells the cluster once, and stops the peer.
func (a *Agent) leave() *meshpb.LeaveResponse {
	a.leaveOnce.Do(func() {
		n := 0
		for _, m := range a.peer.Members() {
			if m.Addr != a.self && m.State == meshpb.State_STATE_ALIVE {
				n++
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*a.peer.Config().RPCTimeout)
		defer cancel()
		resp := &meshpb.LeaveResponse{Members: uint32(n), Self: a.self}
		if err := a.peer.Leave(ctx); err != nil {
			resp.Error = err.Error()
			if n > 0 {
				a.log.Warn("left the cluster, but no member could be told; they will expire this agent", "err", err)
			}
		} else {
			a.log.Info("left the cluster", "members_told", n)
		}
		a.leaveResp = resp
	})
	return a.leaveResp
}

// requestStop makes Run return (after a Leave call).
func (a *Agent) requestStop() { a.stopOnce.Do(func() { close(a.stopReq) }) }

// loop seeds the join addresses, re-resolves join names, logs membership
// events and keeps the snapshot current, until ctx is done; it then saves
// the snapshot a last time. pending are snapshot members the agent has not
// met yet: they stay in the snapshot until they appear in the view (the
// peer keeps trying them as seeds), so that a restart before they answer
// does not forget them.
func (a *Agent) loop(ctx context.Context, pending []string) {
	sub := a.peer.Subscribe(256)
	defer sub.Close()
	// Not strict: names that do not resolve yet are logged and retried.
	_, _ = a.joiner.add(ctx, a.cfg.Join, time.Now(), false)
	t := time.NewTicker(a.peer.Config().PingPeriod)
	defer t.Stop()

	waiting := map[string]bool{}
	for _, s := range pending {
		waiting[s] = true
	}
	var saved []string
	var lastErr string
	save := func() {
		ms := a.peer.Members()
		if a.cfg.Snapshot == "" {
			return
		}
		for _, m := range ms {
			delete(waiting, m.Addr)
		}
		addrs := snapshotMembers(ms, a.self)
		addrs = append(addrs, slices.Collect(maps.Keys(waiting))...)
		slices.Sort(addrs)
		addrs = slices.Compact(addrs)
		if saved != nil && slices.Equal(addrs, saved) {
			return
		}
		if err := saveSnapshot(a.cfg.Snapshot, a.self, addrs, time.Now()); err != nil {
			if err.Error() != lastErr { // once per distinct failure, not every round
				a.log.Error("snapshot not saved", "err", err)
				lastErr = err.Error()
			}
			return
		}
		saved, lastErr = addrs, ""
		if saved == nil {
			saved = []string{}
		}
	}
	save()
	events := sub.C
	for {
		select {
		case <-ctx.Done():
			save()
			return
		case now := <-t.C:
			a.joiner.tick(ctx, now)
			save()
		case ev, ok := <-events:
			if !ok {
				events = nil // the peer stopped
				continue
			}
			a.log.Info("membership event", "type", ev.Type.String(), "addr", ev.Addr, "name", ev.Meta.GetName())
			save()
		}
	}
}
