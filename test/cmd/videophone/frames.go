package main

import "math/bits"

// Synthesised video that a real decoder accepts: flat pictures, cheap to
// make, yet what Chromium counts in framesDecoded. (internal/mediapeer's
// keyframes only pass header parsers.)

// vp8Frame is a VP8 frame of w×h pixels (RFC 6386): a key frame or an
// inter frame. Both partitions are zero bytes. A boolean decoder whose
// value is zero reads 0 whatever the probability, so every header field,
// every probability update flag and every mode is 0 (no segmentation, no
// loop filter, DC prediction) and every block's first token is
// end-of-block: a flat grey picture, without the probability tables an
// encoder needs.
func vp8Frame(key bool, w, h int) []byte {
	mbs := ((w + 15) / 16) * ((h + 15) / 16)
	// Far more bytes than the decoder reads (a few bits per mode and per
	// block), so that it never runs off the end of a partition.
	first, data := 300+40*mbs, 100+40*mbs
	tag := uint32(1<<4) | uint32(first)<<5 // show_frame, version 0
	if !key {
		tag |= 1
	}
	b := []byte{byte(tag), byte(tag >> 8), byte(tag >> 16)}
	if key {
		b = append(b, 0x9d, 0x01, 0x2a, byte(w), byte(w>>8)&0x3f, byte(h), byte(h>>8)&0x3f)
	}
	return append(b, make([]byte, first+data)...)
}

// bitWriter writes an H.264 RBSP most significant bit first.
type bitWriter struct {
	b []byte
	n uint // bits used in the last byte, 0 when it is full
}

func (w *bitWriter) bit(v uint) {
	if w.n == 0 {
		w.b = append(w.b, 0)
	}
	w.b[len(w.b)-1] |= byte(v&1) << (7 - w.n)
	w.n = (w.n + 1) % 8
}

func (w *bitWriter) bits(v uint, n int) {
	for i := n - 1; i >= 0; i-- {
		w.bit(v >> uint(i))
	}
}

// ue writes an unsigned Exp-Golomb code (H.264 §9.1).
func (w *bitWriter) ue(v uint) {
	n := bits.Len(v + 1)
	w.bits(0, n-1)
	w.bits(v+1, n)
}

func (w *bitWriter) align() {
	for w.n != 0 {
		w.bit(0)
	}
}

// trailing writes rbsp_trailing_bits.
func (w *bitWriter) trailing() {
	w.bit(1)
	w.align()
}

// nal returns a NAL unit of header hdr with rbsp, emulation prevention
// bytes inserted (§7.4.1).
func nal(hdr byte, rbsp []byte) []byte {
	out := []byte{hdr}
	zeros := 0
	for _, c := range rbsp {
		if zeros >= 2 && c <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// h264Stream makes H.264 Constrained Baseline access units of w×h
// macroblocks: an IDR picture of I_PCM macroblocks (raw samples, no
// transform to get right) with SPS and PPS before it, and P pictures
// whose macroblocks are all skipped (a copy of the last picture).
type h264Stream struct {
	wMB, hMB int
	frameNum uint // of the next P picture
	idrID    uint
}

func (s *h264Stream) sps() []byte {
	var w bitWriter
	w.bits(66, 8)   // profile_idc: Baseline
	w.bits(0xe0, 8) // constraint_set0..2: Constrained Baseline
	w.bits(31, 8)   // level 3.1
	w.ue(0)         // seq_parameter_set_id
	w.ue(0)         // log2_max_frame_num_minus4: frame_num has 4 bits
	w.ue(2)         // pic_order_cnt_type 2: order is decoding order
	w.ue(1)         // max_num_ref_frames
	w.bit(0)        // gaps_in_frame_num_value_allowed_flag
	w.ue(uint(s.wMB - 1))
	w.ue(uint(s.hMB - 1))
	w.bit(1) // frame_mbs_only_flag
	w.bit(1) // direct_8x8_inference_flag
	w.bit(0) // frame_cropping_flag
	w.bit(0) // vui_parameters_present_flag
	w.trailing()
	return nal(0x67, w.b)
}

func (s *h264Stream) pps() []byte {
	var w bitWriter
	w.ue(0)      // pic_parameter_set_id
	w.ue(0)      // seq_parameter_set_id
	w.bit(0)     // entropy_coding_mode_flag: CAVLC
	w.bit(0)     // bottom_field_pic_order_in_frame_present_flag
	w.ue(0)      // num_slice_groups_minus1
	w.ue(0)      // num_ref_idx_l0_default_active_minus1
	w.ue(0)      // num_ref_idx_l1_default_active_minus1
	w.bit(0)     // weighted_pred_flag
	w.bits(0, 2) // weighted_bipred_idc
	w.ue(0)      // pic_init_qp_minus26 (se 0)
	w.ue(0)      // pic_init_qs_minus26 (se 0)
	w.ue(0)      // chroma_qp_index_offset (se 0)
	w.bit(1)     // deblocking_filter_control_present_flag
	w.bit(0)     // constrained_intra_pred_flag
	w.bit(0)     // redundant_pic_cnt_present_flag
	w.trailing()
	return nal(0x68, w.b)
}

// idr returns SPS, PPS and an IDR picture of luma y.
func (s *h264Stream) idr(y byte) [][]byte {
	var w bitWriter
	w.ue(0)      // first_mb_in_slice
	w.ue(7)      // slice_type: I, all slices
	w.ue(0)      // pic_parameter_set_id
	w.bits(0, 4) // frame_num
	w.ue(s.idrID % 2)
	s.idrID++
	w.bit(0) // no_output_of_prior_pics_flag
	w.bit(0) // long_term_reference_flag
	w.ue(0)  // slice_qp_delta (se 0)
	w.ue(1)  // disable_deblocking_filter_idc: off
	for range s.wMB * s.hMB {
		w.ue(25) // mb_type I_PCM
		w.align()
		for i := range 384 {
			c := y
			if i >= 256 {
				c = 0x80 // chroma: grey
			}
			w.b = append(w.b, c)
		}
	}
	w.trailing()
	s.frameNum = 1
	return [][]byte{s.sps(), s.pps(), nal(0x65, w.b)}
}

// skipped returns a P picture that repeats the last one.
func (s *h264Stream) skipped() [][]byte {
	var w bitWriter
	w.ue(0) // first_mb_in_slice
	w.ue(5) // slice_type: P, all slices
	w.ue(0) // pic_parameter_set_id
	w.bits(s.frameNum%16, 4)
	s.frameNum++
	w.bit(0) // num_ref_idx_active_override_flag
	w.bit(0) // ref_pic_list_modification_flag_l0
	w.bit(0) // adaptive_ref_pic_marking_mode_flag
	w.ue(0)  // slice_qp_delta
	w.ue(1)  // disable_deblocking_filter_idc
	w.ue(uint(s.wMB * s.hMB))
	w.trailing()
	return [][]byte{nal(0x41, w.b)}
}

// annexB joins NAL units with start codes, as pion's H264Payloader takes
// them.
func annexB(nals [][]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(b, 0, 0, 0, 1)
		b = append(b, n...)
	}
	return b
}

// vp8Keyframe reports whether an RTP payload of VP8 starts a key frame,
// and its size: the payload descriptor (RFC 7741 §4.2) with S set and
// partition 0, then a frame tag with the key frame bit clear (RFC 6386
// §9.1).
func vp8Keyframe(p []byte) (key bool, w, h int) {
	if len(p) < 1 || p[0]&0x10 == 0 || p[0]&0x07 != 0 {
		return false, 0, 0
	}
	i := 1
	if p[0]&0x80 != 0 { // X
		if len(p) < 2 {
			return false, 0, 0
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I: picture ID, 7 or 15 bits
			if len(p) <= i {
				return false, 0, 0
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K
			i++
		}
	}
	if len(p) < i+10 || p[i]&0x01 != 0 {
		return false, 0, 0
	}
	f := p[i:]
	if f[3] != 0x9d || f[4] != 0x01 || f[5] != 0x2a {
		return false, 0, 0
	}
	return true, int(f[6]) | int(f[7]&0x3f)<<8, int(f[8]) | int(f[9]&0x3f)<<8
}

// h264IDR reports whether an RTP payload of H.264 (RFC 6184) holds or
// starts an IDR slice: a single NAL unit, inside a STAP-A, or the first
// fragment of an FU-A.
func h264IDR(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	switch p[0] & 0x1f {
	case 5:
		return true
	case 24: // STAP-A
		for i := 1; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			if p[i+2]&0x1f == 5 {
				return true
			}
			i += 2 + n
		}
	case 28: // FU-A
		return len(p) > 1 && p[1]&0x80 != 0 && p[1]&0x1f == 5
	}
	return false
}
