package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gossipmesh/mesh/agent"
)

const (
	defaultAddr = "127.0.0.1:7946"
	agentUse    = "--bind HOST:PORT [--join ADDR,...] [flags]"
	agentHelp   = `Runs one member of a cluster until SIGINT or SIGTERM (or 'mesh leave'),
then leaves gracefully: every member is told at once, and the agent exits 0.
Gossip and grpc.health.v1 share the --bind port. The admin API, which the
other mesh commands call, listens on --admin only: by default a unix socket
that only this user and root can use, which the commands find by default
too. With --tls-cert, --tls-key and --tls-ca every gossip connection is
mutual TLS and each member signs its own entries; an --admin address other
hosts can reach then needs --admin-ca, the CAs of operators' certificates.
SIGHUP reloads the files (see docs/SECURITY.md).
--event-handler runs a program on membership events: MESH_EVENT, MESH_ADDR,
MESH_NAME, MESH_SELF and MESH_CLUSTER in its environment, the member's tags
as JSON on stdin.`
)

// agentFlags is what `mesh agent` parses: the agent's config and how to log.
type agentFlags struct {
	cfg       agent.Config
	logFormat string
	logLevel  slog.Level
}

// parseAgentFlags parses and validates `mesh agent` arguments. Every
// error is a usageError, or flag.ErrHelp for -h (fs then prints usage).
func parseAgentFlags(args []string) (f agentFlags, fs *flag.FlagSet, err error) {
	fs = newFlags("agent")
	var join listFlag
	var admin string
	var handlers handlerFlag
	tags := tagFlag{}
	format := &choiceFlag{"text", []string{"text", "json"}}
	level := &choiceFlag{"info", []string{"debug", "info", "warn", "error"}}
	fs.StringVar(&f.cfg.Bind, "bind", defaultAddr, "`host:port` to listen on for gossip and health checks (port 0 picks one)")
	fs.StringVar(&admin, "admin", defaultAdmin(), "`address` of the admin API: unix:PATH, or host:port (not loopback: needs --admin-ca), or none; default $"+adminEnv+", else "+adminRule)
	fs.StringVar(&f.cfg.AdminCA, "admin-ca", "", "PEM `file`: the CAs of operators' certificates; makes a TCP --admin mutual TLS that members' certificates cannot use")
	fs.Var(&handlers, "event-handler", "`[TYPE,...=]PROGRAM` to run on each membership event (join, update, leave, failed; all without TYPE); repeat for more")
	fs.DurationVar(&f.cfg.HandlerTimeout, "event-handler-timeout", agent.DefaultHandlerTimeout, "kill an event handler (and its children) still running after this long")
	fs.StringVar(&f.cfg.Advertise, "advertise", "", "`host:port` other peers dial: this agent's id (default: the address bound)")
	fs.Var(&join, "join", "seed `addresses` host:port, comma-separated or repeated; a host name stands for all its addresses and is re-resolved")
	fs.StringVar(&f.cfg.Name, "name", hostname(), "this agent's `name` in its meta")
	fs.Var(tags, "tag", "a `key=value` tag in this agent's meta; repeat for more")
	fs.DurationVar(&f.cfg.Period, "period", time.Second, "gossip round P; every timing scales with it (a crash that refuses connections is detected within about 2P); use the same on every agent")
	fs.DurationVar(&f.cfg.RPCTimeout, "rpc-timeout", 0, "how long a gossip call may take (default: --period); raise it above the network's worst round trip")
	fs.StringVar(&f.cfg.Cluster, "cluster", "", "cluster `name`; agents of differently named clusters refuse to merge")
	fs.StringVar(&f.cfg.Snapshot, "snapshot", "", "`file` that remembers the members, so that a restarted agent rejoins without --join")
	fs.StringVar(&f.cfg.Metrics, "metrics", "", "`host:port` to serve Prometheus metrics on at /metrics (default: off)")
	fs.StringVar(&f.cfg.TLSCert, "tls-cert", "", "PEM `file`: this agent's certificate, for mutual TLS (with --tls-key and --tls-ca; reloaded on SIGHUP)")
	fs.StringVar(&f.cfg.TLSKey, "tls-key", "", "PEM `file`: the private key of --tls-cert")
	fs.StringVar(&f.cfg.TLSCA, "tls-ca", "", "PEM `file`: the CAs whose certificates peers must present (a bundle during rotation)")
	fs.Var(format, "log-format", "log format on stderr: text or json")
	fs.Var(level, "log-level", "least severe level logged: debug, info, warn or error")

	pos, err := parse(fs, args)
	if err != nil {
		return f, fs, err
	}
	if len(pos) > 0 {
		return f, fs, usagef("unexpected argument %q (flags only)", pos[0])
	}
	f.cfg.Join = join
	f.cfg.EventHandlers = handlers
	if admin != "none" {
		f.cfg.Admin = admin
	}
	if len(tags) > 0 {
		f.cfg.Tags = tags
	}
	f.logFormat = format.v
	_ = f.logLevel.UnmarshalText([]byte(level.v)) // one of the choices
	if err := f.cfg.Validate(); err != nil {
		return f, fs, &usageError{err.Error()}
	}
	return f, fs, nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, fs, err := parseAgentFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, fs, agentUse, agentHelp)
		return exitOK
	}
	if err != nil {
		return fail(stderr, "agent", err)
	}
	opts := &slog.HandlerOptions{Level: f.logLevel}
	var h slog.Handler = slog.NewTextHandler(stderr, opts)
	if f.logFormat == "json" {
		h = slog.NewJSONHandler(stderr, opts)
	}
	f.cfg.Logger = slog.New(h)
	a, err := agent.New(f.cfg)
	if err != nil {
		return fail(stderr, "agent", err)
	}
	if f.cfg.TLSCert != "" {
		// SIGHUP reloads the certificates; the agent logs the outcome.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		done := make(chan struct{})
		defer func() { signal.Stop(hup); close(done) }()
		go func() {
			for {
				select {
				case <-hup:
					_ = a.ReloadTLS()
				case <-done:
					return
				}
			}
		}()
	}
	if err := a.Run(ctx); err != nil {
		return fail(stderr, "agent", err)
	}
	return exitOK
}
