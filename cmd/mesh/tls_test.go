package main

import (
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gossipmesh/mesh/meshtls/meshtlstest"
)

// TestBinaryTLS runs `mesh agent` with mutual TLS as separate processes,
// each with its admin API on loopback TCP behind --admin-ca: two agents
// converge; client commands work with an operator's certificate, and fail
// clearly with a member's or with none; a member's certificate cannot
// make another agent leave, an operator's can; SIGHUP reloads rewritten
// certificate files.
func TestBinaryTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildMesh(t)
	ca, opsCA := meshtlstest.NewCA(t, "mesh test ca"), meshtlstest.NewCA(t, "mesh operators")
	opsCAFile := filepath.Join(t.TempDir(), "ops-ca.pem")
	if err := os.WriteFile(opsCAFile, opsCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	files := func() meshtlstest.Files {
		return meshtlstest.WriteFiles(t, t.TempDir(), ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}), ca)
	}
	tlsArgs := func(f meshtlstest.Files) []string {
		return []string{"--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA}
	}
	agentArgs := func(f meshtlstest.Files) []string {
		return append(tlsArgs(f), "--admin", "127.0.0.1:0", "--admin-ca", opsCAFile)
	}
	fa, fb, member := files(), files(), files()
	// An operator's certificate names no host: it is a client's only.
	ops := meshtlstest.WriteFiles(t, t.TempDir(), opsCA.Issue(t, meshtlstest.Spec{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}), ca)
	a := startAgent(t, bin, "a", agentArgs(fa)...)
	b := startAgent(t, bin, "b", append(agentArgs(fb), "--join", a.addr)...)
	if a.admin == a.addr || !strings.HasPrefix(a.admin, "127.0.0.1:") {
		t.Fatalf("admin address %q: want its own 127.0.0.1 port, not the gossip address %s", a.admin, a.addr)
	}

	members := func(f meshtlstest.Files, admin string) (membersJSON, int, string) {
		code, out, errOut := cli(bin, append([]string{"members", "--json", "--admin", admin}, tlsArgs(f)...)...)
		var m membersJSON
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatalf("members --json: %v in %q", err, out)
			}
		}
		return m, code, errOut
	}
	for deadline := time.Now().Add(binWait); ; time.Sleep(50 * time.Millisecond) {
		m, code, errOut := members(ops, a.admin)
		if code == 0 && m.alive() == 2 && m.Converged {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mTLS agents did not converge: exit %d %s %+v", code, errOut, m)
		}
	}
	if _, code, errOut := members(ops, b.admin); code != 0 {
		t.Fatalf("members --admin %s with an operator certificate: exit %d %s", b.admin, code, errOut)
	}

	code, _, errOut := cli(bin, "members", "--admin", a.admin, "--timeout", "5s")
	t.Logf("plaintext client: %s", errOut)
	if code != exitFail || !oneLine(errOut) || !strings.Contains(errOut, a.admin) || !strings.Contains(errOut, "pass --tls-cert, --tls-key and --tls-ca") {
		t.Errorf("members without --tls-* against an mTLS admin address: exit %d, %q; want exit 1 and one line naming the address and the flags", code, errOut)
	}
	// A member's certificate (even b's own) cannot make a leave.
	for _, f := range []meshtlstest.Files{member, fb} {
		code, out, errOut := cli(bin, append([]string{"leave", "--admin", a.admin}, tlsArgs(f)...)...)
		t.Logf("leave with a member certificate: %s", errOut)
		if code != exitFail || out != "" || !oneLine(errOut) || !strings.Contains(errOut, "admin calls need a certificate of a CA in the agent's --admin-ca") {
			t.Errorf("leave with a member certificate: exit %d, stdout %q, stderr %q; want exit 1 and the --admin-ca hint", code, out, errOut)
		}
	}
	if m, code, errOut := members(ops, a.admin); code != 0 || statusIn(m, a.addr) != "alive" || m.alive() != 2 {
		t.Fatalf("after refused leaves: exit %d %s %+v; want a alive", code, errOut, m)
	}
	code, _, errOut = cli(bin, "members", "--admin", a.admin, "--tls-cert", ops.Cert)
	if code != exitUsage || !strings.Contains(errOut, "--tls-cert, --tls-key and --tls-ca go together") {
		t.Errorf("members with --tls-cert alone: exit %d, %q; want a usage error", code, errOut)
	}
	code, _, errOut = cli(bin, "agent", "--bind", "127.0.0.1:0", "--tls-cert", member.Cert)
	if code != exitUsage || !strings.Contains(errOut, "--tls-key is missing") {
		t.Errorf("agent with --tls-cert alone: exit %d, %q; want a usage error", code, errOut)
	}
	code, _, errOut = cli(bin, append([]string{"agent", "--bind", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-ca", fa.CA}, tlsArgs(member)...)...)
	if code != exitFail || !strings.Contains(errOut, "is also in --tls-ca") {
		t.Errorf("agent with --admin-ca = --tls-ca: exit %d, %q; want the shared CA refused", code, errOut)
	}

	// Rotation: rewrite a's files with a new certificate, then SIGHUP.
	next := ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}})
	meshtlstest.WriteFiles(t, dirOf(fa.Cert), next, ca)
	a.signal(t, syscall.SIGHUP)
	serial := next.TLS.Leaf.SerialNumber.String()
	for deadline := time.Now().Add(binWait); !strings.Contains(readFile(a.err), `"serial":"`+serial+`"`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("agent did not log the reload of serial %s:\n%s", serial, readFile(a.err))
		}
	}
	if m, code, errOut := members(ops, a.admin); code != 0 || m.alive() != 2 {
		t.Fatalf("after SIGHUP: exit %d %s %+v", code, errOut, m)
	}

	// An operator's certificate makes b leave; b exits 0 and a sees it.
	code, out, errOut := cli(bin, append([]string{"leave", "--admin", b.admin}, tlsArgs(ops)...)...)
	if code != exitOK || out != b.addr+" left and told its 1 member; the agent is exiting\n" {
		t.Errorf("leave with an operator certificate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if st := b.wait(t); st.ExitCode() != 0 {
		t.Errorf("b after leave: %v, want exit 0", st)
	}
	if m, code, errOut := members(ops, a.admin); code != 0 || statusIn(m, b.addr) != "left" {
		t.Errorf("a's view after b left: exit %d %s %+v", code, errOut, m)
	}
	a.signal(t, syscall.SIGTERM)
	if st := a.wait(t); st.ExitCode() != 0 {
		t.Fatalf("agent exit %v after SIGTERM", st)
	}
}

func dirOf(path string) string { return path[:strings.LastIndexByte(path, '/')] }
