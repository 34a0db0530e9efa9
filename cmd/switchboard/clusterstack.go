package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/gateway/cluster"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/location/redisstore"
	"github.com/switchboard/switchboard/sip"
)

// Cluster mode: SWITCHBOARD_REDIS_URL puts the location service in Redis
// and makes this gateway one instance among those that share it.

// redisTimeout bounds dialing and each read and write to Redis: a
// REGISTER must not wait long on a server that does not answer.
const redisTimeout = time.Second

// validateCluster checks the cluster settings. The Redis URL is never
// echoed: it may hold a password.
func (c *Config) validateCluster(add func(key, format string, args ...any)) {
	if c.RedisURL == "" {
		if c.ClusterHost != "" {
			add("CLUSTER_HOST", "is set but %sREDIS_URL is empty: it names this instance for the others of a cluster; set both or neither", envPrefix)
		}
		return
	}
	if _, err := redis.ParseURL(c.RedisURL); err != nil {
		add("REDIS_URL", "is not a Redis URL; use redis://[[user]:password@]host:port[/db], rediss://… for TLS, or unix:///path/to/socket")
	}
	if c.SIPTCP == "" {
		add("REDIS_URL", "needs %sSIP_TCP: the other instances of the cluster reach this one over SIP TCP", envPrefix)
	}
	if h := c.ClusterHost; h != "" {
		ip, err := netip.ParseAddr(h)
		switch {
		case !validHost(h):
			add("CLUSTER_HOST", "%q is not a host name or IP address (no port: the SIP TCP listener's is used)", h)
		case err == nil && (ip.IsUnspecified() || ip.IsMulticast()):
			add("CLUSTER_HOST", "%s cannot be reached; give the address the other instances reach this one at", ip)
		case strings.EqualFold(h, c.Domain):
			add("CLUSTER_HOST", "is the domain %s, which every instance serves; give this instance's own name or address", h)
		}
	}
}

// clusterNode returns this instance's name in a cluster: the SIP URI of
// its TCP listener as the others reach it.
func clusterNode(cfg Config, id *identity.Identity, tcp netip.AddrPort) string {
	host := cfg.ClusterHost
	if host == "" {
		host = id.Endpoint(sip.TCP).Host
	}
	return "sip:" + sip.JoinHostPort(host, int(tcp.Port())) + ";transport=tcp"
}

// openLocation opens the location store and the secret that keys nonces,
// flow tokens and stamps: the embedded store and a secret under the data
// directory, or, in cluster mode, the Redis store, the cluster's secret
// and this instance's heartbeat.
func (s *sipStack) openLocation(ctx context.Context, cfg Config, id *identity.Identity, logger *slog.Logger) error {
	if cfg.RedisURL == "" {
		mem, err := location.Open(location.Options{
			Dir:    filepath.Join(cfg.DataDir, "location"),
			Logger: logger.With("component", "location"),
		})
		if err != nil {
			return fmt.Errorf("open location store: %w", err)
		}
		s.location, s.memory = mem, mem
		s.secret, err = loadSecret(filepath.Join(cfg.DataDir, "nonce.key"))
		return err
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return errors.New("SWITCHBOARD_REDIS_URL is not a Redis URL")
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = redisTimeout, redisTimeout, redisTimeout
	opts.PoolTimeout = redisTimeout
	// One retry at most: a REGISTER that waits longer is better refused
	// with 503 and Retry-After.
	opts.MaxRetries = 1
	opts.DisableIdentity = true
	// go-redis has one logger per process, read by its connections:
	// set it before the first client, once.
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{logger.With("component", "redis")}) })
	s.redis = redis.NewClient(opts)

	sctx, cancel := context.WithTimeout(ctx, 5*redisTimeout)
	defer cancel()
	if s.secret, err = cluster.Secret(sctx, s.redis, ""); err != nil {
		return fmt.Errorf("cluster mode: %w (is Redis at SWITCHBOARD_REDIS_URL up?)", err)
	}
	node := clusterNode(cfg, id, s.addrs.TCP)
	store, err := redisstore.New(redisstore.Options{
		Client: s.redis,
		Node:   node,
		Logger: logger.With("component", "location"),
	})
	if err != nil {
		return err
	}
	s.location, s.shared = store, store
	clog := logger.With("component", "cluster")
	s.member, err = cluster.New(cluster.Options{
		Client: s.redis,
		Node:   node,
		Secret: s.secret,
		Logger: clog,
		Rejoined: func(ctx context.Context) {
			n, err := store.Republish(ctx)
			switch {
			case err != nil:
				clog.Warn("writing this instance's bindings back to redis", "err", err)
			case n > 0:
				clog.Info("wrote this instance's bindings back to redis", "aors", n)
			}
		},
	})
	if err != nil {
		return err
	}
	s.member.Start(ctx)
	clog.Info("cluster mode: location service in redis", "node", node, "redis", redisAddr(opts))
	return nil
}

// redisAddr names the server of opts for logs, without credentials.
func redisAddr(o *redis.Options) string {
	return o.Network + "://" + o.Addr + "/" + strconv.Itoa(o.DB)
}

// closeCluster leaves the cluster, so that the others stop routing here
// at once, and closes the client. The gateway has stopped by then.
func (s *sipStack) closeCluster() {
	if s.member != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*redisTimeout)
		// Redis out of reach: the others give this instance up when its
		// heartbeat expires instead.
		_ = s.member.Leave(ctx)
		cancel()
	}
	if s.redis != nil {
		s.redis.Close()
	}
}

// gatewayCluster is the gateway's Config.Cluster: nil alone.
func (s *sipStack) gatewayCluster() *cluster.Membership { return s.member }

// clusterReady is a readiness check: in cluster mode, Redis must be in
// reach, since registrations are refused without it.
func (s *sipStack) clusterReady() error {
	if s.member != nil && !s.member.Healthy() {
		return errors.New("redis (SWITCHBOARD_REDIS_URL) is out of reach: registrations are refused; calls to the users connected here go on")
	}
	return nil
}

// registrations returns the bindings the registrations gauges count: all
// of them with the embedded store, those this instance holds the
// connections of in cluster mode (the others count on their instances).
func (s *sipStack) registrations(ctx context.Context) ([]location.Binding, error) {
	if s.shared != nil {
		return s.shared.Held(), nil
	}
	return s.location.All(ctx)
}

var redisLogOnce sync.Once

// redisLogger passes go-redis's own messages (reconnections, pool
// trouble) to the gateway's log instead of stderr.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// clusterCollector reads the cluster's state at each scrape.
type clusterCollector struct {
	s                                  *sipStack
	up, peers, beatFailures, fallbacks *prometheus.Desc
	calls, failures                    *prometheus.Desc
}

func newClusterCollector(s *sipStack) *clusterCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("switchboard_cluster_"+name, help, nil, nil)
	}
	return &clusterCollector{
		s:            s,
		up:           d("redis_up", "1 while the last heartbeat reached Redis, 0 during an outage (registrations are then refused with 503)."),
		peers:        d("peers", "Other live instances of the cluster at the last heartbeat."),
		beatFailures: d("heartbeat_failures_total", "Heartbeats that did not reach Redis."),
		fallbacks:    d("lookups_local_total", "Lookups answered from this instance's own bindings because Redis was out of reach."),
		calls:        d("redis_calls_total", "Calls of the location store to Redis."),
		failures:     d("redis_errors_total", "Calls of the location store to Redis that failed."),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	ms, ls := c.s.member.Stats(), c.s.shared.Stats()
	up := 0.0
	if ms.Healthy {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.peers, prometheus.GaugeValue, float64(ms.Peers))
	ch <- prometheus.MustNewConstMetric(c.beatFailures, prometheus.CounterValue, float64(ms.Failures))
	ch <- prometheus.MustNewConstMetric(c.fallbacks, prometheus.CounterValue, float64(ls.Fallbacks))
	ch <- prometheus.MustNewConstMetric(c.calls, prometheus.CounterValue, float64(ls.Calls))
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(ls.Failures))
}
