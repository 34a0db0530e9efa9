package transport

import (
	"errors"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// TestUnreachablePassedUp: a transport's unreachable report reaches the
// upper Handler that wants it, at once, and an upper Handler without the
// method is left alone.
func TestUnreachablePassedUp(t *testing.T) {
	cause := errors.New("port unreachable")
	dst := udpAddr("192.0.2.20:5060")

	type got struct {
		dst   sip.Addr
		quote string
		cause error
	}
	reports := make(chan got, 1)
	f := newFake(sip.UDP, "127.0.0.1:5060")
	l := NewLayer(Config{})
	l.Add(f)
	serve(t, l, HandlerFuncs{Unreachable: func(d sip.Addr, q []byte, c error) { reports <- got{d, string(q), c} }})
	u, ok := f.handler(t).(UnreachableHandler)
	if !ok {
		t.Fatal("the handler a transport gets is no UnreachableHandler")
	}
	u.HandleUnreachable(dst, []byte("BYE sip:x SIP/2.0\r\n"), cause)
	select {
	case r := <-reports:
		if r.dst != dst || r.quote != "BYE sip:x SIP/2.0\r\n" || r.cause != cause {
			t.Errorf("got %+v", r)
		}
	default:
		t.Fatal("the report was not passed up at once")
	}

	// Without the method upstairs, and once stopped: nothing happens.
	g := newFake(sip.UDP, "127.0.0.1:5061")
	m := NewLayer(Config{})
	m.Add(g)
	serve(t, m, newChanHandler())
	g.handler(t).(UnreachableHandler).HandleUnreachable(dst, nil, cause)
	m.Close()
	m.HandleUnreachable(dst, nil, cause)
}
