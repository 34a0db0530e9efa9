package transaction

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// goroutineID is the number the runtime gives the calling goroutine, read
// from its stack trace's first line ("goroutine 42 [running]:").
func goroutineID() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	if f := bytes.Fields(b); len(f) > 1 {
		return string(f[1])
	}
	return ""
}

// TestInline: a request that Config.Inline picks has its handler run in
// the goroutine that called HandleMessage, which returns once the handler
// has answered and its context has ended; a panic there is answered 500
// as on the pool; the requests it does not pick still go to a goroutine
// of their own.
func TestInline(t *testing.T) {
	h := newHarness(t, Config{TryingDelay: time.Hour, Inline: func(req *sip.Request) bool {
		return req.Method == sip.MethodRegister || req.Method == sip.MethodOptions
	}})
	type call struct {
		goroutine string
		ctx       context.Context
	}
	calls := make(chan call, 4)
	h.l.handler = HandlerFunc(func(ctx context.Context, tx *ServerTx, req *sip.Request) {
		calls <- call{goroutineID(), ctx}
		switch req.Method {
		case sip.MethodRegister:
			_ = tx.Respond(response(req, 401, "t"))
		case sip.MethodOptions:
			panic("handler fails")
		case sip.MethodInvite:
			<-tx.Done()
		}
	})
	me := goroutineID()

	h.l.HandleMessage(spec("REGISTER", 1, phoneUDP).req(t))
	// No wait: HandleMessage returned after the handler.
	if sent := h.net.take(); labels(sent) != "401 REGISTER" {
		t.Fatalf("sent %q when HandleMessage returned, want the 401", labels(sent))
	}
	select {
	case c := <-calls:
		if c.goroutine != me {
			t.Errorf("the handler ran in goroutine %s, HandleMessage was called in %s", c.goroutine, me)
		}
		if c.ctx.Err() == nil {
			t.Error("the handler's context did not end with ServeSIP")
		}
	default:
		t.Fatal("the handler was not called before HandleMessage returned")
	}
	if st := h.l.Stats(); st.Handlers != 0 || st.HandlerDelay != 0 {
		t.Errorf("stats after an inline handler: %+v", st)
	}

	h.l.HandleMessage(spec("OPTIONS", 2, phoneUDP).req(t))
	if sent := h.net.take(); labels(sent) != "500 OPTIONS" {
		t.Fatalf("a panicking inline handler: sent %q, want a 500", labels(sent))
	}
	<-calls

	h.l.HandleMessage(spec("INVITE", 3, phoneUDP).req(t))
	var c call
	select {
	case c = <-calls:
	case <-time.After(waitLimit):
		t.Fatal("the INVITE's handler did not start")
	}
	if c.goroutine == me {
		t.Error("the INVITE, not picked by Inline, ran in HandleMessage's goroutine")
	}
	if st := h.l.Stats(); st.Handlers != 1 {
		t.Errorf("stats with the INVITE's handler running: %+v", st)
	}
}
