package main

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/sipws"
	"github.com/switchboard/switchboard/transport"
)

// TestAllServing: "listening" and /readyz wait until every transport of
// the layer serves (the WebSocket one refuses upgrades until then), and
// give up when the SIP side's Serve fails or the binary stops first.
func TestAllServing(t *testing.T) {
	newWS := func(t *testing.T) *sipws.Transport {
		t.Helper()
		ws, err := sipws.New(sipws.Options{LocalAddr: netip.MustParseAddrPort("127.0.0.1:8080")})
		if err != nil {
			t.Fatal(err)
		}
		return ws
	}

	t.Run("serving", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		layer := transport.NewLayer(transport.Config{})
		udp, err := sipudp.Listen(ctx, "127.0.0.1:0", sipudp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		layer.Add(udp)
		layer.Add(newWS(t))
		done := make(chan error, 1)
		go func() { done <- allServing(ctx, layer.Transports(), nil) }()
		select {
		case err := <-done:
			t.Fatalf("returned %v before the layer served", err)
		default:
		}
		served := make(chan error, 1)
		go func() { served <- layer.Serve(ctx, transport.HandlerFuncs{}) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("allServing did not return once the layer served")
		}
		cancel()
		if err := <-served; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("serve failed", func(t *testing.T) {
		served := make(chan error, 1)
		served <- errors.New("boom")
		err := allServing(t.Context(), []transport.Transport{newWS(t)}, served)
		if err == nil || !strings.Contains(err.Error(), "serve sip: boom") {
			t.Fatalf("got %v, want the serve error", err)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := allServing(ctx, []transport.Transport{newWS(t)}, nil); err != nil {
			t.Fatalf("got %v, want nil", err)
		}
	})
}
