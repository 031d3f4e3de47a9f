// Package static is the reference static-site origin (`cdn origin`): it
// serves the files under one directory over HTTP with the validators and
// ranges a CDN edge relies on.
//
// Invariants:
//   - Nothing outside Config.Dir is ever served, symlinks included: every
//     file is opened through an [os.Root].
//   - Only GET and HEAD are served; every file response carries a strong
//     ETag (a SHA-256 prefix of the content), Last-Modified and
//     Cache-Control, and conditional and range requests are answered by
//     [http.ServeContent] from the open file, never from a copy in memory.
//   - The headers rules file (`_headers`) adds or replaces response headers
//     per path and is itself never served.
package static
