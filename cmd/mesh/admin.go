package main

import (
	"os"
	"path/filepath"
	"strconv"
)

// adminEnv names the environment variable that sets the default admin
// address of `mesh agent` and of the client commands alike, as SERF_RPC_ADDR
// does for serf: set once, and every command on the host agrees.
const adminEnv = "MESH_ADMIN"

// adminRule is how the default admin address is chosen, for help texts.
const adminRule = "unix:/run/mesh/mesh.sock as root, unix:$XDG_RUNTIME_DIR/mesh/mesh.sock or unix:/tmp/mesh-UID/mesh.sock otherwise"

// defaultAdmin returns the admin address used when --admin is not given.
func defaultAdmin() string { return adminDefault(os.Geteuid(), os.Getenv) }

// adminDefault is $MESH_ADMIN if set, else a unix socket in a directory
// that belongs to the user, so that an agent and the commands run by the
// same user on the same host meet without flags: /run/mesh for root (the
// system service's runtime directory), the user's runtime directory
// otherwise, else a directory of the user's own under /tmp (as tmux does).
// A socket rather than a loopback port: its file mode admits the agent's
// user and root only, while any local process (a sidecar sharing a pod's
// network, any user of the host) can reach 127.0.0.1.
func adminDefault(uid int, getenv func(string) string) string {
	if v := getenv(adminEnv); v != "" {
		return v
	}
	if uid == 0 {
		return "unix:/run/mesh/mesh.sock"
	}
	if d := getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		return "unix:" + filepath.Join(d, "mesh", "mesh.sock")
	}
	return "unix:" + filepath.Join(os.TempDir(), "mesh-"+strconv.Itoa(uid), "mesh.sock")
}
