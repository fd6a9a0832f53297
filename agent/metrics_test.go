package agent

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/stats"

	"github.com/gossipmesh/mesh/meshpb"
)

// Exchanges on a stream are timed one by one, in order: an answer ends
// the oldest unanswered request, a refusal is an error, and requests still
// unanswered when the stream ends are errors.
func TestGossipStreamExchangesAreTimed(t *testing.T) {
	reg := prometheus.NewRegistry()
	server, _ := newGRPCMetrics(reg)
	ctx := server.TagRPC(context.Background(), &stats.RPCTagInfo{FullMethodName: "/mesh.v1.GossipService/Gossip"})
	t0 := time.Unix(0, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	server.HandleRPC(ctx, &stats.InPayload{RecvTime: at(0)})
	server.HandleRPC(ctx, &stats.InPayload{RecvTime: at(1)})
	server.HandleRPC(ctx, &stats.OutPayload{SentTime: at(2), Payload: &meshpb.SyncResponse{}})
	server.HandleRPC(ctx, &stats.OutPayload{SentTime: at(4), Payload: &meshpb.SyncResponse{Code: 9}})
	server.HandleRPC(ctx, &stats.InPayload{RecvTime: at(10)})
	server.HandleRPC(ctx, &stats.End{EndTime: at(40)})

	got := map[string][2]float64{} // outcome -> count, sum in ms
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "mesh_sync_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					h := m.GetHistogram()
					got[l.GetValue()] = [2]float64{float64(h.GetSampleCount()), h.GetSampleSum() * 1000}
				}
			}
		}
	}
	want := map[string][2]float64{"ok": {1, 2}, "error": {2, 3 + 30}}
	for outcome, w := range want {
		if g := got[outcome]; g[0] != w[0] || g[1] < w[1]-0.01 || g[1] > w[1]+0.01 {
			t.Errorf("%s: %v exchanges taking %v ms in all, want %v and %v", outcome, g[0], g[1], w[0], w[1])
		}
	}
}
