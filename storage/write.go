package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Written describes an object that Write stored.
type Written struct {
	// Size is the number of bytes stored.
	Size int64
	// SHA256 is the hex SHA-256 of the stored bytes.
	SHA256 string
}

// Write stores under key what write writes, counting the bytes on the way;
// Put hashes them and stores the digest with the object. The upload runs while write writes: Put reads a pipe in
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
		w   Written
		err error
	}
	done := make(chan putResult, 1)
	go func() {
		w, err := s.Put(uploadCtx, key, pr, contentType)
		if err == nil {
			err = errUploadEnded
		}
		pr.CloseWithError(err) // a writer still writing gets the upload's fate
		done <- putResult{w, err}
	}()

	out := &countingWriter{w: pw}
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
	if put.w.Size != out.n {
		return Written{}, fmt.Errorf("uploading %s: stored %d bytes, wrote %d", key, put.w.Size, out.n)
	}
	return put.w, nil
}

// errUploadEnded closes the pipe's read side after a successful Put, so a
// writer that still writes learns that nothing more is read.
var errUploadEnded = errors.New("upload ended")

// countingWriter passes bytes on while counting them, and keeps the first
// error of the writer it wraps.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (d *countingWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.n += int64(n)
	if err != nil && d.err == nil {
		d.err = err
	}
	return n, err
}
