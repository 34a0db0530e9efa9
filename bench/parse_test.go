package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	sipgo "github.com/emiago/sipgo/sip"
	"github.com/switchboard/switchboard/sip"
)

// testdata is where Switchboard's own parser benchmarks keep their messages.
// The files are read at run time, never copied, so both benchmarks always
// measure the same bytes.
const testdata = "../sip/testdata/bench"

// messages are the benchmarked messages, by sub-benchmark name.
var messages = []struct{ name, file string }{
	{"register", "register.sip"}, // JsSIP-style REGISTER over WSS
	{"invite", "invite.sip"},     // INVITE with a WebRTC SDP offer
}

func readMessage(tb testing.TB, file string) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, file))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// fields are what the access variants read after parsing: the values a
// transaction layer and a registrar look at first. Reading them forces a lazy
// parser to do the work it may have put off.
type fields struct {
	Branch      string // top Via branch
	FromTag     string
	ToUser      string // user part of the To URI
	CallID      string
	CSeq        uint32
	ContactHost string // host of the first Contact URI
	BodyLen     int
}

// parser is one parser under test. parse is what the plain benchmark times;
// access parses and then reads fields.
type parser struct {
	name   string
	parse  func(data []byte) error
	access func(data []byte) (fields, error)
}

// Switchboard's parser: ParseDatagram parses Via, From, To, Call-ID, CSeq,
// Max-Forwards, Content-Length and Contact while it parses the message and
// keeps every other header as text.
var sbParser sip.Parser

func sbParse(data []byte) error {
	_, err := sbParser.ParseDatagram(data)
	return err
}

func sbAccess(data []byte) (fields, error) {
	m, err := sbParser.ParseDatagram(data)
	if err != nil {
		return fields{}, err
	}
	h := m.Header()
	via, ok := h.TopVia()
	if !ok {
		return fields{}, errors.New("no Via")
	}
	contacts, err := h.Contacts()
	if err != nil {
		return fields{}, err
	}
	if len(contacts) == 0 {
		return fields{}, errors.New("no Contact")
	}
	from, to := h.From(), h.To()
	return fields{
		Branch:      via.Branch(),
		FromTag:     from.Tag(),
		ToUser:      to.URI.User,
		CallID:      h.CallID(),
		CSeq:        h.CSeq().Seq,
		ContactHost: contacts[0].URI.Host,
		BodyLen:     len(m.Payload()),
	}, nil
}

// sipgo's parser, used as sipgo's own BenchmarkParser uses it: NewParser with
// the default header parsers (Via, From, To, Call-ID, CSeq, Contact,
// Content-Type, Content-Length, Max-Forwards, Route, Record-Route, Refer-To,
// Referred-By parsed eagerly; any other header kept as a generic name/value).
var sgParser = sipgo.NewParser()

func sgParse(data []byte) error {
	_, err := sgParser.ParseSIP(data)
	return err
}

// contacter is implemented by *sipgo.Request and *sipgo.Response; Contact is
// not part of sipgo's Message interface.
type contacter interface {
	Contact() *sipgo.ContactHeader
}

func sgAccess(data []byte) (fields, error) {
	m, err := sgParser.ParseSIP(data)
	if err != nil {
		return fields{}, err
	}
	via, from, to, callID, cseq := m.Via(), m.From(), m.To(), m.CallID(), m.CSeq()
	if via == nil || from == nil || to == nil || callID == nil || cseq == nil {
		return fields{}, errors.New("missing mandatory header")
	}
	c, ok := m.(contacter)
	if !ok {
		return fields{}, fmt.Errorf("%T has no Contact", m)
	}
	contact := c.Contact()
	if contact == nil {
		return fields{}, errors.New("no Contact")
	}
	branch, _ := via.Params.Get("branch")
	tag, _ := from.Params.Get("tag")
	return fields{
		Branch:      branch,
		FromTag:     tag,
		ToUser:      to.Address.User,
		CallID:      string(*callID),
		CSeq:        cseq.SeqNo,
		ContactHost: contact.Address.Host,
		BodyLen:     len(m.Body()),
	}, nil
}

var parsers = []parser{
	{"switchboard", sbParse, sbAccess},
	{"sipgo", sgParse, sgAccess},
}

// sink keeps the compiler from discarding what the access variants read.
var sink int

// BenchmarkParse times parsing alone, by message and parser:
// BenchmarkParse/register/switchboard, BenchmarkParse/register/sipgo, ...
func BenchmarkParse(b *testing.B) {
	for _, msg := range messages {
		data := readMessage(b, msg.file)
		b.Run(msg.name, func(b *testing.B) {
			for _, p := range parsers {
				b.Run(p.name, func(b *testing.B) {
					b.ReportAllocs()
					b.SetBytes(int64(len(data)))
					for b.Loop() {
						if err := p.parse(data); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkParseAccess parses and then reads the top Via branch, From tag, To
// URI user, Call-ID, CSeq number and first Contact host, so that work a
// parser defers until a header is asked for is counted too:
// BenchmarkParseAccess/register/switchboard, ...
//
// These are the "access" variants of BenchmarkParse. They are a separate
// top-level benchmark because a Go benchmark that has sub-benchmarks reports
// no result of its own: BenchmarkParse/register/switchboard could not be
// both a result and the parent of .../access.
func BenchmarkParseAccess(b *testing.B) {
	for _, msg := range messages {
		data := readMessage(b, msg.file)
		b.Run(msg.name, func(b *testing.B) {
			for _, p := range parsers {
				b.Run(p.name, func(b *testing.B) {
					b.ReportAllocs()
					b.SetBytes(int64(len(data)))
					n := 0
					for b.Loop() {
						f, err := p.access(data)
						if err != nil {
							b.Fatal(err)
						}
						n += len(f.Branch) + len(f.FromTag) + len(f.ToUser) +
							len(f.CallID) + int(f.CSeq) + len(f.ContactHost)
					}
					sink += n
				})
			}
		})
	}
}

// TestParsersAccept checks that both parsers accept both messages and read
// the same values from them, so the benchmarks compare like with like.
func TestParsersAccept(t *testing.T) {
	for _, msg := range messages {
		t.Run(msg.name, func(t *testing.T) {
			data := readMessage(t, msg.file)
			got := make(map[string]fields)
			for _, p := range parsers {
				if err := p.parse(data); err != nil {
					t.Fatalf("%s rejects %s: %v", p.name, msg.file, err)
				}
				f, err := p.access(data)
				if err != nil {
					t.Fatalf("%s: reading %s: %v", p.name, msg.file, err)
				}
				if f.Branch == "" || f.FromTag == "" || f.ToUser == "" ||
					f.CallID == "" || f.CSeq == 0 || f.ContactHost == "" {
					t.Errorf("%s: %s: empty field in %+v", p.name, msg.file, f)
				}
				got[p.name] = f
			}
			if sb, sg := got["switchboard"], got["sipgo"]; sb != sg {
				t.Errorf("%s: parsers disagree:\nswitchboard %+v\nsipgo       %+v", msg.file, sb, sg)
			}
		})
	}
}
