package agent

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/stats"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/peer"
)

// MetricNames lists every metric the agent exports besides the standard
// go_* and process_* ones, with its help text; README and tests use it.
var MetricNames = []struct{ Name, Help string }{
	{"mesh_members", "Members in this agent's view, by state (alive, failed, left); removed ones count until their tombstone is purged."},
	{"mesh_converged", "1 when every live member is known to hold this agent's view, else 0."},
	{"mesh_rounds_total", "Gossip rounds run."},
	{"mesh_starved_rounds_total", "Rounds that ran more than 2 periods late; no member expires on them."},
	{"mesh_sync_errors_total", "Outgoing exchanges that failed (error or timeout)."},
	{"mesh_alerts_total", "Alerts this agent raised on members it observes and could not reach."},
	{"mesh_alerts_cleared_total", "Alerts this agent cleared because it reached the member again."},
	{"mesh_refutations_total", "Tombstones of this agent (failed by others) it overrode."},
	{"mesh_alerting_members", "Members this agent observes and currently alerts on because it cannot reach them; a member is removed once enough of its observers alert."},
	{"mesh_grpc_received_bytes_total", "gRPC message bytes received (with gRPC framing, without HTTP/2's), by side (server: requests to this agent; client: answers to its own requests) and method (Gossip, the stream that carries exchanges; Sync; admin and health methods)."},
	{"mesh_grpc_sent_bytes_total", "gRPC message bytes sent (with gRPC framing, without HTTP/2's), by side and method."},
	{"mesh_sync_duration_seconds", "Duration of Sync exchanges, on a Gossip stream or as Sync calls: side=server is the handler of a partner's request, side=client a request of this agent including the network; by outcome (ok, error)."},
}

// peerCollector reads the peer at scrape time, so the gauges are never
// stale and nothing polls between scrapes.
type peerCollector struct {
	p        *peer.Peer
	members  *prometheus.Desc
	conv     *prometheus.Desc
	alerting *prometheus.Desc
	stats    []statDesc
}

type statDesc struct {
	desc *prometheus.Desc
	get  func(peer.Stats) uint64
}

var _ prometheus.Collector = (*peerCollector)(nil)

func help(name string) string {
	for _, m := range MetricNames {
		if m.Name == name {
			return m.Help
		}
	}
	panic("agent: undocumented metric " + name)
}

func newPeerCollector(p *peer.Peer) *peerCollector {
	c := &peerCollector{
		p:        p,
		members:  prometheus.NewDesc("mesh_members", help("mesh_members"), []string{"state"}, nil),
		conv:     prometheus.NewDesc("mesh_converged", help("mesh_converged"), nil, nil),
		alerting: prometheus.NewDesc("mesh_alerting_members", help("mesh_alerting_members"), nil, nil),
	}
	for _, s := range []struct {
		name string
		get  func(peer.Stats) uint64
	}{
		{"mesh_rounds_total", func(s peer.Stats) uint64 { return s.Rounds }},
		{"mesh_starved_rounds_total", func(s peer.Stats) uint64 { return s.StarvedRounds }},
		{"mesh_sync_errors_total", func(s peer.Stats) uint64 { return s.SyncErrors }},
		{"mesh_alerts_total", func(s peer.Stats) uint64 { return s.Suspicions }},
		{"mesh_alerts_cleared_total", func(s peer.Stats) uint64 { return s.SuspicionsRefuted }},
		{"mesh_refutations_total", func(s peer.Stats) uint64 { return s.Refutations }},
	} {
		c.stats = append(c.stats, statDesc{prometheus.NewDesc(s.name, help(s.name), nil, nil), s.get})
	}
	return c
}

func (c *peerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.members
	ch <- c.conv
	ch <- c.alerting
	for _, s := range c.stats {
		ch <- s.desc
	}
}

func (c *peerCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[meshpb.State]int{}
	for _, m := range c.p.Members() {
		counts[m.State]++
	}
	for _, st := range []meshpb.State{meshpb.State_STATE_ALIVE, meshpb.State_STATE_FAILED, meshpb.State_STATE_LEFT} {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(counts[st]), StateName(st))
	}
	conv := 0.0
	if c.p.Converged() {
		conv = 1
	}
	ch <- prometheus.MustNewConstMetric(c.conv, prometheus.GaugeValue, conv)
	st := c.p.Stats()
	ch <- prometheus.MustNewConstMetric(c.alerting, prometheus.GaugeValue, float64(st.Alerting))
	for _, s := range c.stats {
		ch <- prometheus.MustNewConstMetric(s.desc, prometheus.CounterValue, float64(s.get(st)))
	}
}

// StateName is the lower-case name of a member state, as the CLI and the
// metrics spell it: alive, failed or left.
func StateName(s meshpb.State) string {
	switch s {
	case meshpb.State_STATE_ALIVE:
		return "alive"
	case meshpb.State_STATE_FAILED:
		return "failed"
	case meshpb.State_STATE_LEFT:
		return "left"
	}
	return "unknown"
}

// grpcMetrics is a grpc stats.Handler counting message bytes and timing
// Sync exchanges. One instance serves the agent's server (side "server") and
// another the peer's outgoing connections (side "client").
type grpcMetrics struct {
	side     string
	recv     *prometheus.CounterVec
	sent     *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

var _ stats.Handler = (*grpcMetrics)(nil)

// newGRPCMetrics registers the gRPC metrics on reg and returns the
// handlers for the server side and the client side.
func newGRPCMetrics(reg prometheus.Registerer) (server, client *grpcMetrics) {
	recv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mesh_grpc_received_bytes_total", Help: help("mesh_grpc_received_bytes_total")}, []string{"side", "method"})
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mesh_grpc_sent_bytes_total", Help: help("mesh_grpc_sent_bytes_total")}, []string{"side", "method"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mesh_sync_duration_seconds",
		Help: help("mesh_sync_duration_seconds"),
		// 100µs (loopback) to about 2.4s (a timeout at the default period).
		Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
	}, []string{"side", "outcome"})
	reg.MustRegister(recv, sent, dur)
	return &grpcMetrics{"server", recv, sent, dur}, &grpcMetrics{"client", recv, sent, dur}
}

type rpcKey struct{}

// rpc is what the handler keeps per RPC: its method label and, for Sync
// and Gossip, when each exchange still unanswered started. A stream
// answers in order, so the oldest one is the next to finish.
type rpc struct {
	method string
	mu     sync.Mutex
	starts []time.Time
}

func (r *rpc) start(t time.Time) {
	r.mu.Lock()
	r.starts = append(r.starts, t)
	r.mu.Unlock()
}

// finish returns when the oldest unanswered exchange started.
func (r *rpc) finish() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.starts) == 0 {
		return time.Time{}, false
	}
	t := r.starts[0]
	r.starts = r.starts[1:]
	return t, true
}

// knownMethods bounds the method label: a client may call any name.
var knownMethods = map[string]bool{
	"/mesh.v1.GossipService/Sync":   true,
	"/mesh.v1.GossipService/Gossip": true,
	"/mesh.v1.MeshAdmin/Members":    true,
	"/mesh.v1.MeshAdmin/Join":       true,
	"/mesh.v1.MeshAdmin/SetMeta":    true,
	"/mesh.v1.MeshAdmin/Leave":      true,
	"/mesh.v1.MeshAdmin/Watch":      true,
	"/grpc.health.v1.Health/Check":  true,
	"/grpc.health.v1.Health/Watch":  true,
	"/grpc.health.v1.Health/List":   true,
}

func (g *grpcMetrics) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	m := "other"
	if knownMethods[info.FullMethodName] {
		m = info.FullMethodName[strings.LastIndexByte(info.FullMethodName, '/')+1:]
		if strings.HasPrefix(info.FullMethodName, "/grpc.health") {
			m = "Health." + m
		}
	}
	return context.WithValue(ctx, rpcKey{}, &rpc{method: m})
}

// HandleRPC counts bytes and times exchanges: on the server from a
// request received to its answer sent, on the client from a request sent
// to its answer received. Exchanges left unanswered when the RPC ends
// (a refused Sync call, a timeout, a reset stream) count as errors.
func (g *grpcMetrics) HandleRPC(ctx context.Context, s stats.RPCStats) {
	r, _ := ctx.Value(rpcKey{}).(*rpc)
	if r == nil {
		return
	}
	timed := r.method == "Sync" || r.method == "Gossip"
	switch s := s.(type) {
	case *stats.InPayload:
		g.recv.WithLabelValues(g.side, r.method).Add(float64(s.WireLength))
		if timed && g.side == "server" {
			r.start(s.RecvTime)
		} else if timed {
			g.observe(r, s.RecvTime, s.Payload)
		}
	case *stats.OutPayload:
		g.sent.WithLabelValues(g.side, r.method).Add(float64(s.WireLength))
		if timed && g.side == "client" {
			r.start(s.SentTime)
		} else if timed {
			g.observe(r, s.SentTime, s.Payload)
		}
	case *stats.End:
		for timed {
			t0, ok := r.finish()
			if !ok {
				break
			}
			g.duration.WithLabelValues(g.side, "error").Observe(s.EndTime.Sub(t0).Seconds())
		}
	}
}

// observe times the oldest unanswered exchange of r, answered at t with
// answer (a refusal on a stream is an answer with a code).
func (g *grpcMetrics) observe(r *rpc, t time.Time, answer any) {
	t0, ok := r.finish()
	if !ok {
		return
	}
	outcome := "ok"
	if a, _ := answer.(*meshpb.SyncResponse); a.GetCode() != 0 {
		outcome = "error"
	}
	g.duration.WithLabelValues(g.side, outcome).Observe(t.Sub(t0).Seconds())
}

func (g *grpcMetrics) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (g *grpcMetrics) HandleConn(context.Context, stats.ConnStats)                       {}
