package push

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// A blob batch carries many small blobs in one upload
// (POST /v1/sites/{site}/blobs): one HTTP request and one store round
// trip for up to MaxBatchBlobs blobs, where a PUT each cost 13.9 s of a
// 10,000-file push (issue 25). The body is a first line naming the
// format, then for each blob a line "<hash> <size>" and its bytes:
//
//	cdn-blobs 1\n
//	<64 lower-case hex> <decimal size>\n
//	<size bytes>
//	...
//
// The body ends after the last blob's bytes. Each blob is checked against
// its name before anything of the batch is stored.

// BlobBatchType is the media type of a blob batch.
const BlobBatchType = "application/vnd.selfcdn.blob-batch"

// blobBatchMagic is a batch's first line.
const blobBatchMagic = "cdn-blobs 1\n"

// Bounds of one batch. A client batches blobs up to BatchBlobMax bytes
// each and sends larger ones alone (PUT).
const (
	MaxBatchBlobs = 1024
	MaxBatchBytes = 32 << 20 // the whole body, framing included
	BatchBlobMax  = 1 << 20
)

// BatchStored is control's answer to a batch: the blobs it holds now,
// in the order sent, and how many of them this batch stored (the others
// were there already).
type BatchStored struct {
	Blobs   []Blob `json:"blobs"`
	Created int    `json:"created"`
}

// BatchedBlob is one blob of a batch, checked against its name.
type BatchedBlob struct {
	Hash string
	Data []byte
}

// BatchError is a batch that is not well formed or whose bytes do not
// match their names: the whole batch is refused.
type BatchError struct {
	// Hash names the blob at fault, when one is.
	Hash string
	// Mismatch says the blob's bytes hash to another name; TooLarge that
	// the batch or a blob is over its limit.
	Mismatch, TooLarge bool
	Msg                string
}

func (e *BatchError) Error() string { return e.Msg }

// WriteBlobBatch writes the batch of blobs to w. The blobs' names are
// not checked: the reader checks them.
func WriteBlobBatch(w io.Writer, blobs []BatchedBlob) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(blobBatchMagic)
	for _, b := range blobs {
		bw.Write(appendBlobLine(nil, b.Hash, int64(len(b.Data))))
		bw.Write(b.Data)
	}
	return bw.Flush()
}

// BlobBatchSize is the length of the body WriteBlobBatch writes.
func BlobBatchSize(blobs []BatchedBlob) int64 {
	n := int64(len(blobBatchMagic))
	for _, b := range blobs {
		n += blobFrameSize(b.Hash, int64(len(b.Data)))
	}
	return n
}

// appendBlobLine appends the line that opens a blob of size bytes in a
// batch.
func appendBlobLine(b []byte, hash string, size int64) []byte {
	return fmt.Appendf(b, "%s %d\n", hash, size)
}

// blobFrameSize is what a blob of size bytes takes in a batch, its line
// included.
func blobFrameSize(hash string, size int64) int64 {
	return int64(len(hash)+len(" \n")+len(strconv.FormatInt(size, 10))) + size
}

// ReadBlobBatch reads a whole batch from r, of at most maxBytes (the
// body, framing included) and blobs of at most maxBlob bytes each, and
// checks every blob against its name. A batch that is not well formed,
// names a blob twice, or holds a blob that does not match its name is a
// *BatchError; an error of r is returned as it is (a body over the
// server's limit is the caller's to answer). Nothing is returned unless
// the whole batch is good.
func ReadBlobBatch(r io.Reader, maxBytes, maxBlob int64) ([]BatchedBlob, error) {
	lr := &io.LimitedReader{R: r, N: maxBytes + 1}
	br := bufio.NewReaderSize(lr, 64<<10)
	magic := make([]byte, len(blobBatchMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != blobBatchMagic {
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		return nil, &BatchError{Msg: fmt.Sprintf("not a blob batch: the body must start with %q", blobBatchMagic)}
	}
	var (
		out  []BatchedBlob
		seen = map[string]bool{}
	)
	for {
		hash, size, err := readBatchHeader(br, maxBlob)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(out) == MaxBatchBlobs {
			return nil, &BatchError{TooLarge: true, Msg: fmt.Sprintf("more than %d blobs in one batch", MaxBatchBlobs)}
		}
		if seen[hash] {
			return nil, &BatchError{Hash: hash, Msg: fmt.Sprintf("blob %s is in the batch twice", hash)}
		}
		seen[hash] = true
		data := make([]byte, size)
		if _, err := io.ReadFull(br, data); err != nil {
			if lr.N <= 0 {
				return nil, &BatchError{TooLarge: true, Msg: fmt.Sprintf("the batch is over %d bytes", maxBytes)}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, &BatchError{Hash: hash, Msg: fmt.Sprintf("the batch ends inside blob %s (%d bytes announced)", hash, size)}
			}
			return nil, err
		}
		if HashOf(data) != hash {
			return nil, &BatchError{Hash: hash, Mismatch: true, Msg: fmt.Sprintf("the bytes sent as blob %s do not hash to that name", hash)}
		}
		out = append(out, BatchedBlob{Hash: hash, Data: data})
	}
	if lr.N <= 0 {
		return nil, &BatchError{TooLarge: true, Msg: fmt.Sprintf("the batch is over %d bytes", maxBytes)}
	}
	if len(out) == 0 {
		return nil, &BatchError{Msg: "the batch holds no blob"}
	}
	return out, nil
}

// maxBatchHeader is the longest blob line: a hash, a space, 19 digits, LF.
const maxBatchHeader = 2*sha256.Size + 1 + 19 + 1

// readBatchHeader reads one "<hash> <size>\n" line; io.EOF at the clean
// end of the batch.
func readBatchHeader(br *bufio.Reader, maxBlob int64) (string, int64, error) {
	line, err := br.ReadSlice('\n')
	if len(line) == 0 && errors.Is(err, io.EOF) {
		return "", 0, io.EOF
	}
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxBatchHeader {
		return "", 0, &BatchError{Msg: "a blob line is too long: want \"<hash> <size>\""}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return "", 0, err
	}
	if errors.Is(err, io.EOF) {
		return "", 0, &BatchError{Msg: "the batch ends inside a blob line"}
	}
	hash, sizeText, ok := bytes.Cut(line[:len(line)-1], []byte{' '})
	if !ok || !ValidHash(string(hash)) {
		return "", 0, &BatchError{Msg: fmt.Sprintf("bad blob line %q: want \"<sha-256 in lower-case hex> <size>\"", line)}
	}
	size, err := strconv.ParseInt(string(sizeText), 10, 64)
	if err != nil || size < 0 || len(sizeText) > 1 && sizeText[0] == '0' || sizeText[0] == '+' {
		return "", 0, &BatchError{Hash: string(hash), Msg: fmt.Sprintf("bad size %q of blob %s", sizeText, hash)}
	}
	if size > maxBlob {
		return "", 0, &BatchError{Hash: string(hash), TooLarge: true, Msg: fmt.Sprintf("blob %s is %d bytes, over the %d-byte limit of a batched blob", hash, size, maxBlob)}
	}
	return string(hash), size, nil
}
