// Package webclient serves the softphone page: JsSIP and a small UI,
// bundled by esbuild into dist/ (make webclient) and embedded in the
// binary. Without a bundle the package still builds, and the page says how
// to build the client.
//
// The gateway mounts Handler at / and ConfigHandler at /config.json; the
// page then opens SIP over WebSocket at the same host, on the configured
// path (/ws).
package webclient

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// dist holds the output of `npm run build`; only dist/.placeholder is
// committed, so that this embed always matches something.
//
//go:embed all:dist
var dist embed.FS

// Handler serves the embedded softphone: / (index.html) and its assets.
// When the client was not built into the binary, / is a page that says how
// to build it and everything else is 404.
func Handler() http.Handler {
	return mustHandler(embeddedFS())
}

// Built reports whether the softphone was built into the binary (when not,
// the gateway may want to log how to build it).
func Built() bool {
	_, err := fs.Stat(embeddedFS(), indexFile)
	return err == nil
}

func embeddedFS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a valid path: cannot happen
	}
	return sub
}

func mustHandler(fsys fs.FS) http.Handler {
	h, err := newHandler(fsys)
	if err != nil {
		panic(fmt.Sprintf("webclient: %v", err)) // embedded files are readable
	}
	return h
}

const indexFile = "index.html"

// Cache lifetimes: index.html (and any name without a content hash) is
// revalidated on every load, by ETag; a hashed name never changes content,
// so browsers keep it for a year without asking.
const (
	cacheRevalidate = "no-cache"
	cacheImmutable  = "public, max-age=31536000, immutable"
)

// hashedName matches esbuild's [name]-[hash] output, e.g. app-GYM5O73Q.js
// or app-GYM5O73Q.js.map.
var hashedName = regexp.MustCompile(`-[A-Z0-9]{8}\.[a-z]+(\.map)?$`)

// handler serves files held in memory: the bundle is small and embedded
// anyway, and holding it lets each file carry its ETag and gzip form.
type handler struct {
	files map[string]*file // by path relative to the root, e.g. "app-X.js"
	built bool             // index.html exists
}

type file struct {
	body        []byte
	gz          []byte // gzip-compressed body; nil when not worth it
	etag        string // quoted, e.g. "3q2-7w"
	contentType string
	cache       string
	html        bool
}

// newHandler reads every file of fsys, except dot files such as
// .placeholder.
func newHandler(fsys fs.FS) (*handler, error) {
	h := &handler{files: make(map[string]*file)}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		h.files[name] = newFile(name, body)
		return nil
	})
	if err != nil {
		return nil, err
	}
	_, h.built = h.files[indexFile]
	return h, nil
}

func newFile(name string, body []byte) *file {
	sum := sha256.Sum256(body)
	f := &file{
		body:        body,
		etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		contentType: contentType(name),
		cache:       cacheRevalidate,
		html:        path.Ext(name) == ".html",
	}
	if hashedName.MatchString(path.Base(name)) {
		f.cache = cacheImmutable
	}
	if compressible(f.contentType) && len(body) >= 1024 {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		// Keep it only when it saves at least a tenth.
		if buf.Len() < len(body)-len(body)/10 {
			f.gz = buf.Bytes()
		}
	}
	return f
}

// contentType gives the types of the bundle's files explicitly, since
// mime.TypeByExtension depends on the host's mime tables.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".map", ".json":
		return "application/json"
	case ".txt":
		return "text/plain; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".ico":
		return "image/x-icon"
	case ".webmanifest":
		return "application/manifest+json"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

func compressible(contentType string) bool {
	return strings.HasPrefix(contentType, "text/") ||
		strings.HasPrefix(contentType, "application/json") ||
		strings.HasPrefix(contentType, "application/manifest+json") ||
		strings.HasPrefix(contentType, "image/svg+xml")
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		plain(w, http.StatusMethodNotAllowed, "method not allowed\n")
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	if name == "" {
		name = indexFile
	}
	f, ok := h.files[name]
	if !ok {
		if name == indexFile && !h.built {
			h.servePlaceholder(w, r)
			return
		}
		plain(w, http.StatusNotFound, "not found\n")
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", f.contentType)
	hdr.Set("Cache-Control", f.cache)
	hdr.Set("X-Content-Type-Options", "nosniff")
	if f.html {
		setPageHeaders(hdr, r)
	}
	body, etag := f.body, f.etag
	if f.gz != nil {
		hdr.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			body = f.gz
			// Another representation, another ETag (RFC 9110 §8.8.3).
			etag = strings.TrimSuffix(f.etag, `"`) + `-gz"`
			hdr.Set("Content-Encoding", "gzip")
		}
	}
	hdr.Set("ETag", etag)
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

func (h *handler) servePlaceholder(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", cacheRevalidate)
	hdr.Set("X-Content-Type-Options", "nosniff")
	setPageHeaders(hdr, r)
	hdr.Set("Content-Length", strconv.Itoa(len(placeholderPage)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write([]byte(placeholderPage))
	}
}

// placeholderPage stands at / when the binary was built without the
// softphone bundle.
const placeholderPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchboard: softphone not built</title>
</head>
<body>
<h1>Switchboard</h1>
<p>The gateway is running, but this binary was built without the softphone page.</p>
<p>To include it, build the client and then the gateway, from the repository root:</p>
<pre><code>make webclient
make build</code></pre>
<p><code>make webclient</code> needs Node.js and npm; <code>make build</code> and <code>make run</code> run it first when npm is installed.</p>
<p>Health: <a href="/healthz">/healthz</a>, readiness: <a href="/readyz">/readyz</a>, metrics: <a href="/metrics">/metrics</a>.</p>
</body>
</html>
`

// hostChars is what a Host header may hold to be repeated in the CSP.
var hostChars = regexp.MustCompile(`^[A-Za-z0-9.\-:\[\]]+$`)

// setPageHeaders sets the security headers of an HTML page. Scripts and
// styles come from the page's own origin only; the page may connect to
// its own host over WebSocket (listed explicitly for browsers that do not
// count ws: as 'self'); forms never submit anywhere.
func setPageHeaders(hdr http.Header, r *http.Request) {
	connect := "'self'"
	if hostChars.MatchString(r.Host) {
		connect += " ws://" + r.Host + " wss://" + r.Host
	}
	hdr.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "+
		"img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src "+connect+"; "+
		"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	hdr.Set("Referrer-Policy", "no-referrer")
	// The page needs the microphone and, for video calls, the camera, for
	// itself only (no frame it embeds), and nothing else of the sort.
	hdr.Set("Permissions-Policy", "microphone=(self), camera=(self), geolocation=()")
}

// acceptsGzip reports whether an Accept-Encoding value allows gzip: it
// names gzip (or *) without q=0.
func acceptsGzip(v string) bool {
	for part := range strings.SplitSeq(v, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "x-gzip" && coding != "*" {
			continue
		}
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
					q = f
				}
			}
		}
		return q > 0
	}
	return false
}

// etagMatches implements If-None-Match's weak comparison: any listed tag,
// W/ or not, equal to etag, or *.
func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}

func plain(w http.ResponseWriter, code int, msg string) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write([]byte(msg))
}

// Config is what the page learns from /config.json: the SIP domain it
// registers in, the path of the SIP WebSocket on the page's own host, and
// where it gets its STUN and TURN servers.
type Config struct {
	Domain string `json:"domain"`
	WSPath string `json:"wsPath"`
	// ICEServersPath, when set, is the gateway's endpoint of ICE servers
	// (with TURN credentials), on the page's own host. It answers only
	// HTTP Digest with the signed-in user's SIP credentials, so that the
	// public /config.json hands TURN credentials to nobody: the page asks
	// there before each call and gives the answer to its PeerConnection.
	ICEServersPath string `json:"iceServersPath,omitempty"`
}

// DefaultWSPath is the WebSocket path when Config.WSPath is empty.
const DefaultWSPath = "/ws"

// ConfigHandler serves cfg as /config.json. An empty WSPath is
// DefaultWSPath; an empty Domain lets the page use its own host name.
func ConfigHandler(cfg Config) http.Handler {
	if cfg.WSPath == "" {
		cfg.WSPath = DefaultWSPath
	}
	body, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // strings always marshal
	}
	body = append(body, '\n')
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			plain(w, http.StatusMethodNotAllowed, "method not allowed\n")
			return
		}
		hdr := w.Header()
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(body)
		}
	})
}
