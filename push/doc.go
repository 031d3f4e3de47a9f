// Package push is the push-release model shared by the CLI, control and
// edges: the Manifest a release commits (URL path → content-addressed
// blob, type, headers, precompressed variants; redirects), its
// validation, the scan of a site directory that builds one, and the
// Client that uploads it with the wire types of the API it calls
// (Commit, Status, Release, Missing).
//
// Blobs are named by the SHA-256 of their bytes, in lower-case hex, so a
// blob is uploaded once however many releases and paths use it, and every
// reader can check what it got.
//
// The wire types are push's own, not control's storage types: a CI tool
// that imports push links no NATS (TestNoStorageDeps checks it), and what
// control stores can change without breaking the API. The Client calls
// through internal/apiclient, the one retry policy of every control API
// client.
package push
