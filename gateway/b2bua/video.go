package b2bua

import (
	"bytes"
	"strings"

	"github.com/switchboard/switchboard/sip"
)

// contentMediaControl is the body type of RFC 5168's keyframe request.
const contentMediaControl = "application/media_control+xml"

// pictureFastUpdateBody asks for a full picture (RFC 5168 §3).
var pictureFastUpdateBody = []byte(`<?xml version="1.0" encoding="utf-8" ?>
<media_control>
  <vc_primitive>
    <to_encoder>
      <picture_fast_update/>
    </to_encoder>
  </vc_primitive>
</media_control>
`)

// isPictureFastUpdate reports whether req is RFC 5168's INFO asking for a
// keyframe.
func isPictureFastUpdate(req *sip.Request) bool {
	ct := strings.ToLower(strings.TrimSpace(req.ContentType()))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	return ct == contentMediaControl && bytes.Contains(req.Body, []byte("picture_fast_update"))
}

// dropWebVideo renegotiates the browser without video when answer, the
// phone's answer to a late offer, refused the video that the browser took
// (the bridge relays none): a re-INVITE to the browser whose m=video has
// port 0, in a goroutine of its own, as the ACK that brought answer is
// served. A browser that refuses it keeps the video it has, unused.
func (c *call) dropWebVideo(answer []byte) {
	if !c.beginOA() {
		// The phone re-offers already: its offer settles the video.
		c.log.Info("late offer: video refused by the phone, browser not renegotiated (offer/answer busy)")
		return
	}
	br := c.media()
	offer, err := br.WebDropVideo(answer)
	if err != nil || offer == nil {
		c.endOA()
		if err != nil {
			c.log.Info("late offer: video refused by the phone, browser not renegotiated", "err", err)
		}
		return
	}
	l := c.webLeg()
	ok := c.b.spawn(func() {
		defer c.endOA()
		res, err := l.do(c.ctx, sip.MethodInvite, func(req *sip.Request) error {
			l.refreshHeaders(req)
			req.SetBody(offer, contentSDP)
			return nil
		})
		if err == nil && res.IsSuccess() && hasSDP(&res.Headers, res.Body) {
			l.sessionFromResponse(res)
			l.armSession()
			if _, err = br.WebAnswer(res.Body); err == nil {
				c.log.Info("late offer: video refused by the phone, browser renegotiated without it")
				return
			}
		}
		_ = br.Rollback()
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		c.log.Info("late offer: the browser kept the video the phone refused", "status", status, "err", err)
	})
	if !ok {
		_ = br.Rollback()
		c.endOA()
	}
}

// webLeg returns the browser's leg.
func (c *call) webLeg() *leg {
	if c.callee.web {
		return c.callee
	}
	return c.caller
}

// pictureFastUpdate sends the SIP side an INFO with picture_fast_update:
// the browser asked for a keyframe and the phone takes no RTCP feedback
// for it. The media bridge calls it; one INFO at a time, so that a burst
// of requests from the browser costs the phone one.
func (c *call) pictureFastUpdate() {
	if !c.kfInfo.CompareAndSwap(false, true) {
		return
	}
	ok := c.b.spawn(func() {
		defer c.kfInfo.Store(false)
		c.mu.Lock()
		answered := c.state >= stateAnswered
		c.mu.Unlock()
		if !answered {
			return
		}
		l := c.callee
		if c.callee.web {
			l = c.caller
		}
		res, err := l.do(c.ctx, sip.MethodInfo, func(req *sip.Request) error {
			req.SetBody(pictureFastUpdateBody, contentMediaControl)
			return nil
		})
		if err != nil {
			c.log.Debug("picture_fast_update", "err", err)
			return
		}
		c.log.Debug("picture_fast_update", "status", res.StatusCode)
	})
	if !ok {
		c.kfInfo.Store(false)
	}
}
