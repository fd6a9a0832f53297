package faults

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(envProxy); spec != "" {
		os.Exit(runProxy(spec))
	}
	os.Exit(m.Run())
}

// envDuration reads a duration knob.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

// TestFaults runs every scenario on one network of 7 hosts, each with a
// fresh cluster. Select one with -run TestFaults/NAME.
func TestFaults(t *testing.T) {
	if os.Getenv("MESH_FAULTS") == "" {
		t.Skip("fault suite: run with MESH_FAULTS=1 (make faults, as root)")
	}
	period := envDuration(t, "MESH_FAULTS_PERIOD", 200*time.Millisecond)
	nw := newNetwork(t)
	bin := buildMesh(t)
	say(t, "faults: gossip period P = %v; every agent's default expiry at 7 members is 5P", period)
	t.Run("partition", func(t *testing.T) { testPartition(t, nw, bin, period) })
	t.Run("loss", func(t *testing.T) {
		testLoss(t, nw, bin, period, envDuration(t, "MESH_FAULTS_LOSS", 2*time.Minute))
	})
	t.Run("crash", func(t *testing.T) { testCrash(t, nw, bin, period) })
	t.Run("slow", func(t *testing.T) { testSlow(t, nw, bin, period) })
	t.Run("unreachable", func(t *testing.T) { testUnreachable(t, nw, bin, period) })
	t.Run("flipflop", func(t *testing.T) { testFlipFlop(t, nw, bin, period) })
	t.Run("soak", func(t *testing.T) {
		testSoak(t, nw, bin, period, envDuration(t, "MESH_FAULTS_SOAK", time.Minute))
	})
}

// buildMesh builds the mesh command (without -race: the agents' timing is
// what is under test) into a temporary directory.
func buildMesh(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mesh")
	start := time.Now()
	out, err := exec.Command("go", "build", "-o", bin, "github.com/gossipmesh/mesh/cmd/mesh").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	return bin
}
