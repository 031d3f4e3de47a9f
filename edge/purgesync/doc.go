// Package purgesync keeps an edge's purge rules in step with the purge log
// in JetStream: a Follower applies purges in version order into a
// purge.Table, writes each to its log (log.go: a file of JSON lines in the
// cache directory) before reporting it applied, fsyncs the log within 100 ms
// (batched, off the report's path), and on reconnecting resumes from the
// last version it persisted.
//
// Invariants: a version is reported applied only once it is in the log's
// file, which a killed edge keeps (the kernel holds it), so control's
// ?wait never counts a purge a killed edge could lose. A crash of the
// machine can lose what was written but not yet fsynced: the log records
// the boot ID at each start, and an edge that finds its log not closed
// cleanly under another boot purges every site whole (Open): so the fsync
// decides nothing, and may come late and cover many purges.
// When the log no longer holds the next version the edge needs (it was
// away past the log's retention), the edge purges whole every site it
// serves rather than serve something purged: the log no longer says
// which sites the dropped purges named. A torn last line is dropped on
// open and its purge applied again from the stream.
package purgesync
