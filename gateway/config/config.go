package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/switchboard/switchboard/gateway/trunk"
)

// MaxFileSize bounds what Load reads: a configuration file is small, and
// the bound turns a wrong path (a log, a device) into a clear error.
const MaxFileSize = 8 << 20

// File is a loaded and validated configuration file.
type File struct {
	// Domain holds the options of the SIP domain the gateway serves.
	Domain Domain
	// Accounts are the users that authenticate to the gateway, in file
	// order.
	Accounts []Account
	// Trunks are the SIP trunks, in file order.
	Trunks []trunk.Trunk
	// Routes are the outbound dial rules, in file order: the first that
	// matches a number wins.
	Routes []trunk.Route
}

// Domain is the [domain] table.
type Domain struct {
	// Name is the SIP domain and the digest realm of the accounts. It is
	// the file's name, or Options.Domain when the file has none; "" when
	// neither gives one.
	Name string
	// Redirect makes the proxy answer requests for registered users with
	// 302 and their contacts instead of forwarding them.
	Redirect bool
}

// Account is an [[account]]. It never holds a password: one written in the
// file is hashed as it is loaded.
type Account struct {
	// User is the user part of the address of record, and the digest
	// username.
	User string
	// Realm is the digest realm the HA1 values are for: File.Domain.Name.
	Realm string
	// HA1MD5 is H(user:realm:password) with MD5, 32 lowercase hex digits,
	// or "" when the file gave only ha1_sha256.
	HA1MD5 string
	// HA1SHA256 is the same with SHA-256, 64 lowercase hex digits, or "".
	HA1SHA256 string
}

// LogValue logs the account without its hashes.
func (a Account) LogValue() slog.Value { return slog.StringValue(a.User + "@" + a.Realm) }

// Options are what the file cannot say by itself.
type Options struct {
	// Domain is the SIP domain the gateway serves (SWITCHBOARD_DOMAIN).
	// When the file names no [domain] name this one is used, and it is the
	// realm passwords are hashed for; when the file names one, the two
	// must agree.
	Domain string
}

// Load reads and validates the file at path.
func Load(path string) (*File, error) { return Options{}.Load(path) }

// Parse validates a configuration held in memory.
func Parse(data []byte) (*File, error) { return Options{}.Parse(data) }

// Load reads and validates the file at path. An error that is not about
// the file's content (it cannot be read) does not wrap ErrInvalid.
func (o Options) Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{Path: path, Problems: []*Problem{{Msg: fmt.Sprintf("the file is larger than %d bytes: is it the right file?", MaxFileSize)}}}
	}
	file, err := o.Parse(data)
	var e *Error
	if errors.As(err, &e) {
		e.Path = path
	}
	return file, err
}

// Parse validates a configuration held in memory. An invalid one yields
// an *Error listing every problem found.
func (o Options) Parse(data []byte) (*File, error) {
	var raw rawFile
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&raw)
	var problems []*Problem
	var strict *toml.StrictMissingError
	var decodeErr *toml.DecodeError
	switch {
	case err == nil:
	case errors.As(err, &strict):
		// Everything else was decoded: validate it too, so that one run
		// reports every problem.
		for i := range strict.Errors {
			problems = append(problems, unknownKey(&strict.Errors[i]))
		}
	case errors.As(err, &decodeErr):
		return nil, &Error{Problems: []*Problem{decodeProblem(decodeErr)}}
	default:
		return nil, &Error{Problems: []*Problem{{Msg: err.Error()}}}
	}
	v := validator{lines: locate(data), problems: problems}
	file := v.file(&raw, o)
	if len(v.problems) > 0 {
		sortProblems(v.problems)
		return nil, &Error{Problems: v.problems}
	}
	return file, nil
}

// rawFile is the file as written; File is what it means.
type rawFile struct {
	Domain  rawDomain    `toml:"domain"`
	Account []rawAccount `toml:"account"`
	Trunk   []rawTrunk   `toml:"trunk"`
	Route   []rawRoute   `toml:"route"`
}

type rawDomain struct {
	Name     string `toml:"name"`
	Redirect bool   `toml:"redirect"`
}

type rawAccount struct {
	User      string `toml:"user"`
	Password  string `toml:"password"`
	HA1MD5    string `toml:"ha1_md5"`
	HA1SHA256 string `toml:"ha1_sha256"`
}

type rawTrunk struct {
	Name            string            `toml:"name"`
	Host            string            `toml:"host"`
	Port            int               `toml:"port"`
	Transport       string            `toml:"transport"`
	Username        string            `toml:"username"`
	Password        string            `toml:"password"`
	Register        bool              `toml:"register"`
	RegisterExpires int               `toml:"register_expires"`
	FromUser        string            `toml:"from_user"`
	FromDomain      string            `toml:"from_domain"`
	ContactUser     string            `toml:"contact_user"`
	TrustedSources  []string          `toml:"trusted_sources"`
	DID             map[string]string `toml:"did"`
	Codecs          []string          `toml:"codecs"`
	Weight          int               `toml:"weight"`
}

type rawRoute struct {
	Pattern string `toml:"pattern"`
	Strip   int    `toml:"strip"`
	Prefix  string `toml:"prefix"`
	Trunk   string `toml:"trunk"`
}
