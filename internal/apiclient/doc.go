// Package apiclient calls control's HTTP API for the programs outside
// control: purge.Client, push.Client and cdn status. It is the one place
// that knows the base URL, the token, the User-Agent, when a failed call
// is tried again, and how an error answer reads.
//
// A call is retried only when its failure may pass and repeating it is
// safe:
//
//   - the failure: a connection error, or 429, 502, 503 or 504; never
//     another status, an answer that does not decode, or one the caller
//     marks Final (purge's 504 not_applied is an answer, not a fault);
//   - the call: GET, HEAD, PUT, DELETE and OPTIONS (idempotent, RFC 9110
//     §9.2.2), a POST carrying an Idempotency-Key (control writes it once
//     per key) or one the caller declares Idempotent. Any call is retried
//     after a 429 (control's rate limit refuses before the handler runs)
//     or when the connection was never made, since then nothing was done.
//
// BaseURL may list several controls, comma-separated. A call goes first to
// the one that answered last; a retry goes to the next in the list, at once
// when the last could not even be reached, so a dead control costs a
// connection attempt, not a pause.
//
// Pauses grow exponentially with full jitter, wait at least what a 429 or
// 503 asks for in Retry-After, never exceed Policy.MaxBackoff, and are
// not begun when the caller's deadline would pass first. A request body
// is opened again for each attempt, so a retried upload sends it whole
// from its start, never the rest of a stream cut off midway.
//
// Every error answer is an *Error with the status and the API's
// {"error":{"code","message"}}; purge and push wrap it in their own
// APIError types, which unwrap to it.
//
// The package imports only the standard library: a CI tool importing
// purge or push links nothing of control's.
package apiclient
