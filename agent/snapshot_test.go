package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/peer"
)

func TestSnapshotRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "members.json")
	if got, err := loadSnapshot(path); got != nil || err != nil {
		t.Fatalf("loadSnapshot(missing) = %v, %v; want nil, nil", got, err)
	}
	want := []string{"10.0.0.1:7946", "10.0.0.2:7946"}
	if err := saveSnapshot(path, "10.0.0.3:7946", want, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, err := loadSnapshot(path); err != nil || !slices.Equal(got, want) {
		t.Fatalf("loadSnapshot = %v, %v; want %v", got, err, want)
	}
	if err := os.WriteFile(path, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSnapshot(path); err == nil {
		t.Error("loadSnapshot(corrupt) = nil error")
	}
	if left, _ := filepath.Glob(path + ".tmp*"); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestSnapshotMembersSkipsSelfAndLeft(t *testing.T) {
	ms := []peer.Member{
		{Addr: "b:1", State: meshpb.State_STATE_FAILED},
		{Addr: "self:1", State: meshpb.State_STATE_ALIVE},
		{Addr: "c:1", State: meshpb.State_STATE_LEFT},
		{Addr: "a:1", State: meshpb.State_STATE_ALIVE},
	}
	if got, want := snapshotMembers(ms, "self:1"), []string{"a:1", "b:1"}; !slices.Equal(got, want) {
		t.Errorf("snapshotMembers = %v, want %v", got, want)
	}
}
