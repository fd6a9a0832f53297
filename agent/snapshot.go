package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/peer"
)

// snapshot is the file format of Config.Snapshot. It is JSON so that an
// operator can read and edit it.
type snapshot struct {
	Version int       `json:"version"` // 1
	Self    string    `json:"self"`
	Saved   time.Time `json:"saved"`
	// Members are the addresses to take as seeds on restart.
	Members []string `json:"members"`
}

// snapshotMembers returns the addresses worth rejoining: members alive or
// failed (a failed one may be partitioned, and the peer probes those too),
// not those that left, not self; sorted.
func snapshotMembers(ms []peer.Member, self string) []string {
	var out []string
	for _, m := range ms {
		if m.Addr != self && m.State != meshpb.State_STATE_LEFT {
			out = append(out, m.Addr)
		}
	}
	slices.Sort(out)
	return out
}

// loadSnapshot reads the members saved at path; a missing file is no
// members and no error.
func loadSnapshot(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", path, err)
	}
	return s.Members, nil
}

// saveSnapshot replaces the file at path atomically (write, then rename),
// so that a crash leaves the old snapshot or the new one, never half.
func saveSnapshot(path, self string, members []string, now time.Time) error {
	b, err := json.MarshalIndent(snapshot{Version: 1, Self: self, Saved: now.UTC(), Members: members}, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save snapshot: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	return nil
}
