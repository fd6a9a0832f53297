package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gossipmesh/mesh/agent"
	"github.com/gossipmesh/mesh/meshpb"
)

// clientFlags are the flags every client command has.
type clientFlags struct {
	admin                  string
	timeout                time.Duration
	tlsCert, tlsKey, tlsCA string
}

func addClientFlags(fs *flag.FlagSet, timeout time.Duration, timeoutHelp string) *clientFlags {
	cf := &clientFlags{}
	fs.StringVar(&cf.admin, "admin", defaultAdmin(), "the agent's admin `address` (its --admin): unix:PATH or host:port; default $"+adminEnv+", else "+adminRule)
	fs.Func("addr", "removed: use --admin", func(string) error {
		return errors.New("the admin API is no longer served on the gossip port; pass the agent's --admin address as --admin (default " + defaultAdmin() + ")")
	})
	fs.DurationVar(&cf.timeout, "timeout", timeout, timeoutHelp)
	fs.StringVar(&cf.tlsCert, "tls-cert", "", "PEM `file`: an admin certificate (of a CA in the agent's --admin-ca), for an admin address with mutual TLS")
	fs.StringVar(&cf.tlsKey, "tls-key", "", "PEM `file`: the private key of --tls-cert")
	fs.StringVar(&cf.tlsCA, "tls-ca", "", "PEM `file`: the CAs the agent's own certificate must chain to (its --tls-ca)")
	return cf
}

// creds returns the transport credentials the TLS flags ask for. An admin
// certificate is not a member's, so it need not chain to --tls-ca.
func (cf *clientFlags) creds() (grpc.DialOption, error) {
	if cf.tlsCert == "" && cf.tlsKey == "" && cf.tlsCA == "" {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	if cf.tlsCert == "" || cf.tlsKey == "" || cf.tlsCA == "" {
		return nil, usagef("--tls-cert, --tls-key and --tls-ca go together")
	}
	cert, err := tls.LoadX509KeyPair(cf.tlsCert, cf.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", cf.tlsCert, cf.tlsKey, err)
	}
	caPEM, err := os.ReadFile(cf.tlsCA)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--tls-ca %s: no PEM CERTIFICATE block found", cf.tlsCA)
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      roots,
	})), nil
}

// client is a connection to an agent's admin API that remembers why
// dialing failed, so that errors say "connection refused" rather than
// gRPC's wrapping of it.
type client struct {
	addr    string // as --admin gave it
	unix    bool
	timeout time.Duration
	conn    *grpc.ClientConn
	api     meshpb.MeshAdminClient
	tls     bool

	mu      sync.Mutex
	dialErr error
}

func (cf *clientFlags) dial() (*client, error) {
	ad, err := agent.ParseAdmin(cf.admin)
	if err != nil {
		return nil, &usageError{err.Error()}
	}
	if ad.Network == "unix" && cf.tlsCert+cf.tlsKey+cf.tlsCA != "" {
		return nil, usagef("--tls-cert, --tls-key and --tls-ca apply to a TCP --admin address; %s is a unix socket, protected by its file permissions", ad)
	}
	if cf.timeout < 0 {
		return nil, usagef("--timeout %v is negative", cf.timeout)
	}
	creds, err := cf.creds()
	if err != nil {
		return nil, err
	}
	c := &client{addr: ad.String(), unix: ad.Network == "unix", timeout: cf.timeout, tls: cf.tlsCert != ""}
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, ad.Network, ad.Address)
		c.mu.Lock()
		c.dialErr = err
		c.mu.Unlock()
		return conn, err
	}
	// The target names the server for TLS; the dialer decides where to go.
	target := ad.Address
	if c.unix {
		target = "passthrough:///localhost"
	}
	conn, err := grpc.NewClient(target, creds, grpc.WithContextDialer(dialer))
	if err != nil {
		return nil, fmt.Errorf("--admin %s: %w", cf.admin, err)
	}
	c.conn, c.api = conn, meshpb.NewMeshAdminClient(conn)
	return c, nil
}

func (c *client) close() { c.conn.Close() }

// ctx bounds one call by --timeout (0: no bound).
func (c *client) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	if c.timeout == 0 {
		return context.WithCancel(parent)
	}
	return context.WithTimeout(parent, c.timeout)
}

// explain turns a call's error into one line that says what to check.
func (c *client) explain(err error) error {
	c.mu.Lock()
	dialErr := c.dialErr
	c.mu.Unlock()
	var op *net.OpError
	if errors.As(dialErr, &op) && op.Err != nil {
		dialErr = op.Err
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable:
		if dialErr != nil {
			return fmt.Errorf("cannot reach an agent at %s: %v%s", c.addr, dialErr, c.hint(dialErr))
		}
		if !c.tls && strings.Contains(st.Message(), "server preface") {
			return fmt.Errorf("agent at %s closed the connection (%s); if its admin address requires certificates (--admin-ca), pass --tls-cert, --tls-key and --tls-ca", c.addr, st.Message())
		}
		if c.tls {
			// TLS 1.3 checks the client's certificate after the client's
			// side of the handshake: a refusal shows as an alert, a reset
			// or a broken pipe on the first write.
			return fmt.Errorf("agent at %s closed the TLS connection (%s); admin calls need a certificate of a CA in the agent's --admin-ca, and --tls-ca must hold the CA of the agent's certificate", c.addr, st.Message())
		}
		return fmt.Errorf("agent at %s unavailable: %s", c.addr, st.Message())
	case codes.DeadlineExceeded:
		if dialErr != nil {
			return fmt.Errorf("cannot reach an agent at %s within %v: %v", c.addr, c.timeout, dialErr)
		}
		return fmt.Errorf("no answer from %s within %v (--timeout)", c.addr, c.timeout)
	case codes.Unimplemented:
		return fmt.Errorf("%s does not serve the mesh admin API (%s); if it is an agent's gossip address, pass the agent's --admin address instead", c.addr, st.Message())
	case codes.Canceled:
		return errors.New("interrupted")
	}
	return errors.New(st.Message())
}

// hint says what to check when dialing the admin address failed.
func (c *client) hint(dialErr error) string {
	switch {
	case c.unix && errors.Is(dialErr, fs.ErrNotExist):
		return "; is an agent running on this host with this --admin? (" + adminEnv + " or --admin give another address)"
	case c.unix && errors.Is(dialErr, fs.ErrPermission):
		return "; the admin socket admits only the agent's user and root: run this as that user, or with sudo"
	}
	return ""
}

func noArgs(pos []string) error {
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	return nil
}

const membersHelp = `Lists every member the agent knows, alive or removed (failed, left), with
a header: the agent's view digest and whether the cluster has converged
on it. --json prints one JSON object instead of the table.`

func runMembers(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("members")
	cf := addClientFlags(fs, 5*time.Second, "give up after this long")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, code, ok := parseCommand(fs, args, "[--admin ADDR] [--json]", membersHelp, stdout, stderr)
	if !ok {
		return code
	}
	if err := noArgs(pos); err != nil {
		return fail(stderr, "members", err)
	}
	c, err := cf.dial()
	if err != nil {
		return fail(stderr, "members", err)
	}
	defer c.close()
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.api.Members(cctx, &meshpb.MembersRequest{})
	if err != nil {
		return fail(stderr, "members", c.explain(err))
	}
	if *asJSON {
		return writeJSON(stdout, stderr, "members", membersToJSON(resp))
	}
	printMembers(stdout, resp)
	return exitOK
}

const joinHelp = `Adds each ADDR (host:port) to the agent's seeds. A host name stands for
every address it resolves to, and the agent re-resolves it while it runs.
Then waits, up to --timeout, until one of them has answered and is a
member; the agent keeps trying in the background either way.`

func runJoin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("join")
	cf := addClientFlags(fs, 5*time.Second, "how long to wait for an answer")
	wait := fs.Bool("wait", true, "wait until one of the addresses answers (--wait=false returns at once)")
	pos, code, ok := parseCommand(fs, args, "[--admin ADDR] ADDR...", joinHelp, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return fail(stderr, "join", usagef("no address to join"))
	}
	c, err := cf.dial()
	if err != nil {
		return fail(stderr, "join", err)
	}
	defer c.close()
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.api.Join(cctx, &meshpb.JoinRequest{Addrs: pos})
	if err != nil {
		return fail(stderr, "join", c.explain(err))
	}
	fmt.Fprintf(stdout, "seeds added: %s\n", strings.Join(resp.GetSeeds(), ", "))
	if !*wait {
		return exitOK
	}
	for {
		m, err := c.api.Members(cctx, &meshpb.MembersRequest{})
		if err != nil {
			if status.Code(err) == codes.DeadlineExceeded {
				return fail(stderr, "join", fmt.Errorf("no answer from %s within %v; the agent keeps trying", strings.Join(resp.GetSeeds(), ", "), c.timeout))
			}
			return fail(stderr, "join", c.explain(err))
		}
		alive, answered := 0, ""
		for _, mb := range m.GetMembers() {
			if mb.GetState() != meshpb.State_STATE_ALIVE {
				continue
			}
			alive++
			for _, s := range resp.GetSeeds() {
				if mb.GetAddr() == s && s != m.GetSelf() {
					answered = s
				}
			}
		}
		if answered != "" {
			fmt.Fprintf(stdout, "joined: %s answered; the agent sees %s alive\n", answered, plural(alive, "member"))
			return exitOK
		}
		if only := onlySelf(resp.GetSeeds(), m.GetSelf()); only {
			fmt.Fprintf(stdout, "nothing to join: %s is the agent itself\n", m.GetSelf())
			return exitOK
		}
		if err := sleep(cctx, pollInterval(m)); err != nil {
			return fail(stderr, "join", fmt.Errorf("no answer from %s within %v; the agent keeps trying", strings.Join(resp.GetSeeds(), ", "), c.timeout))
		}
	}
}

func onlySelf(seeds []string, self string) bool {
	for _, s := range seeds {
		if s != self {
			return false
		}
	}
	return true
}

// pollInterval is a quarter of the agent's period, within [10ms, 250ms].
func pollInterval(m *meshpb.MembersResponse) time.Duration {
	p := m.GetPeriod().AsDuration() / 4
	return min(max(p, 10*time.Millisecond), 250*time.Millisecond)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

const metaHelp = `mesh meta set name=NAME KEY=VALUE...  sets the name and tags (other tags
                                      are kept unless --replace)
mesh meta delete KEY...               removes tags
The key "name" is the agent's name, not a tag. The cluster sees the new
meta within a few rounds.`

func runMeta(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("meta")
	cf := addClientFlags(fs, 5*time.Second, "give up after this long")
	replace := fs.Bool("replace", false, "with set: replace all tags instead of adding to them")
	pos, code, ok := parseCommand(fs, args, "set name=N k=v... | delete KEY... [--admin ADDR]", metaHelp, stdout, stderr)
	if !ok {
		return code
	}
	req, err := metaRequest(pos, *replace)
	if err != nil {
		return fail(stderr, "meta", err)
	}
	c, err := cf.dial()
	if err != nil {
		return fail(stderr, "meta", err)
	}
	defer c.close()
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.api.SetMeta(cctx, req)
	if err != nil {
		return fail(stderr, "meta", c.explain(err))
	}
	fmt.Fprintf(stdout, "meta of %s: name=%s tags=%s\n", resp.GetSelf(), resp.GetMeta().GetName(), formatTags(resp.GetMeta().GetTags()))
	return exitOK
}

// metaRequest parses `meta set|delete ...` arguments.
func metaRequest(pos []string, replace bool) (*meshpb.SetMetaRequest, error) {
	if len(pos) == 0 {
		return nil, usagef("want 'set name=N k=v...' or 'delete KEY...'")
	}
	req := &meshpb.SetMetaRequest{ReplaceTags: replace}
	switch pos[0] {
	case "set":
		if len(pos) == 1 && !replace {
			return nil, usagef("set: nothing to set; give name=N or k=v")
		}
		req.Tags = map[string]string{}
		for _, kv := range pos[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, usagef("set: want key=value, got %q", kv)
			}
			if k == "name" {
				req.Name = &v
			} else {
				req.Tags[k] = v
			}
		}
	case "delete":
		if replace {
			return nil, usagef("delete: --replace applies to set only")
		}
		if len(pos) == 1 {
			return nil, usagef("delete: name the tags to delete")
		}
		req.DeleteTags = pos[1:]
	default:
		return nil, usagef("unknown subcommand %q; want set or delete", pos[0])
	}
	return req, nil
}

const leaveHelp = `Makes the agent tell every member it is leaving (they mark it left at
once, rather than failed after the expiry), then exit.`

func runLeave(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("leave")
	cf := addClientFlags(fs, 10*time.Second, "give up after this long")
	pos, code, ok := parseCommand(fs, args, "[--admin ADDR]", leaveHelp, stdout, stderr)
	if !ok {
		return code
	}
	if err := noArgs(pos); err != nil {
		return fail(stderr, "leave", err)
	}
	c, err := cf.dial()
	if err != nil {
		return fail(stderr, "leave", err)
	}
	defer c.close()
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	resp, err := c.api.Leave(cctx, &meshpb.LeaveRequest{})
	if err != nil {
		return fail(stderr, "leave", c.explain(err))
	}
	switch {
	case resp.GetMembers() == 0:
		fmt.Fprintf(stdout, "%s left (it had no other member); the agent is exiting\n", resp.GetSelf())
	case resp.GetError() != "":
		fmt.Fprintf(stdout, "%s left, but none of its %s could be told; they will expire it: %s\n", resp.GetSelf(), plural(int(resp.GetMembers()), "member"), resp.GetError())
	default:
		fmt.Fprintf(stdout, "%s left and told its %s; the agent is exiting\n", resp.GetSelf(), plural(int(resp.GetMembers()), "member"))
	}
	return exitOK
}

const watchHelp = `Prints membership events (join, update, leave, failed) as the agent sees
them, one line each, or one JSON object per line with --json, until
interrupted (exit 0) or the agent stops (exit 1). If this watcher reads too
slowly the agent drops events and says how many.`

func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("watch")
	cf := addClientFlags(fs, 0, "stop after this long (0: never)")
	asJSON := fs.Bool("json", false, "print JSON lines")
	pos, code, ok := parseCommand(fs, args, "[--admin ADDR] [--json]", watchHelp, stdout, stderr)
	if !ok {
		return code
	}
	if err := noArgs(pos); err != nil {
		return fail(stderr, "watch", err)
	}
	c, err := cf.dial()
	if err != nil {
		return fail(stderr, "watch", err)
	}
	defer c.close()
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	stream, err := c.api.Watch(cctx, &meshpb.WatchRequest{})
	if err != nil {
		return fail(stderr, "watch", c.explain(err))
	}
	var dropped uint64
	for {
		ev, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			return fail(stderr, "watch", fmt.Errorf("the agent at %s stopped", c.addr))
		case err != nil && ctx.Err() != nil:
			return exitOK // interrupted
		case err != nil && status.Code(err) == codes.DeadlineExceeded && cf.timeout > 0:
			return exitOK // --timeout elapsed
		case err != nil:
			return fail(stderr, "watch", c.explain(err))
		}
		if *asJSON {
			if code := writeJSON(stdout, stderr, "watch", eventToJSON(ev)); code != exitOK {
				return code
			}
			continue
		}
		if ev.GetDropped() > dropped {
			fmt.Fprintf(stdout, "(%d events dropped: this watcher read too slowly)\n", ev.GetDropped()-dropped)
			dropped = ev.GetDropped()
		}
		fmt.Fprintln(stdout, formatEvent(ev))
	}
}

const waitHelp = `Waits until the agent reports that every live member holds its view
(the members header says "converged"), and, with --members N, that it
sees at least N alive members. Exits 0 then, 1 on timeout. An agent that
is not up yet is retried until the timeout, so a deploy script can start
an agent and call this at once.`

func runWaitConverged(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("wait-converged")
	cf := addClientFlags(fs, 30*time.Second, "give up after this long (exit 1)")
	minMembers := fs.Int("members", 0, "also wait for at least `N` alive members, self included")
	pos, code, ok := parseCommand(fs, args, "[--admin ADDR] [--timeout 30s] [--members N]", waitHelp, stdout, stderr)
	if !ok {
		return code
	}
	if err := noArgs(pos); err != nil {
		return fail(stderr, "wait-converged", err)
	}
	c, err := cf.dial()
	if err != nil {
		return fail(stderr, "wait-converged", err)
	}
	defer c.close()
	start := time.Now()
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	last := "no answer yet"
	interval := 100 * time.Millisecond
	for {
		m, err := c.api.Members(cctx, &meshpb.MembersRequest{})
		if err == nil {
			interval = pollInterval(m)
			alive := countAlive(m)
			if m.GetConverged() && alive >= *minMembers {
				fmt.Fprintf(stdout, "converged: %s alive, all holding view %016x (waited %v)\n", plural(alive, "member"), m.GetViewDigest(), time.Since(start).Round(time.Millisecond))
				return exitOK
			}
			last = fmt.Sprintf("%s alive, view %016x, converged %v", plural(alive, "member"), m.GetViewDigest(), m.GetConverged())
		} else if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			return fail(stderr, "wait-converged", c.explain(err))
		} else if code == codes.Unavailable {
			last = c.explain(err).Error()
		}
		if ctx.Err() != nil {
			return fail(stderr, "wait-converged", errors.New("interrupted"))
		}
		if cctx.Err() != nil || sleep(cctx, interval) != nil {
			if ctx.Err() != nil {
				return fail(stderr, "wait-converged", errors.New("interrupted"))
			}
			return fail(stderr, "wait-converged", fmt.Errorf("not converged within %v (last: %s)", cf.timeout, last))
		}
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func countAlive(m *meshpb.MembersResponse) int {
	n := 0
	for _, mb := range m.GetMembers() {
		if mb.GetState() == meshpb.State_STATE_ALIVE {
			n++
		}
	}
	return n
}

func writeJSON(stdout, stderr io.Writer, cmd string, v any) int {
	if err := json.NewEncoder(stdout).Encode(v); err != nil {
		return fail(stderr, cmd, err)
	}
	return exitOK
}
