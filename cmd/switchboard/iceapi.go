package main

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/iceservers"
	"github.com/switchboard/switchboard/sip/digest"
)

// iceServersPath is where web apps get the STUN and TURN servers for
// their PeerConnections.
const iceServersPath = "/api/ice-servers"

// iceAPI serves GET /api/ice-servers: the ICE servers, with fresh TURN
// credentials, as RTCConfiguration.iceServers wants them, to a user of
// the gateway only.
//
// It authenticates with HTTP Digest (RFC 7616) against the gateway's SIP
// accounts, in the SIP domain's realm: a web app that can place calls has
// those credentials already, the gateway keeps only their HA1 hashes
// (which Digest, unlike Basic, needs nothing else to check), the password
// never crosses the wire (the page may be served over plain HTTP on a
// LAN), and failures count in the same throttle as the SIP side's, so
// this is no side door for guessing passwords. The admin token is not
// accepted: it is an operator's secret, and web pages must not hold it.
//
// TURN credentials are worth a relay's bandwidth: handing them to anyone
// would make the TURN server an open relay, which is why the softphone
// asks here, as its user, and not in the public /config.json.
type iceAPI struct {
	issuer     *iceservers.Issuer
	accounts   *accounts.Store
	throttle   *accounts.Throttle
	digest     *digest.Server
	algorithms []string
	origins    []string // allowed to call it from their pages (CORS)
	log        *slog.Logger
}

func newICEAPI(cfg Config, s *sipStack, log *slog.Logger) *iceAPI {
	return &iceAPI{
		issuer:     s.ice,
		accounts:   s.accounts,
		throttle:   s.gw.Throttle(),
		digest:     &digest.Server{Realm: cfg.Domain, Secret: s.secret},
		algorithms: cfg.DigestAlgorithms,
		origins:    cfg.WSOrigins,
		log:        log,
	}
}

func (a *iceAPI) register(mux *http.ServeMux) {
	mux.Handle(iceServersPath, a)
}

func (a *iceAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.cors(w, r)
	switch r.Method {
	case http.MethodGet:
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent) // a CORS preflight
		return
	default:
		w.Header().Set("Allow", "GET, OPTIONS")
		writeJSONError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		ip = ap.Addr()
	}
	cred, found, malformed := a.credentials(r)
	switch {
	case malformed:
		writeJSONError(w, http.StatusBadRequest, "malformed Digest Authorization header")
		return
	case !found:
		a.challenge(w, false)
		return
	case cred.UserHash:
		writeJSONError(w, http.StatusBadRequest, "userhash is not supported")
		return
	case cred.URI != r.URL.RequestURI():
		// RFC 7616 §3.4.6: the digest must be of this request.
		writeJSONError(w, http.StatusBadRequest, "the digest uri is not the request's")
		return
	}
	if wait, ok := a.throttle.Allow(ip, cred.Username); !ok {
		a.log.Info("ice servers: refused: too many failures", "remote", r.RemoteAddr, "retry_after", wait)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		writeJSONError(w, http.StatusTooManyRequests, "too many failed attempts; retry later")
		return
	}
	// An unknown user is checked against no HA1: the same work and answer
	// as a wrong password.
	acc, known := a.accounts.Lookup(cred.Username)
	known = known && acc.Realm == a.digest.Realm
	err := a.digest.Verify(cred, r.Method, func(alg string) (string, bool) {
		if !known {
			return "", false
		}
		return acc.HA1(alg)
	})
	switch {
	case err == nil:
	case errors.Is(err, digest.ErrStale), errors.Is(err, digest.ErrReplay):
		a.challenge(w, true)
		return
	case errors.Is(err, digest.ErrBadResponse):
		blocked := a.throttle.Failure(accounts.OriginHTTP, ip, cred.Username)
		a.log.Info("ice servers: authentication failed", "user", cred.Username, "remote", r.RemoteAddr, "blocked", blocked)
		a.challenge(w, false)
		return
	case errors.Is(err, digest.ErrMalformed):
		writeJSONError(w, http.StatusBadRequest, "malformed Digest credentials")
		return
	default:
		a.challenge(w, false)
		return
	}
	a.throttle.Success(ip, cred.Username)
	servers := a.issuer.For(cred.Username)
	a.log.Debug("ice servers handed out", "user", cred.Username, "remote", r.RemoteAddr, "servers", len(servers.ICEServers), "expires", servers.Expires)
	writeJSON(w, http.StatusOK, servers)
}

// credentials returns the request's Digest credentials for the realm.
func (a *iceAPI) credentials(r *http.Request) (c digest.Credentials, found, malformed bool) {
	for _, v := range r.Header.Values("Authorization") {
		c, err := digest.ParseCredentials(v)
		switch {
		case errors.Is(err, digest.ErrUnsupportedScheme):
		case err != nil:
			malformed = true
		case c.Realm == a.digest.Realm:
			return c, true, false
		}
	}
	return digest.Credentials{}, false, malformed
}

// challenge answers 401 with one Digest challenge per algorithm.
func (a *iceAPI) challenge(w http.ResponseWriter, stale bool) {
	for _, alg := range a.algorithms {
		if ch, err := a.digest.Challenge(alg, stale); err == nil {
			w.Header().Add("WWW-Authenticate", ch.String())
		}
	}
	writeJSONError(w, http.StatusUnauthorized, "Digest credentials of a SIP account are required")
}

// cors lets the pages of SWITCHBOARD_WS_ORIGINS, which may open /ws,
// call the API from the browser too.
func (a *iceAPI) cors(w http.ResponseWriter, r *http.Request) {
	origin := strings.ToLower(r.Header.Get("Origin"))
	if origin == "" || !slices.Contains(a.origins, origin) {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Methods", "GET")
	h.Set("Access-Control-Allow-Headers", "Authorization")
	h.Set("Access-Control-Expose-Headers", "WWW-Authenticate")
	h.Set("Access-Control-Max-Age", "600")
	h.Add("Vary", "Origin")
}

// iceServersPathFor is the softphone's /config.json entry: where it gets
// its ICE servers, or "" when there are none to get.
func iceServersPathFor(s *sipStack) string {
	if !s.ice.Enabled() {
		return ""
	}
	return iceServersPath
}
