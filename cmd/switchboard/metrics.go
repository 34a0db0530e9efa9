package main

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/siptcp"
)

// sipMetrics are the counters that the SIP stack bumps as things happen;
// everything else in /metrics is read from the stack when scraped.
type sipMetrics struct {
	transactions *prometheus.CounterVec
	reloads      *prometheus.CounterVec

	// finals holds transactions' counters by finalKey, so that a final
	// response bumps its counter without resolving the labels again:
	// formatting, validating and hashing them took 2.5 % of the
	// gateway's CPU at 8,000 REGISTER/s. Bounded as the labels are.
	finals sync.Map
}

// finalKey is a transactions counter's labels.
type finalKey struct {
	server bool
	method string // methodLabel's
	status int
}

func newSIPMetrics(reg prometheus.Registerer) *sipMetrics {
	m := &sipMetrics{
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_sip_transactions_total",
			Help: "SIP transactions by side (server: requests the gateway answered; client: requests it sent), method and final status; 408 and 503 include the ones the gateway synthesized on timeouts and transport errors.",
		}, []string{"side", "method", "status"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_config_reloads_total",
			Help: "Reloads of the config file on SIGHUP, by result (ok, error).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.transactions, m.reloads)
	return m
}

// onFinal is the transaction layer's OnFinal.
func (m *sipMetrics) onFinal(server bool, method string, status int) {
	k := finalKey{server, methodLabel(method), status}
	if c, ok := m.finals.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	side := "client"
	if server {
		side = "server"
	}
	// The method may be a slice of a request's datagram: the key keeps
	// a copy.
	k.method = strings.Clone(k.method)
	c := m.transactions.WithLabelValues(side, k.method, strconv.Itoa(status))
	m.finals.Store(k, c)
	c.Inc()
}

// methodLabel keeps the method label bounded: SIP lets a peer send any
// token as a method, and each distinct label value is a new time series.
// Status codes need no such care: the layer only passes 200-699.
func methodLabel(method string) string {
	if sip.IsKnownMethod(method) {
		return method
	}
	return "other"
}

// stackCollector reads the SIP stack's state at each scrape: gauges of
// what is there now, and counters the packages keep themselves.
type stackCollector struct {
	s *sipStack

	registrations, users, accounts                         *prometheus.Desc
	calls, callLegs, oneWay                                *prometheus.Desc
	bridges, inactive, ports                               *prometheus.Desc
	rtpPackets, rtpBytes, rtpLost                          *prometheus.Desc
	wsOpen, wsConns                                        *prometheus.Desc
	authFailures, authRefused, authBlocked, blockedUsers   *prometheus.Desc
	sipReceived, sipDropped, sipPending, txOpen, overload  *prometheus.Desc
	dialogs, dialogsEvicted, dialogsRefused, stampMismatch *prometheus.Desc
	orderRefused, orderSkipped                             *prometheus.Desc
	sipDuplicates                                          *prometheus.Desc
	conns, connsRefused, connsEvicted, connsIdle           *prometheus.Desc
	sipPendingBytes, txPlaces, txHandlers, txEvicted       *prometheus.Desc
	clientRefused, admission, shed, handlerWait, queueWait *prometheus.Desc
	clientLingering, clientEvicted                         *prometheus.Desc
	webTransports, iceTCPConns, iceTCPRefused              *prometheus.Desc
	locRecords, locSyncs, locSnapshots, locWriteErrors     *prometheus.Desc
	reconnects, flowLost, uaMoves, iceRestarts             *prometheus.Desc
	callsBusy                                              *prometheus.Desc
	transfers, transfersRefused, replaced                  *prometheus.Desc
	videoPackets, keyframes                                *prometheus.Desc
	keyframesDropped, videoReports                         *prometheus.Desc
	fastLegs, fastPackets, fastRejected, fastFallbacks     *prometheus.Desc
}

func newStackCollector(s *sipStack) *stackCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("switchboard_"+name, help, labels, nil)
	}
	return &stackCollector{
		s:                s,
		registrations:    d("registrations", "Registered contacts (bindings), by the transport they registered over.", "transport"),
		users:            d("registered_users", "Addresses of record with at least one registered contact."),
		accounts:         d("accounts", "Accounts that can register and call."),
		calls:            d("calls_active", "Calls bridged between WebRTC and SIP by the B2BUA now, by state (calling, ringing, early, answered).", "state"),
		callLegs:         d("call_legs_active", "Legs of the bridged calls now, by type: webrtc (browser) or sip (phone, trunk).", "type"),
		oneWay:           d("calls_one_way_audio", "Bridged calls where one side has been silent while the other sends."),
		bridges:          d("media_bridges_total", "Media bridges made since start: one per bridged call attempt."),
		inactive:         d("media_inactivity_timeouts_total", "Bridged calls ended because no media flowed."),
		ports:            d("rtp_ports", "RTP port pairs of the SIP-side legs, by state (in_use, draining).", "state"),
		rtpPackets:       d("rtp_packets_total", "RTP packets relayed, by leg (webrtc, sip) and direction (in: from the peer on that leg; out: to it).", "leg", "direction"),
		rtpBytes:         d("rtp_bytes_total", "RTP bytes (header and payload, after SRTP) by leg and direction.", "leg", "direction"),
		rtpLost:          d("rtp_lost_packets_total", "RTP packets lost on their way to the gateway, from sequence gaps, by leg.", "leg"),
		wsOpen:           d("websocket_connections", "Open SIP over WebSocket connections."),
		wsConns:          d("websocket_connections_total", "SIP over WebSocket handshakes, by result (accepted, refused).", "result"),
		authFailures:     d("auth_failures_total", "Failures counted by the authentication throttle, by origin: register (REGISTER credentials: wrong password or unknown user), proxy (Proxy-Authorization), admin (admin API bearer token), probe (an anonymous request for an address of ours with no target), http (Digest credentials at /api/ice-servers).", "origin"),
		authRefused:      d("auth_refused_total", "Requests and authentication attempts refused unchecked because their source, or their user name from an address it never authenticated from, failed too often."),
		authBlocked:      d("auth_blocked_sources", "Sources (IPv4 addresses, IPv6 /64s) refused now for failing too often."),
		blockedUsers:     d("auth_blocked_users", "User names refused now, to addresses their user never authenticated from, for failing too often."),
		sipReceived:      d("sip_messages_received_total", "SIP messages the transports delivered."),
		sipDropped:       d("sip_messages_dropped_total", "SIP messages dropped unread because their source or the gateway was over its queue cap."),
		sipPending:       d("sip_messages_pending", "SIP messages waiting for a worker."),
		sipDuplicates:    d("sip_messages_duplicate_total", "Retransmissions of SIP requests over UDP dropped unread because the request was still waiting for a worker."),
		txOpen:           d("sip_transactions_open", "SIP transactions not yet terminated, by side (server, client).", "side"),
		overload:         d("sip_overload_rejected_total", "Requests answered 503 statelessly (and ACKs dropped) because the server transactions, or those of their source, were at their bound."),
		dialogs:          d("proxy_dialogs", "Dialogs the proxy record-routed and knows now: the only ones its Record-Route stamps route requests in."),
		dialogsEvicted:   d("proxy_dialogs_evicted_total", "Early dialogs forgotten to make room in the proxy's dialog table."),
		dialogsRefused:   d("proxy_dialogs_refused_total", "Initial requests answered 503 because the proxy's dialog table was full of confirmed dialogs."),
		orderRefused:     d("proxy_in_dialog_refused_total", "In-dialog requests answered 503 because 32 of their dialog, from the same side, were held to be forwarded in the order they arrived."),
		orderSkipped:     d("proxy_in_dialog_skipped_total", "In-dialog requests given up on, by those behind them or by the sweep: they had not reached the proxy within 2 s of arriving (refused by the transaction layer after they arrived)."),
		stampMismatch:    d("proxy_route_stamp_mismatches_total", "Requests whose Record-Route stamp did not verify or did not match its dialog (a replayed or forged route): authorised as out-of-dialog requests instead."),
		conns:            d("sip_connections", "Open SIP connections by transport (tcp, tls, ws or wss) and state: registered (a binding came over it), unregistered (accepted, no binding: shed first), dialed (opened by the gateway).", "transport", "state"),
		connsRefused:     d("sip_connections_refused_total", "SIP connections refused by transport and reason: per_address (the client's IPv4 address or IPv6 /64 at its cap), total (the total cap reached and no unregistered connection to evict).", "transport", "reason"),
		connsEvicted:     d("sip_connections_evicted_total", "Unregistered SIP connections closed to make room for a new one at the total cap, by transport.", "transport"),
		connsIdle:        d("sip_connections_idle_closed_total", "SIP connections closed for being idle, by transport.", "transport"),
		sipPendingBytes:  d("sip_messages_pending_bytes", "Approximate bytes of the SIP messages waiting for a worker."),
		txPlaces:         d("sip_transaction_places", "Places in use of the bound on server transactions: open server transactions, and handlers still running."),
		txHandlers:       d("sip_handlers_running", "Request handlers running now."),
		txEvicted:        d("sip_transactions_evicted_total", "Answered server transactions ended before their retransmission timer to make room for new requests."),
		clientRefused:    d("sip_client_transactions_refused_total", "Requests the gateway did not send because too many client transactions were still working (awaiting their final response)."),
		clientLingering:  d("sip_client_transactions_lingering", "Client transactions that have their final response and only absorb its retransmissions (Timers D, K, M); ended early, oldest first, when the bound is reached."),
		clientEvicted:    d("sip_client_transactions_evicted_total", "Lingering client transactions ended before their timer to make room for new requests."),
		admission:        d("sip_admission_refused_total", "Requests refused before any transaction because their source is throttled for failing authentication, by action (answered: 403 sent statelessly; dropped).", "action"),
		shed:             d("sip_overload_shed_total", "New requests answered 503 with Retry-After at once, before any transaction, because the gateway was overloaded and their source brought its share of the new requests or more."),
		handlerWait:      d("sip_handler_wait_seconds", "The request handlers' mean wait for a CPU. With sip_queue_wait_seconds past 100 ms the gateway is overloaded and refuses a share of the new work (all of it past 200 ms)."),
		queueWait:        d("sip_queue_wait_seconds", "SIP messages' mean wait for a worker, over the last ones; 0 when none was taken for 100 ms."),
		webTransports:    d("webrtc_transports_total", "Bridged calls whose web leg connected, by the candidate types (host, srflx, prflx, relay) and protocols (udp, tcp) of its selected ICE pair: the gateway's (local) and the browser's (remote).", "local_type", "local_protocol", "remote_type", "remote_protocol"),
		iceTCPConns:      d("ice_tcp_connections", "Open ICE-TCP connections on the ICE port."),
		iceTCPRefused:    d("ice_tcp_connections_refused_total", "ICE-TCP connections closed at once: over the cap per address or in all."),
		locRecords:       d("location_journal_records_total", "Changes of registrations written to the location journal."),
		locSyncs:         d("location_journal_syncs_total", "Syncs of the location journal; concurrent changes share one (group commit)."),
		locSnapshots:     d("location_snapshots_total", "Snapshots of the location store written: at start, on compaction, and after a failed journal write."),
		locWriteErrors:   d("location_write_errors_total", "Failed writes of the location journal or snapshot."),
		reconnects:       d("call_reconnects_total", "Legs of bridged calls that survived a reconnect: their browser's connection was replaced by a new one of the same user agent (RFC 5626 instance and reg-id), which the call moved to."),
		flowLost:         d("calls_lost_connection_total", "Bridged calls ended because a browser's connection closed and no new one came within SWITCHBOARD_RECONNECT_GRACE."),
		callsBusy:        d("calls_refused_busy_total", "Calls that would cross (browser ⇄ phone or trunk) refused with 503 because SWITCHBOARD_MAX_CALLS bridged calls were in progress."),
		uaMoves:          d("registration_reconnects_total", "Registrations that moved a user agent (RFC 5626 instance and reg-id) to a new connection: reconnects of browsers and outbound phones."),
		iceRestarts:      d("ice_restarts_total", "ICE restarts of browsers answered on their leg alone, without renegotiating the phone's."),
		transfers:        d("transfer_refers_total", "REFERs (call transfers) the transfer policy let through, proxied or relayed across a bridged call."),
		transfersRefused: d("transfer_refused_total", "REFERs refused by the transfer policy, by reason: malformed (no, several or a bad Refer-To, or an unsupported scheme), header (Refer-To embeds a header other than Replaces), method (a method other than INVITE), target (a trunk or stranger transferring to what it may not reach, or sending an INVITE with Replaces to a party it may not reach), local_only (an INVITE with Replaces from a user kept to our domains for a party outside them).", "reason"),
		replaced:         d("transfer_replaces_total", "INVITEs with Replaces (attended transfers) routed to the party of a dialog the gateway knows, rewritten for a bridged call's other leg."),
		videoPackets:     d("media_video_packets_total", "Video packets relayed by bridged calls, to the browser (to=webrtc) or the phone (to=sip).", "to"),
		keyframes:        d("media_keyframe_requests_total", "Keyframe requests translated: to the browser (PLI), to the phone as RTCP (PLI or FIR) or as SIP INFO picture_fast_update.", "to"),
		keyframesDropped: d("media_keyframe_requests_dropped_total", "Keyframe requests not passed on, less than 500 ms after the last one the same way: to the browser or to the phone.", "to"),
		videoReports:     d("media_video_rtcp_reports_total", "RTCP sender and receiver reports the gateway sent phones for video."),
		fastLegs:         d("media_fastpath_legs", "Web legs whose audio the gateway relays itself, without pion's packet pipeline (SWITCHBOARD_MEDIA_FASTPATH)."),
		fastPackets:      d("media_fastpath_packets_total", "SRTP audio packets handled on the fast path: decrypted from browsers (direction=in) or encrypted for them (direction=out).", "direction"),
		fastRejected:     d("media_fastpath_rejected_total", "Packets from a browser's address dropped on the fast path: failed authentication, replayed or malformed."),
		fastFallbacks:    d("media_fastpath_fallbacks_total", "Web legs left on pion's path although their pair allowed the fast path: SRTP keys not learned, or keys that authenticated none of the browser's packets."),
	}
}

func (c *stackCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *stackCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}

	// Registrations.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if bindings, err := s.registrations(ctx); err == nil {
		byTransport := map[string]int{}
		aors := map[string]bool{}
		for _, b := range bindings {
			byTransport[strings.ToLower(b.Source.Transport)]++
			aors[b.AOR] = true
		}
		for _, tr := range []string{"udp", "tcp", "tls", "ws", "wss"} {
			gauge(c.registrations, float64(byTransport[tr]), tr)
		}
		gauge(c.users, float64(len(aors)))
	}
	gauge(c.accounts, float64(s.accounts.Len()))
	if s.memory != nil {
		ls := s.memory.Stats()
		counter(c.locRecords, ls.Records)
		counter(c.locSyncs, ls.Syncs)
		counter(c.locSnapshots, ls.Snapshots)
		counter(c.locWriteErrors, ls.WriteErrors)
	}

	// Bridged calls and their media.
	calls := s.gw.Calls().Calls()
	legs := map[string]int{"webrtc": 0, "sip": 0}
	states := map[string]int{"calling": 0, "ringing": 0, "early": 0, "answered": 0}
	oneWay := 0
	for _, ci := range calls {
		if _, ok := states[ci.State]; ok {
			states[ci.State]++
		}
		for _, l := range []bool{ci.Caller.WebRTC, ci.Callee.WebRTC} {
			if l {
				legs["webrtc"]++
			} else {
				legs["sip"]++
			}
		}
		if ci.Media.OneWayAudio {
			oneWay++
		}
	}
	for state, n := range states {
		gauge(c.calls, float64(n), state)
	}
	for typ, n := range legs {
		gauge(c.callLegs, float64(n), typ)
	}
	gauge(c.oneWay, float64(oneWay))
	es := s.media.Stats()
	counter(c.bridges, es.BridgesTotal)
	counter(c.inactive, es.Inactive)
	gauge(c.ports, float64(es.PortsInUse), "in_use")
	gauge(c.ports, float64(es.PortsDraining), "draining")
	for leg, t := range map[string]struct{ pin, bin, pout, bout, lost uint64 }{
		"webrtc": {es.Web.PacketsIn, es.Web.BytesIn, es.Web.PacketsOut, es.Web.BytesOut, es.Web.Lost},
		"sip":    {es.RTP.PacketsIn, es.RTP.BytesIn, es.RTP.PacketsOut, es.RTP.BytesOut, es.RTP.Lost},
	} {
		counter(c.rtpPackets, t.pin, leg, "in")
		counter(c.rtpPackets, t.pout, leg, "out")
		counter(c.rtpBytes, t.bin, leg, "in")
		counter(c.rtpBytes, t.bout, leg, "out")
		counter(c.rtpLost, t.lost, leg)
	}
	for k, n := range es.Transports {
		counter(c.webTransports, n, k.LocalType, k.LocalProtocol, k.RemoteType, k.RemoteProtocol)
	}
	gauge(c.iceTCPConns, float64(es.ICETCPConns))
	counter(c.iceTCPRefused, es.ICETCPRefused)
	counter(c.iceRestarts, es.ICERestarts)
	counter(c.videoPackets, es.Video.PacketsToWeb, "webrtc")
	counter(c.videoPackets, es.Video.PacketsToRTP, "sip")
	counter(c.keyframes, es.Video.KeyframesToBrowser, "webrtc")
	counter(c.keyframes, es.Video.KeyframesToPhone, "sip_rtcp")
	counter(c.keyframes, es.Video.KeyframesToPhoneSIP, "sip_info")
	counter(c.keyframesDropped, es.Video.KeyframesToBrowserDropped, "webrtc")
	counter(c.keyframesDropped, es.Video.KeyframesToPhoneDropped, "sip")
	counter(c.videoReports, es.Video.ReportsToPhone)
	gauge(c.fastLegs, float64(es.FastPath.Legs))
	counter(c.fastPackets, es.FastPath.PacketsIn, "in")
	counter(c.fastPackets, es.FastPath.PacketsOut, "out")
	counter(c.fastRejected, es.FastPath.Rejected)
	counter(c.fastFallbacks, es.FastPath.Fallbacks)
	bs := s.gw.Calls().Stats()
	counter(c.reconnects, bs.Reconnects)
	counter(c.flowLost, bs.FlowLost)
	counter(c.callsBusy, bs.Busy)
	counter(c.uaMoves, s.gw.InstanceStats().Moves)

	// WebSocket connections.
	ws := s.ws.Stats()
	gauge(c.wsOpen, float64(ws.Open))
	counter(c.wsConns, ws.Accepted, "accepted")
	counter(c.wsConns, ws.Refused, "refused")

	// Connections and their caps.
	type connStats struct {
		open, registered, unregistered                  int
		refusedPerIP, refusedTotal, evicted, closedIdle uint64
	}
	all := map[string]connStats{}
	for _, t := range []*siptcp.Transport{s.tcp, s.tls} {
		if t != nil {
			st := t.Stats()
			all[strings.ToLower(t.Network())] = connStats{st.Open, st.Registered, st.Unregistered,
				st.RefusedPerIP, st.RefusedTotal, st.Evicted, st.ClosedIdle}
		}
	}
	all[strings.ToLower(s.ws.Network())] = connStats{ws.Open, ws.Registered, ws.Open - ws.Registered,
		ws.RefusedPerIP, ws.RefusedTotal, ws.Evicted, ws.ClosedIdle}
	for tr, st := range all {
		gauge(c.conns, float64(st.registered), tr, "registered")
		gauge(c.conns, float64(st.unregistered), tr, "unregistered")
		if tr == "tcp" || tr == "tls" {
			gauge(c.conns, float64(st.open-st.registered-st.unregistered), tr, "dialed")
		}
		counter(c.connsRefused, st.refusedPerIP, tr, "per_address")
		counter(c.connsRefused, st.refusedTotal, tr, "total")
		counter(c.connsEvicted, st.evicted, tr)
		counter(c.connsIdle, st.closedIdle, tr)
	}

	// Authentication.
	st := s.gw.Throttle().Stats()
	for o, n := range st.Failures {
		counter(c.authFailures, n, accounts.Origin(o).String())
	}
	counter(c.authRefused, st.Refused)
	gauge(c.authBlocked, float64(st.BlockedSources))
	gauge(c.blockedUsers, float64(st.BlockedUsers))

	// The SIP layers.
	ts := s.transports.Stats()
	counter(c.sipReceived, ts.Received)
	counter(c.sipDropped, ts.Dropped)
	counter(c.sipDuplicates, ts.Duplicates)
	gauge(c.sipPending, float64(ts.Pending))
	gauge(c.sipPendingBytes, float64(ts.PendingBytes))
	gauge(c.queueWait, s.transports.QueueDelay().Seconds())
	txs := s.gw.TransactionStats()
	gauge(c.txOpen, float64(txs.ServerTransactions), "server")
	gauge(c.txOpen, float64(txs.ClientTransactions), "client")
	counter(c.overload, txs.Rejected)
	ds := s.gw.DialogStats()
	gauge(c.dialogs, float64(ds.Dialogs))
	counter(c.dialogsEvicted, ds.Evicted)
	counter(c.dialogsRefused, ds.Refused)
	counter(c.stampMismatch, ds.Mismatched)
	ords := s.gw.OrderStats()
	counter(c.orderRefused, ords.Refused)
	counter(c.orderSkipped, ords.Skipped)
	xs := s.gw.TransferStats()
	counter(c.transfers, xs.Passed)
	counter(c.replaced, xs.Replaced)
	for reason, n := range xs.Refused {
		counter(c.transfersRefused, n, reason)
	}
	gauge(c.txPlaces, float64(txs.Pending))
	gauge(c.txHandlers, float64(txs.Handlers))
	counter(c.txEvicted, txs.Evicted)
	counter(c.clientRefused, txs.ClientRejected)
	gauge(c.clientLingering, float64(txs.ClientLingering))
	counter(c.clientEvicted, txs.ClientEvicted)
	shed := s.gw.Shed()
	counter(c.admission, txs.Refused-min(shed, txs.Refused), "answered")
	counter(c.shed, shed)
	gauge(c.handlerWait, txs.HandlerDelay.Seconds())
	counter(c.admission, txs.Dropped, "dropped")
}
