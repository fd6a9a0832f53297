package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/gossipmesh/mesh/meshpb"
)

const testPeriod = 50 * time.Millisecond

// waitLimit is generous: the machine is shared.
const waitLimit = 15 * time.Second

type running struct {
	a       *Agent
	cancel  context.CancelFunc
	done    chan error
	waited  bool
	lastErr error
}

// start runs an agent until the test ends (or stop).
func start(t *testing.T, cfg Config) *running {
	t.Helper()
	if cfg.Bind == "" {
		cfg.Bind = "127.0.0.1:0"
	}
	if cfg.Period == 0 {
		cfg.Period = testPeriod
	}
	if cfg.Admin == "" {
		cfg.Admin = "unix:" + filepath.Join(t.TempDir(), "admin.sock")
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run (the agent leaves) and waits for it.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := r.wait(t); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// wait waits for Run to return and returns its error.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	if r.waited {
		return r.lastErr
	}
	select {
	case r.lastErr = <-r.done:
		r.waited = true
		return r.lastErr
	case <-time.After(waitLimit):
		t.Fatalf("agent %s did not stop within %v", r.a.Addr(), waitLimit)
		return nil
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// eventually polls cond every 10ms until it holds or waitLimit passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, waitLimit, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func members(t *testing.T, c meshpb.MeshAdminClient) *meshpb.MembersResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := c.Members(ctx, &meshpb.MembersRequest{})
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	return m
}

func stateOf(m *meshpb.MembersResponse, addr string) (meshpb.State, bool) {
	for _, mb := range m.GetMembers() {
		if mb.GetAddr() == addr {
			return mb.GetState(), true
		}
	}
	return 0, false
}

func aliveCount(m *meshpb.MembersResponse) int {
	n := 0
	for _, mb := range m.GetMembers() {
		if mb.GetState() == meshpb.State_STATE_ALIVE {
			n++
		}
	}
	return n
}

// TestAgentAdminAPI drives every MeshAdmin call, health and metrics
// against three agents in this process.
func TestAgentAdminAPI(t *testing.T) {
	a := start(t, Config{Name: "a", Tags: map[string]string{"role": "web"}, Metrics: "127.0.0.1:0"})
	b := start(t, Config{Name: "b", Join: []string{a.a.Addr()}})
	c := start(t, Config{Name: "c"})
	ca := meshpb.NewMeshAdminClient(dial(t, a.a.AdminAddr()))
	cb := meshpb.NewMeshAdminClient(dial(t, b.a.AdminAddr()))
	cc := meshpb.NewMeshAdminClient(dial(t, c.a.AdminAddr()))
	ctx := t.Context()

	// Join by host name: localhost stands for 127.0.0.1 (and maybe ::1).
	_, port, _ := net.SplitHostPort(a.a.Addr())
	j, err := cc.Join(ctx, &meshpb.JoinRequest{Addrs: []string{net.JoinHostPort("localhost", port)}})
	if err != nil || !slices.Contains(j.GetSeeds(), a.a.Addr()) {
		t.Fatalf("Join(localhost:%s) = %v, %v; want seeds containing %s", port, j, err, a.a.Addr())
	}
	if _, err := cc.Join(ctx, &meshpb.JoinRequest{Addrs: []string{"no-port"}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Join(no-port) = %v, want InvalidArgument", err)
	}
	eventually(t, "3 agents converge", func() (bool, string) {
		for _, cl := range []meshpb.MeshAdminClient{ca, cb, cc} {
			m := members(t, cl)
			if aliveCount(m) != 3 || !m.GetConverged() {
				return false, m.String()
			}
		}
		return true, ""
	})
	m := members(t, ca)
	if m.GetSelf() != a.a.Addr() || m.GetPeriod().AsDuration() != testPeriod {
		t.Errorf("Members self=%s period=%v, want %s %v", m.GetSelf(), m.GetPeriod().AsDuration(), a.a.Addr(), testPeriod)
	}

	// Watch on b sees a's meta update.
	wctx, wcancel := context.WithTimeout(ctx, waitLimit)
	defer wcancel()
	stream, err := cb.Watch(wctx, &meshpb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil { // b is subscribed
		t.Fatal(err)
	}
	name := "alpha"
	sm, err := ca.SetMeta(ctx, &meshpb.SetMetaRequest{Name: &name, Tags: map[string]string{"zone": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := sm.GetMeta(); got.GetName() != "alpha" || got.GetTags()["role"] != "web" || got.GetTags()["zone"] != "b" {
		t.Errorf("SetMeta merged meta = %v, want name alpha, role=web (kept), zone=b", got)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		if ev.GetType() == meshpb.EventType_EVENT_TYPE_UPDATE && ev.GetAddr() == a.a.Addr() && ev.GetMeta().GetName() == "alpha" {
			break
		}
	}
	wcancel()
	sm, err = ca.SetMeta(ctx, &meshpb.SetMetaRequest{DeleteTags: []string{"role"}})
	if err != nil || sm.GetMeta().GetName() != "alpha" || len(sm.GetMeta().GetTags()) != 1 {
		t.Errorf("SetMeta(delete role) = %v, %v; want name alpha, tags {zone: b}", sm, err)
	}

	// Health.
	hc, err := healthpb.NewHealthClient(dial(t, a.a.Addr())).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health Check = %v, %v; want SERVING", hc, err)
	}

	// Metrics: every documented name is exported.
	resp, err := http.Get("http://" + a.a.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, mn := range MetricNames {
		if !strings.Contains(string(body), "\n"+mn.Name) {
			t.Errorf("/metrics lacks %s", mn.Name)
		}
	}
	if !strings.Contains(string(body), `mesh_grpc_received_bytes_total{method="Gossip",side="server"}`) {
		t.Errorf("/metrics: no bytes received on Gossip streams in\n%s", grepMesh(string(body)))
	}
	if !strings.Contains(string(body), `mesh_sync_duration_seconds_count{outcome="ok",side="client"}`) {
		t.Errorf("/metrics: no exchanges timed in\n%s", grepMesh(string(body)))
	}
	if !strings.Contains(string(body), `mesh_members{state="alive"} 3`) {
		t.Errorf("/metrics: want mesh_members{state=\"alive\"} 3 in\n%s", grepMesh(string(body)))
	}

	// Leave: c tells everyone, answers, and its Run returns.
	lr, err := cc.Leave(ctx, &meshpb.LeaveRequest{})
	if err != nil || lr.GetMembers() != 2 || lr.GetError() != "" {
		t.Fatalf("Leave = %v, %v; want 2 members told", lr, err)
	}
	if err := c.wait(t); err != nil {
		t.Errorf("Run after Leave: %v", err)
	}
	eventually(t, "a sees c left", func() (bool, string) {
		st, _ := stateOf(members(t, ca), c.a.Addr())
		return st == meshpb.State_STATE_LEFT, st.String()
	})
	if mb := members(t, ca); !hasMetaName(mb, c.a.Addr(), "c") {
		t.Errorf("a's view of c after leave lacks c's last name: %v", mb)
	}
	lis, err := net.Listen("tcp", c.a.Addr())
	if err != nil {
		t.Errorf("port of the agent that left is still bound: %v", err)
	} else {
		lis.Close()
	}
}

func hasMetaName(m *meshpb.MembersResponse, addr, name string) bool {
	for _, mb := range m.GetMembers() {
		if mb.GetAddr() == addr {
			return mb.GetMeta().GetName() == name
		}
	}
	return false
}

func grepMesh(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "mesh_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestNewPortInUse(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	_, err = New(Config{Bind: lis.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("New on a taken port: %v; want one line with 'address already in use'", err)
	}
	if !strings.HasPrefix(err.Error(), "--bind "+lis.Addr().String()) {
		t.Errorf("error %q does not start with the flag and address", err)
	}
}

// TestSnapshotRejoin: an agent restarted with its snapshot and no --join
// finds the cluster again.
func TestSnapshotRejoin(t *testing.T) {
	a := start(t, Config{Name: "a"})
	snap := filepath.Join(t.TempDir(), "members.json")
	b := start(t, Config{Name: "b", Join: []string{a.a.Addr()}, Snapshot: snap})
	eventually(t, "b's snapshot lists a", func() (bool, string) {
		got, err := loadSnapshot(snap)
		return err == nil && slices.Contains(got, a.a.Addr()), string(must(os.ReadFile(snap)))
	})
	b.stop(t)
	if got, _ := loadSnapshot(snap); !slices.Contains(got, a.a.Addr()) {
		t.Fatalf("snapshot after b left = %v; want it to keep %s", got, a.a.Addr())
	}

	b2 := start(t, Config{Name: "b2", Snapshot: snap})
	cb := meshpb.NewMeshAdminClient(dial(t, b2.a.AdminAddr()))
	eventually(t, "restarted b sees a without --join", func() (bool, string) {
		m := members(t, cb)
		st, ok := stateOf(m, a.a.Addr())
		return ok && st == meshpb.State_STATE_ALIVE, m.String()
	})
}

func must[T any](v T, _ error) T { return v }
