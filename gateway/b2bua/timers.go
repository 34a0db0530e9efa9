package b2bua

import (
	"fmt"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// sessionTimer is the session timer of one leg (RFC 4028). Each leg has
// its own: the gateway answers the refreshes of each peer itself and
// never carries them across.
type sessionTimer struct {
	interval  time.Duration // 0: no session timer on the leg
	refresher bool          // the gateway refreshes; else the peer must
	peerTimer bool          // the peer supports the extension
	timer     clock.Timer
	gen       uint64
}

// sessionFromRequest takes the session interval of a session refresh
// request the peer sent (or of the caller's INVITE, initial set): the
// Session-Expires it asks for (at most Options.SessionExpires), refreshed
// by whom its refresher parameter says, by the peer when it supports
// timers and leaves the choice to the gateway (RFC 4028 §9). A refresh
// without Session-Expires keeps the timer as it is.
func (l *leg) sessionFromRequest(req *sip.Request, initial bool) {
	o := &l.c.b.opts
	if o.SessionExpires < 0 {
		return
	}
	se, refresher, ok, err := req.SessionExpires()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.session
	if initial || req.HasToken("Supported", timerTag) || req.HasToken("Require", timerTag) {
		s.peerTimer = req.HasToken("Supported", timerTag) || req.HasToken("Require", timerTag)
	}
	if !ok || err != nil || se == 0 {
		if initial {
			s.interval = 0
		}
		return
	}
	// The gateway may shorten the interval, not below the peer's Min-SE.
	s.interval = min(time.Duration(se)*time.Second, max(o.SessionExpires, o.MinSE))
	if minSE, ok, err := req.Uint("Min-SE"); ok && err == nil {
		s.interval = max(s.interval, min(time.Duration(minSE)*time.Second, time.Duration(se)*time.Second))
	}
	switch refresher {
	case refresherUAC:
		s.refresher = false // the peer sent the request
	case refresherUAS:
		s.refresher = true
	default:
		s.refresher = !s.peerTimer
	}
}

// sessionHeaders adds Session-Expires (and Require: timer when the peer
// supports it) to res, the gateway's 2xx to req.
func (l *leg) sessionHeaders(res *sip.Response, req *sip.Request) {
	l.mu.Lock()
	s := l.session
	l.mu.Unlock()
	if s.interval <= 0 {
		return
	}
	who := refresherUAC // req's sender, the peer
	if s.refresher {
		who = refresherUAS
	}
	res.Set("Session-Expires", seconds(s.interval)+";refresher="+who)
	if s.peerTimer {
		res.Add("Require", timerTag)
	}
}

// sessionFromResponse takes the session interval that the peer's 2xx to a
// request of the gateway (its INVITE, a refresh) grants: with the
// refresher "uac" the gateway refreshes. No Session-Expires means no
// session timer (RFC 4028 §7.2).
func (l *leg) sessionFromResponse(res *sip.Response) {
	if l.c.b.opts.SessionExpires < 0 {
		return
	}
	se, refresher, ok, err := res.SessionExpires()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.session
	if !ok || err != nil || se == 0 {
		s.interval = 0
		return
	}
	s.peerTimer = true
	s.interval = time.Duration(se) * time.Second
	s.refresher = refresher != refresherUAS
}

// refreshHeaders adds to req, a session refresh request of the gateway,
// the Session-Expires that keeps the leg's timer as it is.
func (l *leg) refreshHeaders(req *sip.Request) {
	o := &l.c.b.opts
	if o.SessionExpires < 0 {
		return
	}
	l.mu.Lock()
	s := l.session
	l.mu.Unlock()
	req.Add("Supported", timerTag)
	if s.interval <= 0 {
		return
	}
	who := refresherUAS
	if s.refresher {
		who = refresherUAC
	}
	req.Add("Session-Expires", seconds(s.interval)+";refresher="+who)
	req.Add("Min-SE", seconds(o.MinSE))
}

// armSession (re)starts the leg's timer: the refresh at half the interval
// when the gateway refreshes, else the end of the session a little before
// the interval runs out (RFC 4028 §10: minus min(32 s, interval/3)).
func (l *leg) armSession() {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.session
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.gen++
	if s.interval <= 0 {
		return
	}
	gen := s.gen
	fire := func(f func()) func() {
		return func() {
			l.mu.Lock()
			stale := l.session.gen != gen
			l.mu.Unlock()
			if !stale && l.c.ctx.Err() == nil {
				l.c.b.spawn(f)
			}
		}
	}
	if s.refresher {
		s.timer = l.c.b.clock.AfterFunc(s.interval/2, fire(l.refresh))
	} else {
		s.timer = l.c.b.clock.AfterFunc(s.interval-min(32*time.Second, s.interval/3), fire(func() {
			l.c.log.Info("session expired", "leg", l.role)
			l.c.hangup(fmt.Errorf("%w on the %s's leg", ErrSessionExpired, l.role), nil)
		}))
	}
}

func (l *leg) stopSession() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.session.timer != nil {
		l.session.timer.Stop()
		l.session.timer = nil
	}
	l.session.gen++
}

// refresh refreshes the leg's session: UPDATE without SDP where the peer
// allows it (always for a browser, whose DTLS session is never
// renegotiated), else a re-INVITE with the gateway's current SDP.
func (l *leg) refresh() {
	c := l.c
	method := sip.MethodUpdate
	if !l.web && !l.peerUpdate {
		method = sip.MethodInvite
	}
	if l.web && !l.peerUpdate {
		c.log.Debug("session refresh: browser does not allow update", "leg", l.role)
		l.retryRefresh()
		return
	}
	for attempt := 0; attempt < 2; attempt++ {
		reinvite := method == sip.MethodInvite
		var offer []byte
		if reinvite {
			if !c.beginOA() {
				l.retryRefresh()
				return
			}
			var err error
			if offer, err = c.media().RTPRefresh(); err != nil {
				c.endOA()
				l.retryRefresh()
				return
			}
		}
		res, err := l.do(c.ctx, method, func(req *sip.Request) error {
			l.refreshHeaders(req)
			if reinvite {
				req.SetBody(offer, contentSDP)
			}
			return nil
		})
		if reinvite {
			l.finishRefresh(res, err)
		}
		switch {
		case err != nil, res.StatusCode == 481, res.StatusCode == 408:
			return // do ended the call
		case res.IsSuccess():
			c.log.Debug("session refreshed", "leg", l.role, "method", method)
			l.mu.Lock()
			old := l.session
			l.mu.Unlock()
			l.sessionFromResponse(res)
			l.mu.Lock()
			if l.session.interval == 0 {
				// A peer without session timers: the gateway keeps
				// refreshing alone (RFC 4028 §9).
				l.session.interval, l.session.refresher = old.interval, true
			}
			l.mu.Unlock()
			l.armSession()
			return
		case res.StatusCode == 422:
			minSE, ok, err := res.Uint("Min-SE")
			if !ok || err != nil || minSE == 0 {
				break
			}
			l.mu.Lock()
			l.session.interval = max(l.session.interval, time.Duration(minSE)*time.Second)
			l.mu.Unlock()
			continue
		}
		c.log.Info("session refresh refused", "leg", l.role, "status", res.StatusCode)
		l.retryRefresh()
		return
	}
	l.retryRefresh() // 422 twice
}

// finishRefresh completes the gateway's re-INVITE refresh on the media
// side: the answer of the 2xx, or back to the session in force.
func (l *leg) finishRefresh(res *sip.Response, err error) {
	c := l.c
	defer c.endOA()
	br := c.media()
	if err != nil || !res.IsSuccess() || !hasSDP(&res.Headers, res.Body) {
		_ = br.Rollback()
		return
	}
	if _, err := br.RTPAnswer(res.Body); err != nil {
		c.log.Info("answer to session refresh", "leg", l.role, "err", err)
	}
}

// retryRefresh tries the refresh again a little later (a quarter of the
// interval), while the session has not expired on the peer's side.
func (l *leg) retryRefresh() {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.session
	if s.interval <= 0 || !s.refresher {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.gen++
	gen := s.gen
	s.timer = l.c.b.clock.AfterFunc(s.interval/4, func() {
		l.mu.Lock()
		stale := l.session.gen != gen
		l.mu.Unlock()
		if !stale && l.c.ctx.Err() == nil {
			l.c.b.spawn(l.refresh)
		}
	})
}
