// Package contentcoding picks the content coding for a response from the
// request's Accept-Encoding (RFC 9110 §12.5.3) and produces the gzip and
// zstd encodings of a body: whole (Compress), for the variants the edge
// stores beside a cached identity body, or as it streams (Writer), for a
// miss on its way from the origin.
//
// Negotiate runs on every request and must not allocate; Compress runs
// once per stored body and favours ratio over speed. Identity is always
// an acceptable answer: the edge never replies 406. A zstd encoding never
// needs a window over 8 MiB (RFC 9659 §3).
//
// No locks: encoders come from pools (sync.Pool) and one shared zstd
// encoder, whose EncodeAll is safe for concurrent use.
package contentcoding
