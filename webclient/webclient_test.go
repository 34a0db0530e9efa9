package webclient

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// A fake bundle, laid out as `npm run build` makes it.
var (
	fakeIndex = `<!doctype html><html><head><link rel="stylesheet" href="style-ABCD2345.css">` +
		`<script type="module" src="app-WXYZ6789.js"></script></head><body></body></html>`
	fakeApp = "console.log('softphone');\n" + strings.Repeat("const x = 'padding so that gzip pays';\n", 100)
	fakeCSS = "body{margin:0}"
)

func builtFS() fstest.MapFS {
	return fstest.MapFS{
		".placeholder":             {Data: []byte("placeholder\n")},
		"index.html":               {Data: []byte(fakeIndex)},
		"app-WXYZ6789.js":          {Data: []byte(fakeApp)},
		"style-ABCD2345.css":       {Data: []byte(fakeCSS)},
		"THIRD_PARTY_LICENSES.txt": {Data: []byte("MIT\n")},
	}
}

func placeholderFS() fstest.MapFS {
	return fstest.MapFS{".placeholder": {Data: []byte("placeholder\n")}}
}

func serve(t *testing.T, h http.Handler, method, target string, header map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	req.Host = "gw.example.test:8080"
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func readBody(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newTestHandler(t *testing.T, fsys fstest.MapFS) *handler {
	t.Helper()
	h, err := newHandler(fsys)
	if err != nil {
		t.Fatalf("newHandler: %v", err)
	}
	return h
}

func TestBuiltBundle(t *testing.T) {
	h := newTestHandler(t, builtFS())
	if !h.built {
		t.Fatal("built = false with index.html present")
	}
	tests := []struct {
		path        string
		status      int
		contentType string
		cache       string
		body        string
	}{
		{"/", 200, "text/html; charset=utf-8", "no-cache", fakeIndex},
		{"/index.html", 200, "text/html; charset=utf-8", "no-cache", fakeIndex},
		{"/app-WXYZ6789.js", 200, "text/javascript; charset=utf-8", cacheImmutable, fakeApp},
		{"/style-ABCD2345.css", 200, "text/css; charset=utf-8", cacheImmutable, fakeCSS},
		{"/THIRD_PARTY_LICENSES.txt", 200, "text/plain; charset=utf-8", "no-cache", "MIT\n"},
		{"/.placeholder", 404, "text/plain; charset=utf-8", "no-store", ""},
		{"/app.js", 404, "text/plain; charset=utf-8", "no-store", ""},
		{"/sub/", 404, "text/plain; charset=utf-8", "no-store", ""},
		{"/../index.html", 404, "text/plain; charset=utf-8", "no-store", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res := serve(t, h, "GET", tt.path, nil)
			body := readBody(t, res)
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.status)
			}
			if got := res.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
			}
			if got := res.Header.Get("Cache-Control"); got != tt.cache {
				t.Errorf("Cache-Control = %q, want %q", got, tt.cache)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			if tt.status == 200 && body != tt.body {
				t.Errorf("body = %q, want %q", body, tt.body)
			}
			if tt.status == 200 && res.Header.Get("ETag") == "" {
				t.Error("no ETag")
			}
		})
	}
}

func TestPageSecurityHeaders(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{"built": builtFS(), "placeholder": placeholderFS()} {
		t.Run(name, func(t *testing.T) {
			res := serve(t, newTestHandler(t, fsys), "GET", "/", nil)
			csp := res.Header.Get("Content-Security-Policy")
			for _, want := range []string{
				"script-src 'self'",
				"connect-src 'self' ws://gw.example.test:8080 wss://gw.example.test:8080",
				"frame-ancestors 'none'",
				"form-action 'none'",
			} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			// Video calls need the camera: camera=() made getUserMedia
			// fail with "camera is not allowed in this document".
			if got := res.Header.Get("Permissions-Policy"); got != "microphone=(self), camera=(self), geolocation=()" {
				t.Errorf("Permissions-Policy = %q", got)
			}
			if got := res.Header.Get("Referrer-Policy"); got != "no-referrer" {
				t.Errorf("Referrer-Policy = %q", got)
			}
		})
	}
}

func TestCSPIgnoresOddHost(t *testing.T) {
	h := newTestHandler(t, builtFS())
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = "evil; script-src *"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	csp := rec.Result().Header.Get("Content-Security-Policy")
	if strings.Contains(csp, "evil") || !strings.Contains(csp, "connect-src 'self';") {
		t.Errorf("CSP = %q: a malformed Host must not reach it", csp)
	}
}

func TestPlaceholder(t *testing.T) {
	h := newTestHandler(t, placeholderFS())
	if h.built {
		t.Fatal("built = true without index.html")
	}
	res := serve(t, h, "GET", "/", nil)
	body := readBody(t, res)
	if res.StatusCode != 200 {
		t.Fatalf("status = %d, want 200", res.StatusCode)
	}
	if got := res.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := res.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("Cache-Control = %q, want no-cache (a rebuilt gateway must show the real page)", got)
	}
	if !strings.Contains(body, "make webclient") {
		t.Errorf("placeholder page does not say how to build the client:\n%s", body)
	}
	for _, p := range []string{"/app.js", "/.placeholder", "/index.htm"} {
		if res := serve(t, h, "GET", p, nil); res.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", p, res.StatusCode)
		}
	}
	head := serve(t, h, "HEAD", "/", nil)
	if b := readBody(t, head); head.StatusCode != 200 || b != "" {
		t.Errorf("HEAD / = %d with %d body bytes, want 200 and none", head.StatusCode, len(b))
	}
}

func TestMethods(t *testing.T) {
	h := newTestHandler(t, builtFS())
	for _, m := range []string{"POST", "PUT", "DELETE", "OPTIONS"} {
		res := serve(t, h, m, "/", nil)
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s / = %d, want 405", m, res.StatusCode)
		}
		if got := res.Header.Get("Allow"); got != "GET, HEAD" {
			t.Errorf("%s / Allow = %q", m, got)
		}
	}
	res := serve(t, h, "HEAD", "/app-WXYZ6789.js", nil)
	if b := readBody(t, res); res.StatusCode != 200 || b != "" {
		t.Errorf("HEAD = %d with %d body bytes, want 200 and none", res.StatusCode, len(b))
	}
	if got := res.Header.Get("Content-Length"); got != strconv.Itoa(len(fakeApp)) {
		t.Errorf("HEAD Content-Length = %q, want %d", got, len(fakeApp))
	}
}

func TestConditionalGet(t *testing.T) {
	h := newTestHandler(t, builtFS())
	etag := serve(t, h, "GET", "/", nil).Header.Get("ETag")
	tests := []struct {
		ifNoneMatch string
		status      int
	}{
		{etag, 304},
		{"W/" + etag, 304},
		{`"other", ` + etag, 304},
		{"*", 304},
		{`"other"`, 200},
	}
	for _, tt := range tests {
		res := serve(t, h, "GET", "/", map[string]string{"If-None-Match": tt.ifNoneMatch})
		body := readBody(t, res)
		if res.StatusCode != tt.status {
			t.Errorf("If-None-Match %s: status = %d, want %d", tt.ifNoneMatch, res.StatusCode, tt.status)
		}
		if tt.status == 304 && body != "" {
			t.Errorf("304 with a body")
		}
	}
}

func TestGzip(t *testing.T) {
	h := newTestHandler(t, builtFS())
	tests := []struct {
		acceptEncoding string
		gzip           bool
	}{
		{"gzip, deflate, br", true},
		{"br;q=1.0, gzip;q=0.5", true},
		{"GZIP", true},
		{"*", true},
		{"gzip;q=0", false},
		{"br", false},
		{"", false},
	}
	for _, tt := range tests {
		res := serve(t, h, "GET", "/app-WXYZ6789.js", map[string]string{"Accept-Encoding": tt.acceptEncoding})
		body := readBody(t, res)
		if got := res.Header.Get("Vary"); got != "Accept-Encoding" {
			t.Errorf("%q: Vary = %q", tt.acceptEncoding, got)
		}
		if gz := res.Header.Get("Content-Encoding") == "gzip"; gz != tt.gzip {
			t.Errorf("%q: gzip = %v, want %v", tt.acceptEncoding, gz, tt.gzip)
			continue
		}
		if tt.gzip {
			zr, err := gzip.NewReader(bytes.NewReader([]byte(body)))
			if err != nil {
				t.Fatal(err)
			}
			plainBody, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			body = string(plainBody)
		}
		if body != fakeApp {
			t.Errorf("%q: body differs from the file", tt.acceptEncoding)
		}
	}
	// The two representations have different ETags, and each revalidates.
	plainTag := serve(t, h, "GET", "/app-WXYZ6789.js", nil).Header.Get("ETag")
	gzTag := serve(t, h, "GET", "/app-WXYZ6789.js", map[string]string{"Accept-Encoding": "gzip"}).Header.Get("ETag")
	if plainTag == gzTag {
		t.Errorf("identity and gzip share ETag %s", plainTag)
	}
	res := serve(t, h, "GET", "/app-WXYZ6789.js", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": gzTag})
	if res.StatusCode != 304 {
		t.Errorf("gzip revalidation: status = %d, want 304", res.StatusCode)
	}
	// Small files are not compressed.
	res = serve(t, h, "GET", "/style-ABCD2345.css", map[string]string{"Accept-Encoding": "gzip"})
	if res.Header.Get("Content-Encoding") != "" {
		t.Error("a 14-byte file was gzipped")
	}
}

// TestEmbedded checks the bundle this binary was built with, whichever
// state it is in: a clean checkout has only the placeholder, a tree after
// `make webclient` has the client.
func TestEmbedded(t *testing.T) {
	res := serve(t, Handler(), "GET", "/", nil)
	body := readBody(t, res)
	if res.StatusCode != 200 {
		t.Fatalf("GET / = %d", res.StatusCode)
	}
	if Built() {
		if !strings.Contains(body, `<script type="module" src="app-`) {
			t.Errorf("built, but / is not the softphone:\n%s", body)
		}
	} else if !strings.Contains(body, "make webclient") {
		t.Errorf("not built, but / is not the placeholder:\n%s", body)
	}
}

func TestConfigHandler(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Domain: "localhost", WSPath: "/ws"}, `{"domain":"localhost","wsPath":"/ws"}`},
		{Config{Domain: "sip.example.com"}, `{"domain":"sip.example.com","wsPath":"/ws"}`},
		{Config{Domain: `a"b`, WSPath: "/sip"}, `{"domain":"a\"b","wsPath":"/sip"}`},
		{Config{Domain: "d", ICEServersPath: "/api/ice-servers"}, `{"domain":"d","wsPath":"/ws","iceServersPath":"/api/ice-servers"}`},
	}
	for _, tt := range tests {
		res := serve(t, ConfigHandler(tt.cfg), "GET", "/config.json", nil)
		body := strings.TrimSpace(readBody(t, res))
		if res.StatusCode != 200 || body != tt.want {
			t.Errorf("%+v: %d %s, want 200 %s", tt.cfg, res.StatusCode, body, tt.want)
		}
		if got := res.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q", got)
		}
		if got := res.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("Cache-Control = %q", got)
		}
		var back Config
		if err := json.Unmarshal([]byte(body), &back); err != nil || back.Domain != tt.cfg.Domain {
			t.Errorf("round trip: %+v, %v", back, err)
		}
	}
	if res := serve(t, ConfigHandler(Config{}), "POST", "/config.json", nil); res.StatusCode != 405 {
		t.Errorf("POST = %d, want 405", res.StatusCode)
	}
}
