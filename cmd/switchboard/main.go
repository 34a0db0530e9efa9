// Command switchboard runs the Switchboard WebRTC-to-SIP gateway.
//
// Usage:
//
//	switchboard            run the gateway
//	switchboard version    print the version and exit
//
// Every setting comes from an environment variable named SWITCHBOARD_*;
// README.md lists them. Without any, the gateway runs on loopback with two
// demo accounts, which it prints at start.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/webclient"
)

// version is the release, set at build time with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

// shutdownTimeout bounds how long in-flight HTTP requests may take to finish
// once a stop is asked for; systemd's TimeoutStopSec must stay above it.
const shutdownTimeout = 10 * time.Second

func main() {
	os.Exit(realMain(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// realMain is main with its inputs and outputs passed in, so that tests can
// drive the command line. It returns the process exit code: 0 on success,
// 1 when the gateway fails, 2 for bad arguments or settings.
func realMain(args, environ []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
	case len(args) == 1 && args[0] == "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case len(args) == 1 && (args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "switchboard: unknown arguments %q\n%s", args, usage)
		return 2
	}

	vars := env.ToMap(environ)
	cfg, err := loadConfig(vars)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard: %v\n", err)
		return 2
	}
	// A warning, not an error, so that one env file can serve a newer
	// release with more settings and an older one.
	for _, key := range unknownSettings(vars) {
		fmt.Fprintf(stderr, "switchboard: warning: %s is not a setting (a typo?); ignoring it\n", key)
	}

	gc := applyGC(cfg, vars)
	procs := applyProcs(vars)

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ctl, stopSignals := signalControl(cancel)
	defer stopSignals()
	ctl.gc, ctl.procs = &gc, &procs
	if err := run(ctx, cfg, stdout, ctl); err != nil {
		fmt.Fprintf(stderr, "switchboard: %v\n", err)
		return 1
	}
	return 0
}

// signalControl steers a running gateway from signals: SIGHUP reloads the
// config file; the first SIGTERM or SIGINT stops the gateway (cancel) with
// a drain, the second ends the drain at once, and the third, its
// handling given back to the runtime, kills the process, should the
// shutdown itself hang. stop releases the signals and ends the goroutine.
func signalControl(cancel context.CancelCauseFunc) (ctl control, stop func()) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	hurry := make(chan struct{})
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		stops := 0
		for {
			select {
			case <-done:
				return
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					select {
					case reload <- struct{}{}:
					default: // a reload is already due
					}
					continue
				}
				stops++
				switch stops {
				case 1:
					cancel(fmt.Errorf("signal %v", sig))
				case 2:
					close(hurry)
					signal.Reset(os.Interrupt, syscall.SIGTERM)
				}
			}
		}
	}()
	return control{reload: reload, hurry: hurry}, func() {
		signal.Stop(sigs)
		close(done)
		<-finished
	}
}

const usage = `usage:
  switchboard            run the gateway (settings: SWITCHBOARD_* variables, see README.md)
  switchboard version    print the version
`

// versionString is the version with the VCS revision and the toolchain,
// when the build recorded them.
func versionString() string {
	var details []string
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev string
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if modified {
				rev += "-dirty"
			}
			details = append(details, "revision "+rev)
		}
	}
	details = append(details, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
	return "switchboard " + version + " (" + strings.Join(details, ", ") + ")"
}

// listening tells the caller of run where its listeners are bound, which
// tests need when they ask for port 0.
type listening struct {
	HTTP, HTTPS   net.Addr // HTTPS is nil when off
	UDP, TCP, TLS netip.AddrPort
	// ICE is the media port of the browser legs: UDP, and TCP with
	// SWITCHBOARD_ICE_TCP.
	ICE netip.AddrPort

	stack *sipStack // for tests that look inside
}

// control steers a running gateway besides its context: realMain drives it
// from signals, tests directly. The zero value steers nothing.
type control struct {
	// ready, if not nil, is called once every listener is bound.
	ready func(listening)
	// reload asks for the config file to be read again (SIGHUP);
	// reloaded, if not nil, learns the outcome of each.
	reload   <-chan struct{}
	reloaded func(error)
	// hurry, closed, ends the drain of a stop at once (a second SIGTERM).
	hurry <-chan struct{}
	// gc, if not nil, is what realMain set the garbage collector to, for
	// the log; tests leave their own process's collector alone.
	gc *gcApplied
	// procs, if not nil, is what realMain set GOMAXPROCS to, likewise.
	procs *procsApplied
}

// run starts the gateway with cfg, logging to stdout, and serves until ctx
// is done; then it drains (no new calls; the calls in progress have
// cfg.DrainTimeout to end before they get BYE), shuts down and returns
// nil. run returns an error if the gateway cannot start or a listener
// fails.
func run(ctx context.Context, cfg Config, stdout io.Writer, ctl control) error {
	logger := newLogger(cfg, stdout)
	logger.Info("starting switchboard", "version", version, "config", cfg)
	if ctl.gc != nil {
		logger.Info("garbage collector", ctl.gc.logAttrs()...)
	}
	if ctl.procs != nil {
		logger.Info("scheduler", ctl.procs.logAttrs()...)
	}

	// The embedded store is not written yet, but creating its directory now
	// proves it is writable before anyone relies on it.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}

	if accounts, demo := startAccounts(cfg); demo {
		logger.Warn("no accounts configured: created demo accounts; set SWITCHBOARD_USERS or SWITCHBOARD_CONFIG to choose your own")
		for _, a := range accounts {
			logger.Warn("demo account", "user", a.User, "password", a.Password, "uri", "sip:"+a.User+"@"+cfg.Domain)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.HTTP)
	if err != nil {
		return fmt.Errorf("listen http: %w", err)
	}
	defer ln.Close()
	var tlsLn net.Listener
	if cfg.HTTPS != "" {
		if tlsLn, err = lc.Listen(ctx, "tcp", cfg.HTTPS); err != nil {
			return fmt.Errorf("listen https: %w", err)
		}
		defer tlsLn.Close()
	}
	certs, err := newCertSource(cfg, logger.With("component", "tls"))
	if err != nil {
		return err
	}
	reg := newMetricsRegistry()
	metrics := newSIPMetrics(reg)
	web := webAddrs{http: addrPort(ln), https: addrPort(tlsLn)}
	stack, err := startSIP(ctx, cfg, web, certs, logger, metrics)
	if err != nil {
		return err
	}
	defer stack.close()
	reg.MustRegister(newStackCollector(stack))
	if stack.member != nil {
		reg.MustRegister(newClusterCollector(stack))
	}

	trust := cfg.trust()
	var isReady atomic.Bool
	mux := newMux(reg, &isReady, logger, stack.clusterReady)
	newAdminAPI(cfg.AdminToken, stack.location, stack.gw.Calls(), stack.gw.Throttle(), &trust, logger.With("component", "admin")).register(mux)
	mux.Handle("/ws", stack.ws)
	mux.Handle("GET /config.json", webclient.ConfigHandler(webclient.Config{Domain: cfg.Domain, WSPath: "/ws", ICEServersPath: iceServersPathFor(stack)}))
	newICEAPI(cfg, stack, logger.With("component", "ice-servers")).register(mux)
	mux.Handle("/", webclient.Handler())
	if cfg.Pprof {
		registerPprof(mux)
	}
	if !webclient.Built() {
		logger.Warn("the softphone page is not built: run make webclient (make run does it)")
	}
	var plain http.Handler = mux
	if tlsLn != nil {
		plain = redirectToHTTPS(mux, web.https.Port(), &trust)
	}
	srv := newWebServer(certs.httpHandler(plain), logger)
	served := make(chan error, 2)
	go func() { served <- srv.Serve(ln) }()
	var tlsSrv *http.Server
	if tlsLn != nil {
		tlsSrv = newWebServer(mux, logger)
		tlsSrv.TLSConfig = certs.tlsConfig("http/1.1")
		go func() { served <- tlsSrv.ServeTLS(tlsLn, "", "") }()
	}

	// Gateway.Serve resolves the trunks' hosts before the transports get
	// its handler, and a WebSocket upgrade before that is refused with
	// 503: "listening" and /readyz wait for every transport to serve.
	if err := allServing(ctx, stack.transports.Transports(), stack.served); err != nil {
		return err
	}
	isReady.Store(true)
	addrs := stack.addrs
	addrs.HTTP = ln.Addr()
	addrs.stack = stack
	attrs := []any{"http", "http://" + ln.Addr().String() + "/",
		"sip_udp", addrs.UDP, "sip_tcp", addrs.TCP, "sip_tls", addrs.TLS, "ws", "ws://" + ln.Addr().String() + "/ws",
		"ice_udp", addrs.ICE, "ice_tcp", iceTCPAddr(cfg, addrs.ICE), "rtp", cfg.RTPPorts.String(), "turn", stack.ice}
	if tlsLn != nil {
		addrs.HTTPS = tlsLn.Addr()
		attrs = append(attrs, "https", "https://"+tlsLn.Addr().String()+"/", "wss", "wss://"+tlsLn.Addr().String()+"/ws")
	}
	logger.Info("listening", attrs...)
	if ctl.ready != nil {
		ctl.ready(addrs)
	}

serving:
	for {
		select {
		case err := <-served:
			// Serve only returns early when the listener breaks.
			return fmt.Errorf("serve http: %w", err)
		case err := <-stack.served:
			return fmt.Errorf("serve sip: %w", err)
		case <-ctl.reload:
			err := stack.reload(ctx, cfg, logger)
			if certs != nil {
				err = errors.Join(err, certs.reload())
			}
			if err != nil {
				metrics.reloads.WithLabelValues("error").Inc()
				logger.Error("config reload failed; keeping the configuration in force", "err", err)
			} else {
				metrics.reloads.WithLabelValues("ok").Inc()
			}
			if ctl.reloaded != nil {
				ctl.reloaded(err)
			}
		case <-ctx.Done():
			break serving
		}
	}

	// Fail readiness first, so that a load balancer stops sending new work
	// while the requests in flight finish.
	isReady.Store(false)
	logger.Info("shutting down", "cause", context.Cause(ctx))
	drain(ctx, cfg.DrainTimeout, ctl.hurry, stack, logger)
	// Hijacked WebSocket connections outlive http.Server.Shutdown: close
	// the SIP side first.
	stack.close()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	servers := []*http.Server{srv}
	if tlsSrv != nil {
		servers = append(servers, tlsSrv)
	}
	for _, s := range servers {
		if err := s.Shutdown(shutdownCtx); err != nil {
			for _, s := range servers {
				s.Close()
			}
			return fmt.Errorf("shut down http: %w", err)
		}
	}
	for range servers {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
	}
	logger.Info("stopped")
	return nil
}

// drain refuses new calls and waits up to grace, or until hurry is closed,
// for the bridged calls in progress to end by themselves; the caller then
// ends the rest with BYE.
func drain(ctx context.Context, grace time.Duration, hurry <-chan struct{}, stack *sipStack, logger *slog.Logger) {
	stack.gw.Drain(grace)
	n := len(stack.gw.Calls().Calls())
	if n == 0 || grace <= 0 {
		return
	}
	logger.Info("draining: new calls get 503; waiting for the calls in progress to end", "calls", n, "grace", grace)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if hurry != nil {
		// Ends with dctx at the latest, which the deferred cancel ends.
		go func() {
			select {
			case <-hurry:
				cancel()
			case <-dctx.Done():
			}
		}()
	}
	if err := stack.gw.Calls().Drain(dctx); err != nil {
		logger.Info("drain over: ending the calls left with BYE", "calls", len(stack.gw.Calls().Calls()))
		return
	}
	logger.Info("drained: every call has ended")
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.slogLevel()}
	if cfg.jsonLogs() {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// startAccounts returns the accounts to serve and whether they are demo
// accounts, made up because none were configured.
//
// Demo passwords are fixed while every listener is on loopback, so that the
// quick start in README.md works as written. When any listener is reachable
// from other hosts they are random instead: a well-known password on an open
// SIP server is an invitation to toll fraud.
func startAccounts(cfg Config) (accounts Accounts, demo bool) {
	if len(cfg.Users) > 0 || cfg.ConfigFile != "" {
		return cfg.Users, false
	}
	accounts = Accounts{
		{User: "alice", Password: "alice-secret"},
		{User: "bob", Password: "bob-secret"},
	}
	for _, addr := range []string{cfg.SIPUDP, cfg.SIPTCP, cfg.SIPTLS, cfg.HTTP, cfg.HTTPS} {
		if addr != "" && !isLoopback(addr) {
			for i := range accounts {
				accounts[i].Password = rand.Text()
			}
			break
		}
	}
	return accounts, true
}

// newMetricsRegistry returns the registry behind /metrics. It is our own
// rather than prometheus.DefaultRegisterer, so that tests can run several
// gateways in one process and no library can add metrics behind our back.
func newMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "switchboard_build_info",
		Help:        "Always 1; the labels tell which build is running.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	reg.MustRegister(
		buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// servingTransport is a transport that tells when it serves what it
// receives (sipws refuses WebSocket upgrades with 503 until then).
type servingTransport interface {
	Serving() <-chan struct{}
}

// allServing waits until every transport of ts that tells when it serves
// does (the others serve once bound), and returns nil; or the error of the
// SIP side's Serve when it ended first; or nil when ctx ends first.
func allServing(ctx context.Context, ts []transport.Transport, served <-chan error) error {
	for _, t := range ts {
		s, ok := t.(servingTransport)
		if !ok {
			continue
		}
		select {
		case <-s.Serving():
		case err := <-served:
			return fmt.Errorf("serve sip: %w", err)
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// newMux routes the HTTP endpoints. ready is true while the gateway accepts
// new work, and checks say what else it lacks for now (Redis in cluster
// mode).
func newMux(reg *prometheus.Registry, ready *atomic.Bool, logger *slog.Logger, checks ...func() error) *http.ServeMux {
	mux := http.NewServeMux()

	// Liveness: the process answers HTTP. Deliberately checks nothing else,
	// so that a supervisor restarts only a gateway that is truly stuck.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			writeText(w, http.StatusServiceUnavailable, "not ready\n")
			return
		}
		for _, check := range checks {
			if err := check(); err != nil {
				writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
				return
			}
		}
		writeText(w, http.StatusOK, "ready\n")
	})

	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError),
		Registry: reg,
	})
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg, metrics))

	return mux
}

func writeText(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, body)
}
