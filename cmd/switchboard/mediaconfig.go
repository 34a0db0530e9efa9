package main

import (
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/gateway/iceservers"
	"github.com/switchboard/switchboard/media"
)

// minTURNSecretLen keeps the TURN shared secret out of reach of guessing:
// whoever knows it mints credentials for the TURN server.
const minTURNSecretLen = 16

// validateMedia checks the settings of the media ports, ICE and TURN.
// Secrets are never echoed.
func (c *Config) validateMedia(add func(key, format string, args ...any)) {
	if c.MediaCoalesce < 0 || c.MediaCoalesce > media.MaxCoalesce {
		add("MEDIA_COALESCE", "%v is out of range; use 0 (off) to %v, e.g. 300us", c.MediaCoalesce, media.MaxCoalesce)
	}
	if c.ICEPort < 0 || c.ICEPort > 65535 {
		add("ICE_PORT", "%d is not a port; use one from 1 to 65535 (0 lets the system pick, for tests), e.g. 10000", c.ICEPort)
	} else if c.ICEPort != 0 {
		p := uint16(c.ICEPort)
		if c.RTPPorts != (PortRange{}) && c.RTPPorts.Contains(p) {
			add("ICE_PORT", "%d is inside %sRTP_PORTS %s; move one of them", p, envPrefix, c.RTPPorts)
		}
		// The ICE port takes UDP, and with ICE-TCP the TCP port of the
		// same number, on the media address: a listener of the same
		// protocol and port would collide.
		others := []struct{ key, addr string }{{"SIP_UDP", c.SIPUDP}}
		if c.ICETCP {
			others = append(others, struct{ key, addr string }{"SIP_TCP", c.SIPTCP},
				struct{ key, addr string }{"SIP_TLS", c.SIPTLS}, struct{ key, addr string }{"HTTP", c.HTTP})
		}
		var clash []string
		for _, o := range others {
			if _, port, err := net.SplitHostPort(o.addr); err == nil && port == strconv.Itoa(c.ICEPort) {
				clash = append(clash, envPrefix+o.key)
			}
		}
		if len(clash) > 0 {
			add("ICE_PORT", "%d is also the port of %s; give each its own", p, strings.Join(clash, " and "))
		}
	}
	if c.MaxCalls < 0 {
		add("MAX_CALLS", "%d is not a cap; use a number of calls, or 0 for no cap", c.MaxCalls)
	}

	turnURL, badURL := false, false
	for _, u := range c.TURNURLs {
		turn, err := iceservers.CheckURL(strings.TrimSpace(u))
		if err != nil {
			add("TURN_URLS", "%w", err)
			badURL = true
		}
		turnURL = turnURL || turn
	}
	static := c.TURNUsername != "" || c.TURNPassword != ""
	switch {
	case badURL:
	case static && c.TURNSecret != "":
		add("TURN_SECRET", "and %sTURN_USERNAME/%sTURN_PASSWORD are both set; use the shared secret (time-limited credentials) or the static pair, not both", envPrefix, envPrefix)
	case static && (c.TURNUsername == "" || c.TURNPassword == ""):
		add("TURN_USERNAME", "%sTURN_USERNAME and %sTURN_PASSWORD go together: set both or neither", envPrefix, envPrefix)
	case turnURL && !static && c.TURNSecret == "":
		add("TURN_URLS", "has TURN servers but no credentials: set %sTURN_SECRET to the TURN server's shared secret (coturn: static-auth-secret), or %sTURN_USERNAME and %sTURN_PASSWORD", envPrefix, envPrefix, envPrefix)
	case !turnURL && (static || c.TURNSecret != ""):
		add("TURN_URLS", "has no turn: or turns: URL, so the TURN credentials would go unused; e.g. turn:turn.example.com:3478")
	}
	if c.TURNSecret != "" && len(c.TURNSecret) < minTURNSecretLen {
		add("TURN_SECRET", "is too short (%d characters); use at least %d, e.g. the output of `openssl rand -hex 32`", len(c.TURNSecret), minTURNSecretLen)
	}
	if strings.ContainsAny(c.TURNUsername, ":\x00\r\n") {
		add("TURN_USERNAME", "holds a colon or a control character, which TURN usernames cannot carry here")
	}
	if c.TURNTTL < iceservers.MinTTL || c.TURNTTL > iceservers.MaxTTL {
		add("TURN_TTL", "%v is out of range; use a duration from %v to %v, e.g. 24h", c.TURNTTL, iceservers.MinTTL, iceservers.MaxTTL)
	}
}

// iceIssuer makes the issuer of the ICE servers handed to browsers; nil
// when none is configured.
func iceIssuer(c Config) (*iceservers.Issuer, error) {
	if len(c.TURNURLs) == 0 {
		return nil, nil
	}
	urls := make([]string, len(c.TURNURLs))
	for i, u := range c.TURNURLs {
		urls[i] = strings.TrimSpace(u)
	}
	return iceservers.New(iceservers.Config{
		URLs:     urls,
		Username: c.TURNUsername,
		Password: c.TURNPassword,
		Secret:   c.TURNSecret,
		TTL:      c.TURNTTL,
	})
}

// mediaOptions are the media engine's settings.
func mediaOptions(c Config, bind, announce netip.Addr, logger *slog.Logger) media.Options {
	return media.Options{
		RTPPorts:   [2]int{int(c.RTPPorts.Start), int(c.RTPPorts.End)},
		BindIP:     bind,
		PublicIP:   announce,
		ICEUDPPort: c.ICEPort,
		ICETCP:     c.ICETCP,
		ICELite:    c.ICELite,
		NoFastPath: !c.MediaFastPath,
		Coalesce:   mediaCoalesce(c.MediaCoalesce),
		Logger:     logger.With("component", "media"),
	}
}

// mediaCoalesce maps the setting's 0 (off) to the option's negative.
func mediaCoalesce(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// iceTCPAddr is the ICE-TCP address for the log: ice's, when ICE-TCP is on.
func iceTCPAddr(c Config, ice netip.AddrPort) any {
	if !c.ICETCP {
		return "off"
	}
	return ice
}
