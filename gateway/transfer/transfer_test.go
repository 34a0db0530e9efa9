package transfer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

func refer(t *testing.T, referTo ...string) *sip.Request {
	t.Helper()
	raw := "REFER sip:bob@example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n" +
		"From: <sip:alice@example.test>;tag=a1\r\nTo: <sip:bob@example.test>;tag=b1\r\n" +
		"Call-ID: c1\r\nCSeq: 2 REFER\r\nMax-Forwards: 70\r\nContact: <sip:alice@127.0.0.1:5070>\r\n"
	for _, v := range referTo {
		raw += "Refer-To: " + v + "\r\n"
	}
	raw += "Content-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	return m.(*sip.Request)
}

func TestParseReferTo(t *testing.T) {
	for _, tc := range []struct {
		name     string
		referTo  []string
		err      error
		replaces string // call-id of the Replaces, "" for none
	}{
		{name: "blind", referTo: []string{"<sip:carol@example.test>"}},
		{name: "tel", referTo: []string{"<tel:+15551234>"}},
		{name: "method invite", referTo: []string{"<sip:carol@example.test;method=INVITE>"}},
		{name: "attended", referTo: []string{"<sip:carol@example.test?Replaces=x1%40h%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>"}, replaces: "x1@h"},
		{name: "attended lower case", referTo: []string{"<sip:carol@example.test?replaces=x1%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>"}, replaces: "x1"},
		{name: "none", err: ErrMalformed},
		{name: "two", referTo: []string{"<sip:a@example.test>", "<sip:b@example.test>"}, err: ErrMalformed},
		{name: "garbage", referTo: []string{"<sip:>"}, err: ErrMalformed},
		{name: "http", referTo: []string{"<http://example.test/>"}, err: ErrScheme},
		{name: "bye", referTo: []string{"<sip:carol@example.test;method=BYE>"}, err: ErrMethod},
		{name: "route", referTo: []string{"<sip:carol@example.test?Route=%3Csip%3Aevil.test%3Blr%3E>"}, err: ErrHeader},
		{name: "authorization", referTo: []string{"<sip:carol@example.test?Authorization=Digest%20x>"}, err: ErrHeader},
		{name: "replaces and another", referTo: []string{"<sip:carol@example.test?Replaces=x1%3Bto-tag%3Dt1%3Bfrom-tag%3Df1&Route=%3Csip%3Aevil.test%3E>"}, err: ErrHeader},
		{name: "two replaces", referTo: []string{"<sip:carol@example.test?Replaces=x1%3Bto-tag%3Dt1%3Bfrom-tag%3Df1&Replaces=x2%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>"}, err: ErrHeader},
		{name: "replaces without tags", referTo: []string{"<sip:carol@example.test?Replaces=x1>"}, err: ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := ParseReferTo(refer(t, tc.referTo...))
			if tc.err != nil {
				if err == nil || !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.replaces == "" && rt.Replaces != nil:
				t.Errorf("replaces %+v, want none", rt.Replaces)
			case tc.replaces != "" && (rt.Replaces == nil || rt.Replaces.CallID != tc.replaces || rt.Replaces.ToTag != "t1" || rt.Replaces.FromTag != "f1"):
				t.Errorf("replaces %+v, want call-id %s, tags t1 f1", rt.Replaces, tc.replaces)
			}
		})
	}
}

// TestPolicyAttacker plays a trunk or a stranger in a call with one of our
// users, trying to have that user dial what it may not dial itself; and
// one of our users, who may transfer its peer anywhere its peer may dial.
func TestPolicyAttacker(t *testing.T) {
	var logs bytes.Buffer
	p := &Policy{
		Reachable: func(_ context.Context, u sip.URI) bool {
			return u.Scheme == "sip" && u.Host == "example.test" && !strings.HasPrefix(u.User, "9")
		},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	stranger := Party{Source: sip.Addr{Transport: sip.UDP}}
	trunk := Party{Trunk: "carrier"}
	alice := Party{User: "alice"}
	for _, tc := range []struct {
		name    string
		from    Party
		referTo string
		code    int
	}{
		{"stranger to a user of ours", stranger, "<sip:carol@example.test>", 0},
		{"stranger to a premium number", stranger, "<sip:900555@example.test>", 403},
		{"stranger to a tel uri", stranger, "<tel:+1900555>", 403},
		{"stranger to another domain", stranger, "<sip:bob@evil.test>", 403},
		{"trunk to a number the dial plan sends out", trunk, "<sip:9123@example.test>", 403},
		{"trunk to a user of ours", trunk, "<sip:carol@example.test>", 0},
		{"user to a number", alice, "<sip:9123@example.test>", 0},
		{"user to a tel uri", alice, "<tel:+15551234>", 0},
		{"user with an embedded route", alice, "<sip:carol@example.test?Route=%3Csip%3Aevil.test%3Blr%3E>", 403},
		{"user with embedded credentials", alice, "<sip:carol@example.test?Proxy-Authorization=Digest%20username%3D%22alice%22>", 403},
		{"stranger with a replaces", stranger, "<sip:carol@example.test?Replaces=x%3Bto-tag%3Da%3Bfrom-tag%3Db>", 0},
		{"user asking for a bye", alice, "<sip:carol@example.test;method=BYE>", 403},
		{"malformed", alice, "<sip:carol@example.test?Replaces=%>", 400},
		{"unsupported scheme", alice, "<mailto:carol@example.test>", 416},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := p.Check(context.Background(), refer(t, tc.referTo), tc.from)
			switch {
			case tc.code == 0 && res != nil:
				t.Fatalf("refused: %d %s", res.StatusCode, res.Reason)
			case tc.code != 0 && res == nil:
				t.Fatal("let through")
			case tc.code != 0 && res.StatusCode != tc.code:
				t.Fatalf("%d %s, want %d", res.StatusCode, res.Reason, tc.code)
			case tc.code != 0 && res.To().Tag() == "":
				t.Fatal("refusal without a to tag")
			}
		})
	}
	st := p.Stats()
	if st.Passed != 5 || st.Refused["target"] != 4 || st.Refused["header"] != 2 || st.Refused["method"] != 1 || st.Refused["malformed"] != 2 {
		t.Errorf("stats %+v", st)
	}
	if n := strings.Count(logs.String(), "transfer refused"); n != 9 {
		t.Errorf("%d refusals logged, want 9:\n%s", n, logs.String())
	}
}

// TestPolicyZero: without Reachable only our users transfer.
func TestPolicyZero(t *testing.T) {
	var p Policy
	if res := p.Check(context.Background(), refer(t, "<sip:carol@example.test>"), Party{Trunk: "t"}); res == nil || res.StatusCode != 403 {
		t.Fatalf("trunk: %v", res)
	}
	if res := p.Check(context.Background(), refer(t, "<sip:carol@example.test>"), Party{User: "alice"}); res != nil {
		t.Fatalf("user: %d", res.StatusCode)
	}
}

// TestCheckReplaces: an INVITE with Replaces reaches a user of ours from
// anyone, and a trunk or a foreign party only from one of our users.
func TestCheckReplaces(t *testing.T) {
	var logs bytes.Buffer
	p := &Policy{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	invite := refer(t)
	invite.Method = sip.MethodInvite
	invite.Set("Replaces", "x1;to-tag=t1;from-tag=f1")
	alice, carol := Party{User: "alice"}, Party{User: "carol"}
	stranger, trunk := Party{}, Party{Trunk: "carrier"}
	localAlice := Party{User: "alice", LocalOnly: true}
	for _, tc := range []struct {
		name           string
		sender, target Party
		refused        bool
	}{
		{"stranger to a user", stranger, carol, false},
		{"trunk to a user", trunk, carol, false},
		{"user to a trunk", alice, trunk, false},
		{"user to a stranger", alice, stranger, false},
		{"stranger to a trunk", stranger, trunk, true},
		{"stranger to a stranger", stranger, stranger, true},
		{"trunk to a trunk", trunk, trunk, true},
		// SWITCHBOARD_LOCAL_ONLY: our users reach our users and trunks.
		{"local-only user to a user", localAlice, carol, false},
		{"local-only user to a trunk", localAlice, trunk, false},
		{"local-only user to a stranger", localAlice, stranger, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := p.CheckReplaces(invite, tc.sender, tc.target)
			switch {
			case !tc.refused && res != nil:
				t.Fatalf("refused: %d %s", res.StatusCode, res.Reason)
			case tc.refused && (res == nil || res.StatusCode != 403 || res.To().Tag() == ""):
				t.Fatalf("got %v, want a 403 with a to tag", res)
			}
		})
	}
	if st := p.Stats(); st.Replaced != 6 || st.Refused["target"] != 3 || st.Refused["local_only"] != 1 {
		t.Errorf("stats %+v", st)
	}
	if n := strings.Count(logs.String(), "transfer refused"); n != 4 {
		t.Errorf("%d refusals logged, want 4", n)
	}
	if !strings.Contains(logs.String(), "local_only=true") {
		t.Errorf("the local-only refusal is not logged as such:\n%s", logs.String())
	}
}
