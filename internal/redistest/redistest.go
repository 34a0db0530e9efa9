// Package redistest runs real redis-server processes on loopback for
// tests: the shared location store of cluster mode, its outages and its
// restarts. A test that needs one fails, with a message, when
// redis-server is not installed (the Debian package redis-server;
// scripts/deps.sh installs it).
package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds the wait for a server to say it is ready.
const startTimeout = 15 * time.Second

// Server is a redis-server on 127.0.0.1 that keeps nothing on disk: a
// restart starts empty, as a Redis without persistence does.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}

	logMu sync.Mutex
	log   strings.Builder // of every run
}

// Start starts a server on a free port and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed: install the Debian package redis-server (make test does, with scripts/deps.sh)")
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	var lastErr error
	for range 5 {
		s.port = freePort(t)
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs the server on s.port and waits until it accepts
// connections, which it says on its log.
func (s *Server) start() error {
	cmd := exec.Command(s.bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port),
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--daemonize", "no", "--logfile", "", "--loglevel", "notice")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(out)
		said := false
		for sc.Scan() {
			s.logMu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.logMu.Unlock()
			if !said && strings.Contains(sc.Text(), "Ready to accept connections") {
				said = true
				close(ready)
			}
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
	}()
	select {
	case <-ready:
	case <-exited:
		return fmt.Errorf("redis-server on port %d exited before it was ready:\n%s", s.port, s.Log())
	case <-time.After(startTimeout):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("redis-server on port %d not ready after %v", s.port, startTimeout)
	}
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return nil
}

// Addr is the server's address, host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the server's redis:// URL, as SWITCHBOARD_REDIS_URL takes it.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client returns a client of the server, closed when the test ends. Its
// timeouts are short, so that a test of an outage does not wait long.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(ClientOptions(s.Addr()))
	t.Cleanup(func() { c.Close() })
	return c
}

// ClientOptions are the options of Client for a server at addr.
func ClientOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:            addr,
		DialTimeout:     time.Second,
		ReadTimeout:     time.Second,
		WriteTimeout:    time.Second,
		MaxRetries:      -1,
		DisableIdentity: true,
	}
}

// Stop stops the server (SIGTERM) and waits for it; it does nothing when
// the server is not running.
func (s *Server) Stop() { s.halt(syscall.SIGTERM) }

// Kill kills the server (SIGKILL) and waits for it.
func (s *Server) Kill() { s.halt(syscall.SIGKILL) }

func (s *Server) halt(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(startTimeout):
		cmd.Process.Kill()
		<-exited
	}
}

// Restart starts the server again on the same port, empty, after Stop or
// Kill; it stops it first if it runs. Redis binds with SO_REUSEADDR, so
// the port is free again as soon as the old process is gone.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// Log returns what the server has logged, every run of it.
func (s *Server) Log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// Running reports whether the server process runs.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}
