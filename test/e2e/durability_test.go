package e2e

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

// TestRegistrationsSurviveKill registers users over UDP, all at once,
// refreshes half of them with a longer expiry, kills the gateway with
// SIGKILL as soon as the last 200 is in, and starts it again on the same
// data directory: each user's fetch of its bindings (a REGISTER without
// Contact) must list its contact with the expiry last acknowledged.
func TestRegistrationsSurviveKill(t *testing.T) {
	const n = 40
	var list []string
	for i := range n {
		list = append(list, fmt.Sprintf("d%d:pw-%d", i, i))
	}
	env := map[string]string{
		"SWITCHBOARD_DATA_DIR": t.TempDir(),
		"SWITCHBOARD_USERS":    strings.Join(list, ","),
	}
	g := startGateway(t, gatewayOptions{env: env})
	regs := make([]*registrant, n)
	for i := range regs {
		regs[i] = newRegistrant(t, fmt.Sprintf("d%d", i), fmt.Sprintf("pw-%d", i))
	}
	// Concurrent REGISTERs share the journal's syncs: all of them at once.
	each := func(what string, f func(r *registrant) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i, r := range regs {
			wg.Go(func() { errs[i] = f(r) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	each("register", func(r *registrant) error { return r.register(g, 300) })
	each("refresh", func(r *registrant) error {
		if r.user[len(r.user)-1]%2 == 0 {
			return r.register(g, 3600)
		}
		return nil
	})

	// SIGKILL: no shutdown, no flush.
	if err := g.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.exited:
	case <-time.After(stopTimeout):
		t.Fatal("the gateway did not die of SIGKILL")
	}
	g.stopped = true // its stop check expects SIGTERM and exit code 0
	if log := readFile(g.logPath); strings.Contains(log, "panic:") || strings.Contains(log, "DATA RACE") {
		t.Fatalf("the gateway failed before it was killed:\n%s", tail(log, 64<<10))
	}

	g2 := startGateway(t, gatewayOptions{env: env})
	var lost []string
	for _, r := range regs {
		contacts, err := r.fetch(g2)
		if err != nil {
			t.Fatalf("%s: fetching bindings after the restart: %v", r.user, err)
		}
		want := r.expires
		switch {
		case len(contacts) != 1 || !contacts[0].URI.Equal(&r.contact.URI):
			lost = append(lost, fmt.Sprintf("%s: %d contacts %v, want %s", r.user, len(contacts), contacts, r.contact.URI.String()))
		default:
			// The expiry left counts down from the last 200: a 300 s
			// binding cannot show more than 300, nor a refreshed one less
			// than the 300 s the other kind had.
			v, _ := contacts[0].Params.Get("expires")
			left, err := strconv.Atoi(v)
			if err != nil || left > want || left < want-60 {
				lost = append(lost, fmt.Sprintf("%s: expires=%q, want the %d s last acknowledged, less the time since", r.user, v, want))
			}
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d registrations not as acknowledged after kill -9 and restart:\n%s\n--- first gateway log ---\n%s",
			len(lost), n, strings.Join(lost, "\n"), tail(readFile(g.logPath), 32<<10))
	}
}

// registrant is a UA registering one user from a UDP socket of its own,
// with digest authentication and a retransmission every 500 ms.
type registrant struct {
	user, password string
	conn           *net.UDPConn
	contact        sip.Address
	callID, tag    string
	cseq           int
	expires        int // of the last registration acknowledged
}

func newRegistrant(t *testing.T, user, password string) *registrant {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	contact, err := sip.ParseAddress("<sip:" + user + "@" + conn.LocalAddr().String() + ">")
	if err != nil {
		t.Fatal(err)
	}
	return &registrant{user: user, password: password, conn: conn, contact: contact, callID: sip.NewCallID(), tag: sip.NewTag()}
}

// register registers the contact for expires seconds and checks that the
// 200 lists it with that expiry.
func (r *registrant) register(g *gateway, expires int) error {
	res, err := r.transact(g, fmt.Sprintf("Contact: %s\r\nExpires: %d\r\n", r.contact.String(), expires))
	if err != nil {
		return err
	}
	contacts, err := res.Contacts()
	if err != nil {
		return fmt.Errorf("%s: 200 with a bad Contact: %w", r.user, err)
	}
	for _, c := range contacts {
		if c.URI.Equal(&r.contact.URI) {
			if v, _ := c.Params.Get("expires"); v != strconv.Itoa(expires) {
				return fmt.Errorf("%s: 200 lists expires=%s, want %d", r.user, v, expires)
			}
			r.expires = expires
			return nil
		}
	}
	return fmt.Errorf("%s: 200 does not list %s:\n%s", r.user, r.contact.String(), res)
}

// fetch asks for the user's bindings: a REGISTER without Contact (RFC 3261
// §10.2.3), and returns those its 200 lists.
func (r *registrant) fetch(g *gateway) ([]sip.Address, error) {
	res, err := r.transact(g, "")
	if err != nil {
		return nil, err
	}
	return res.Contacts()
}

// transact sends a REGISTER with the extra header lines, answers the 401,
// and returns the 200.
func (r *registrant) transact(g *gateway, extra string) (*sip.Response, error) {
	gw, err := net.ResolveUDPAddr("udp4", g.sipAddr())
	if err != nil {
		return nil, err
	}
	auth := ""
	for range 2 {
		r.cseq++
		raw := "REGISTER sip:" + domain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + r.conn.LocalAddr().String() + ";branch=" + sip.NewBranch() + ";rport\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:" + r.user + "@" + domain + ">;tag=" + r.tag + "\r\n" +
			"To: <sip:" + r.user + "@" + domain + ">\r\n" +
			"Call-ID: " + r.callID + "\r\n" +
			"CSeq: " + strconv.Itoa(r.cseq) + " REGISTER\r\n" +
			extra + auth +
			"Content-Length: 0\r\n\r\n"
		res, err := r.exchange(gw, raw)
		if err != nil {
			return nil, err
		}
		switch res.StatusCode {
		case 200:
			return res, nil
		case 401:
			if auth != "" {
				return nil, fmt.Errorf("%s: credentials refused", r.user)
			}
			ch, err := digest.ParseChallenge(res.Get("WWW-Authenticate"))
			if err != nil {
				return nil, fmt.Errorf("%s: challenge: %w", r.user, err)
			}
			client := &digest.Client{Username: r.user, Password: r.password}
			cr, err := client.Authorize(ch, sip.MethodRegister, "sip:"+domain)
			if err != nil {
				return nil, err
			}
			auth = "Authorization: " + cr.String() + "\r\n"
		default:
			return nil, fmt.Errorf("%s: REGISTER answered %d %s", r.user, res.StatusCode, res.Reason)
		}
	}
	return nil, fmt.Errorf("%s: no 200 with credentials", r.user)
}

// exchange sends raw, again every 500 ms as a UA's Timer E would, until
// the final response of its CSeq arrives or ioTimeout passes.
func (r *registrant) exchange(gw *net.UDPAddr, raw string) (*sip.Response, error) {
	deadline := time.Now().Add(ioTimeout)
	buf := make([]byte, 65535)
	for time.Now().Before(deadline) {
		if _, err := r.conn.WriteToUDP([]byte(raw), gw); err != nil {
			return nil, err
		}
		wait := time.Now().Add(500 * time.Millisecond)
		if wait.After(deadline) {
			wait = deadline
		}
		r.conn.SetReadDeadline(wait)
		for {
			n, _, err := r.conn.ReadFromUDP(buf)
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			if err != nil {
				break // retransmit
			}
			m, err := sip.ParseMessage(buf[:n])
			if err != nil {
				return nil, fmt.Errorf("%s: unparsable answer: %w", r.user, err)
			}
			res, ok := m.(*sip.Response)
			if ok && res.CSeq().Seq == uint32(r.cseq) && res.StatusCode >= 200 {
				return res, nil
			}
		}
	}
	return nil, fmt.Errorf("%s: no final response in %v", r.user, ioTimeout)
}
