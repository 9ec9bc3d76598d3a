package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Written describes an object that Write stored.
type Written struct {
	// Size is the number of bytes stored.
	Size int64
	// SHA256 is the hex SHA-256 of the stored bytes.
	SHA256 string
}

// Write stores under key what write writes, hashing and counting the bytes
// on the way. The upload runs while write writes: Put reads a pipe in
// PartSize parts, so memory stays flat whatever the size.
//
// When write fails, the upload is abandoned and write's error is returned;
// no object is created (an existing one at key is left as it was). When the
// upload fails, its error is returned, even if write only saw the closed
// pipe. Writing the same key again replaces the object.
func (s *Store) Write(ctx context.Context, key, contentType string, write func(io.Writer) error) (Written, error) {
	uploadCtx, cancelUpload := context.WithCancel(ctx)
	defer cancelUpload()
	pr, pw := io.Pipe()
	type putResult struct {
		n   int64
		err error
	}
	done := make(chan putResult, 1)
	go func() {
		n, err := s.Put(uploadCtx, key, pr, contentType)
		if err == nil {
			err = errUploadEnded
		}
		pr.CloseWithError(err) // a writer still writing gets the upload's fate
		done <- putResult{n, err}
	}()

	out := &digestWriter{w: pw, h: sha256.New()}
	if err := write(out); err != nil {
		pw.CloseWithError(err)
		cancelUpload()
		put := <-done
		if out.err != nil && !errors.Is(put.err, errUploadEnded) {
			// The upload failed first and the writer only saw the closed pipe.
			return Written{}, put.err
		}
		return Written{}, err
	}
	_ = pw.Close()
	put := <-done
	if !errors.Is(put.err, errUploadEnded) {
		return Written{}, put.err
	}
	if put.n != out.n {
		return Written{}, fmt.Errorf("uploading %s: stored %d bytes, wrote %d", key, put.n, out.n)
	}
	return Written{Size: out.n, SHA256: hex.EncodeToString(out.h.Sum(nil))}, nil
}

// errUploadEnded closes the pipe's read side after a successful Put, so a
// writer that still writes learns that nothing more is read.
var errUploadEnded = errors.New("upload ended")

// digestWriter passes bytes on while hashing and counting them, and keeps
// the first error of the writer it wraps.
type digestWriter struct {
	w   io.Writer
	h   hash.Hash
	n   int64
	err error
}

func (d *digestWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	if err != nil && d.err == nil {
		d.err = err
	}
	return n, err
}
