package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/forwarded"
	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/b2bua"
	"github.com/switchboard/switchboard/gateway/location"
)

// adminAPI is the small JSON API of operators, under /admin/, behind a
// bearer token:
//
//	GET    /admin/registrations  the registered contacts
//	GET    /admin/calls          the bridged calls, with their media stats,
//	                             and the last ones that ended, with why
//	GET    /admin/calls/{id}     one of them, in progress or ended
//	DELETE /admin/calls/{id}     hang it up (BYE on both legs, or CANCEL)
//
// Without a token the API is off and answers 404, so that a gateway
// never serves it unprotected. A wrong token counts as a failure in the
// gateway's authentication throttle, which the SIP side shares: a source
// that failed too often, here or there, gets 429 with Retry-After.
type adminAPI struct {
	token    [sha256.Size]byte // of the token; compared in constant time
	on       bool
	location location.Store
	calls    *b2bua.B2BUA
	throttle *accounts.Throttle
	trust    *forwarded.Trust // who may name the client
	log      *slog.Logger
}

func newAdminAPI(token string, loc location.Store, calls *b2bua.B2BUA, th *accounts.Throttle, trust *forwarded.Trust, log *slog.Logger) *adminAPI {
	return &adminAPI{token: sha256.Sum256([]byte(token)), on: token != "", location: loc, calls: calls, throttle: th, trust: trust, log: log}
}

// register adds the API's routes to mux.
func (a *adminAPI) register(mux *http.ServeMux) {
	mux.Handle("GET /admin/registrations", a.guard(a.registrations))
	mux.Handle("GET /admin/calls", a.guard(a.listCalls))
	mux.Handle("GET /admin/calls/{id}", a.guard(a.getCall))
	mux.Handle("DELETE /admin/calls/{id}", a.guard(a.hangup))
	mux.Handle("/admin/", a.guard(func(w http.ResponseWriter, _ *http.Request) {
		writeJSONError(w, http.StatusNotFound, "no such admin endpoint; see README.md")
	}))
}

// guard lets a request through to h only with the right bearer token.
func (a *adminAPI) guard(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.on {
			writeJSONError(w, http.StatusNotFound, "the admin API is off: set SWITCHBOARD_ADMIN_TOKEN to turn it on")
			return
		}
		// The client, as the trusted proxies name it: behind a proxy every
		// request comes from the proxy, which must not take the blame.
		// A remote address that does not parse leaves the zero Addr: all
		// such clients share one count.
		var ip netip.Addr
		remote := r.RemoteAddr
		if c, err := a.trust.Client(r); err == nil {
			ip, remote = c.Addr.Addr(), c.Addr.String()
		}
		if wait, ok := a.throttle.Allow(ip, ""); !ok {
			a.log.Info("admin api: refused: too many failures from this source", "remote", remote, "path", r.URL.Path, "retry_after", wait)
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			writeJSONError(w, http.StatusTooManyRequests, "too many failed attempts from this address; retry later")
			return
		}
		header := r.Header.Get("Authorization")
		scheme, token, _ := strings.Cut(header, " ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], a.token[:]) != 1 {
			// A request without credentials guesses nothing: only a
			// token presented, and wrong, counts.
			blocked := false
			if header != "" {
				blocked = a.throttle.Failure(accounts.OriginAdmin, ip, "")
			}
			a.log.Info("admin api: refused: wrong or missing bearer token", "remote", remote, "path", r.URL.Path, "blocked", blocked)
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard admin"`)
			writeJSONError(w, http.StatusUnauthorized, "a valid bearer token is required")
			return
		}
		h(w, r)
	})
}

// adminBinding is a registered contact as the API shows it.
type adminBinding struct {
	AOR       string    `json:"aor"`
	Contact   string    `json:"contact"`
	Source    string    `json:"source"`
	Transport string    `json:"transport"`
	Expires   time.Time `json:"expires"`
	Q         float64   `json:"q"`
	UserAgent string    `json:"user_agent,omitempty"`
	Instance  string    `json:"instance,omitempty"`
	RegID     int       `json:"reg_id,omitempty"`
	Received  time.Time `json:"registered"`
}

func (a *adminAPI) registrations(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	bindings, err := a.location.All(ctx)
	if err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, "location store: "+err.Error())
		return
	}
	out := make([]adminBinding, 0, len(bindings))
	for _, b := range bindings {
		out = append(out, adminBinding{
			AOR:       b.AOR,
			Contact:   b.Contact.String(),
			Source:    b.Source.AddrPort.String(),
			Transport: strings.ToLower(b.Source.Transport),
			Expires:   b.Expires.UTC(),
			Q:         float64(b.Q) / 1000,
			UserAgent: b.UserAgent,
			Instance:  b.Instance,
			RegID:     b.RegID,
			Received:  b.Received.UTC(),
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"registrations": out})
}

func (a *adminAPI) listCalls(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"calls": a.calls.Calls(), "ended": a.calls.Ended()})
}

func (a *adminAPI) getCall(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if c, ok := a.calls.Lookup(id); ok {
		writeJSON(w, http.StatusOK, c)
		return
	}
	writeJSONError(w, http.StatusNotFound, "no call "+id)
}

func (a *adminAPI) hangup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.calls.Hangup(id); err != nil {
		if errors.Is(err, b2bua.ErrNoCall) {
			writeJSONError(w, http.StatusNotFound, "no call "+id)
			return
		}
		writeJSONError(w, http.StatusInternalServerError, err.Error())
		return
	}
	remote := r.RemoteAddr
	if c, err := a.trust.Client(r); err == nil {
		remote = c.Addr.String()
	}
	a.log.Info("admin api: call hung up", "call", id, "remote", remote)
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
