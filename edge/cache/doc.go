// Package cache is the edge's object store, in three parts:
//
//   - Memory, the memory tier: ristretto, bounded by bytes, with TinyLFU
//     admission so one scan of cold URLs cannot flush the hot set;
//   - Disk, the disk tier: one file per object (objfile.go), every block
//     checksummed and checked when read (a block that passed is trusted
//     for at most 10 s while its file is unchanged), indexed by an
//     append-only journal, evicted by SIEVE, the files of recent large
//     hits kept open (openfiles.go); it survives restarts;
//   - Pinned: pushed blobs named by their SHA-256, in the same object
//     files, never evicted (release sync removes what no release names).
//
// Invariants: an Entry is immutable once stored (a refresh stores a new
// one under the same key), so a reader holding one needs no lock while
// it is replaced or evicted. A file becomes visible only whole: written
// under tmp, then renamed into place. A damaged file is dropped and
// reads as a miss, never served.
//
// Locks: Disk.mu (the index, the journal and the renames) is taken
// before openFiles.mu (the open files), never after: Disk drops a
// replaced object's open file while it holds its own lock, and openFiles
// closes files only after it let go of its own. Pinned.mu (blob sizes and
// their total) is never held with either. Object bodies are read and
// written outside all three; renames, removals and journal records run
// under Disk.mu.
package cache
