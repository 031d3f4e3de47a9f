// Package purgesync keeps an edge's purge rules in step with the purge log
// in JetStream: a Follower applies purges in version order into a
// purge.Table, persists each (log.go: a file of JSON lines in the cache
// directory, fsynced) before reporting it applied, and on reconnecting
// resumes from the last version it persisted.
//
// Invariants: a version is reported applied only once it is on disk, so
// control's ?wait never counts a purge an edge could lose in a crash.
// When the log no longer holds the next version the edge needs (it was
// away past the log's retention), the edge purges whole every site it
// serves rather than serve something purged: the log no longer says
// which sites the dropped purges named. A torn last line is dropped on
// open and its purge applied again from the stream.
package purgesync
