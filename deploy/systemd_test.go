package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unitFile = "systemd/mesh.service"

// unit is a systemd unit file: section → key → values, in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l[1 : len(l)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is not key=value in a section", path, n, l)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// The unit is hardened and consistent: its own user, a read-only system,
// no new privileges, a restart on failure only, and an ExecStop that makes
// the agent leave through the admin socket ExecStart gives it, in the
// runtime directory the unit creates.
func TestSystemdUnitContents(t *testing.T) {
	u := parseUnit(t, unitFile)
	for _, want := range []struct{ key, value string }{
		{"DynamicUser", "yes"}, {"User", "mesh"}, {"ProtectSystem", "strict"}, {"NoNewPrivileges", "yes"},
		{"Restart", "on-failure"}, {"ProtectHome", "yes"}, {"PrivateTmp", "yes"}, {"CapabilityBoundingSet", ""},
		{"RuntimeDirectory", "mesh"}, {"StateDirectory", "mesh"},
	} {
		if got, ok := u["Service"][want.key]; !ok || got[len(got)-1] != want.value {
			t.Errorf("[Service] %s=%q, want %q", want.key, got, want.value)
		}
	}
	start, stop := strings.Fields(u.get("Service", "ExecStart")), strings.Fields(u.get("Service", "ExecStop"))
	if len(start) < 2 || start[1] != "agent" || len(stop) < 2 || stop[0] != start[0] || stop[1] != "leave" {
		t.Fatalf("ExecStart %q, ExecStop %q; want mesh agent and mesh leave", start, stop)
	}
	admin, _ := flagValue(start, "admin")
	if v, _ := flagValue(stop, "admin"); v != admin || filepath.Dir(strings.TrimPrefix(admin, "unix:")) != "/run/mesh" {
		t.Errorf("ExecStart --admin %q, ExecStop --admin %q; want the same socket in /run/mesh (RuntimeDirectory=mesh)", admin, v)
	}
	if snap, _ := flagValue(start, "snapshot"); filepath.Dir(snap) != "/var/lib/mesh" {
		t.Errorf("--snapshot %q, want a file in /var/lib/mesh (StateDirectory=mesh)", snap)
	}
	if got := u.get("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("WantedBy=%q", got)
	}
}

// The unit's ExecStart and ExecStop command lines run: the agent starts
// (its directories stood in for by temporary ones, its extra arguments
// from the environment file), and ExecStop makes it leave and exit 0.
func TestSystemdCommandsRun(t *testing.T) {
	u := parseUnit(t, unitFile)
	run := t.TempDir() // as systemd makes /run/mesh: the service user's, 0750
	if err := os.Chmod(run, 0o750); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	local := func(line string) []string {
		line = strings.ReplaceAll(line, "/run/mesh/", run+"/")
		line = strings.ReplaceAll(line, "/var/lib/mesh/", state+"/")
		line = strings.ReplaceAll(line, "$MESH_AGENT_ARGS", "--bind 127.0.0.1:0 --log-format json")
		return strings.Fields(line)
	}
	a := startAgent(t, local(u.get("Service", "ExecStart")), nil)
	stdout, _, err := runArgv(t, local(u.get("Service", "ExecStop")))
	mustOK(t, "ExecStop", err)
	if !strings.Contains(stdout, a.addr+" left") {
		t.Errorf("ExecStop printed %q", stdout)
	}
	if err := a.exited(t); err != nil {
		t.Errorf("agent after ExecStop: %v, want exit 0 (Restart=on-failure then leaves it stopped)", err)
	}
	if _, err := os.Stat(filepath.Join(state, "members.json")); err != nil {
		t.Errorf("no snapshot in the state directory: %v", err)
	}
}

func runArgv(t *testing.T, argv []string) (string, string, error) {
	t.Helper()
	return run(t, argv, nil)
}

// systemd-analyze verify accepts the unit without a warning, with
// ExecStart's binary pointing at the build (it checks that it exists).
// Where systemd-analyze is not installed this test says so and skips;
// the checks above still ran.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found: the unit was not verified (install systemd to run this check)")
	}
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, unitFile)
	bin := strings.Fields(u.get("Service", "ExecStart"))[0]
	local := filepath.Join(t.TempDir(), "mesh.service")
	if err := os.WriteFile(local, []byte(strings.ReplaceAll(string(b), bin, meshBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", local).CombinedOutput()
	// Warnings (unknown keys, bad values) go to the output with exit 0.
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	if err != nil || len(lines) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, strings.Join(lines, "\n"))
	}
}
