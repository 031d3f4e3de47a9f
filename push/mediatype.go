package push

import (
	"mime"
	"net/http"
	"path"
	"strings"
)

// sniffLen is how much of a file http.DetectContentType looks at.
const sniffLen = 512

// utf8Types are the media types given "charset=utf-8" when the type table
// names none: a site's text is UTF-8, and without the parameter a browser
// may guess another charset (WHATWG Encoding §4) and garble it. The list is
// short on purpose, so that every push labels the same files alike.
var utf8Types = map[string]bool{
	"text/html":              true,
	"text/css":               true,
	"text/plain":             true,
	"text/javascript":        true,
	"application/javascript": true,
	"application/json":       true,
	"image/svg+xml":          true,
}

// webTypes are the types of the extensions most sites are made of. They
// are looked up before mime.TypeByExtension, whose table the system's
// mime.types files extend and override: without them, the same site pushed
// from two machines could get two manifests (.js as text/javascript on
// one, application/javascript on another).
var webTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".htm":         "text/html; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".js":          "text/javascript; charset=utf-8", // RFC 9239 §6
	".mjs":         "text/javascript; charset=utf-8",
	".json":        "application/json; charset=utf-8",
	".map":         "application/json; charset=utf-8", // source maps
	".webmanifest": "application/manifest+json",
	".txt":         "text/plain; charset=utf-8",
	".xml":         "text/xml; charset=utf-8",
	".svg":         "image/svg+xml; charset=utf-8",
	".wasm":        "application/wasm",
	".png":         "image/png",
	".jpg":         "image/jpeg",
	".jpeg":        "image/jpeg",
	".gif":         "image/gif",
	".webp":        "image/webp",
	".avif":        "image/avif",
	".ico":         "image/vnd.microsoft.icon",
	".woff":        "font/woff",
	".woff2":       "font/woff2",
	".ttf":         "font/ttf",
	".otf":         "font/otf",
	".pdf":         "application/pdf",
}

// typeByExtension returns the Content-Type for urlPath's extension, or ""
// when the extension is unknown and the bytes must decide.
func typeByExtension(urlPath string) string {
	ext := strings.ToLower(path.Ext(urlPath))
	if ext == "" {
		return ""
	}
	if typ, ok := webTypes[ext]; ok {
		return typ
	}
	return withCharset(mime.TypeByExtension(ext))
}

// sniffType returns the Content-Type of content that starts with head.
func sniffType(head []byte) string {
	return withCharset(http.DetectContentType(head))
}

// withCharset adds "; charset=utf-8" to a text type of utf8Types that has
// no charset; other types are returned as they are.
func withCharset(typ string) string {
	if typ == "" || strings.Contains(strings.ToLower(typ), "charset=") {
		return typ
	}
	if utf8Types[mediaType(typ)] {
		return typ + "; charset=utf-8"
	}
	return typ
}

// mediaType returns typ without parameters, trimmed and in lower case.
func mediaType(typ string) string {
	mt, _, _ := strings.Cut(typ, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// compressible reports whether a file of Content-Type typ is worth
// precompressing: text formats. Images, video, archives and woff/woff2
// fonts are compressed already; a second pass only costs time.
func compressible(typ string) bool {
	mt := mediaType(typ)
	if strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml") {
		return true // +json and +xml: RFC 6839 structured-syntax suffixes
	}
	switch mt {
	case "application/javascript", "application/json", "application/xml", "application/wasm",
		"application/x-javascript", "application/ecmascript", "application/yaml", "application/toml",
		"application/vnd.ms-fontobject", "font/ttf", "font/otf", "font/sfnt", "font/collection",
		"image/x-icon", "image/vnd.microsoft.icon", "image/bmp":
		return true
	}
	return false
}
