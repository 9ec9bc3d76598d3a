// Package storage keeps report files in an S3-compatible object store
// (MinIO in development and tests). It streams in both directions: uploads of
// unknown size go up in fixed parts, downloads come back as readers. MinIO
// error types stay inside this package.
package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Sentinel errors.
var (
	// ErrNotFound means the object or bucket does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrUnavailable means the object store could not be reached.
	ErrUnavailable = errors.New("storage: unavailable")
)

// PartSize is the multipart part size for uploads of unknown length. It
// bounds the memory an upload holds: one part buffered at a time, plus the
// first SinglePutMax bytes.
const PartSize = 8 << 20

// SinglePutMax is the largest file Put sends in a single request. Put reads
// up to this much first; a longer file goes up in PartSize parts.
const SinglePutMax = 1 << 20

// firstBytes holds SinglePutMax buffers between uploads.
var firstBytes = sync.Pool{New: func() any { b := make([]byte, SinglePutMax); return &b }}

// Opts are the connection settings of a Store.
type Opts struct {
	Endpoint        string // host:port
	AccessKeyID     string
	SecretAccessKey string
	Bucket          string
	Region          string
	UseTLS          bool
}

// Store is a bucket of an S3-compatible object store.
type Store struct {
	client *minio.Client
	bucket string
	region string
}

// New returns a Store; it does not contact the server.
func New(opts Opts) (*Store, error) {
	transport, err := minio.DefaultTransport(opts.UseTLS)
	if err != nil {
		return nil, err
	}
	transport.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	transport.ResponseHeaderTimeout = 30 * time.Second
	client, err := minio.New(opts.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(opts.AccessKeyID, opts.SecretAccessKey, ""),
		Secure:    opts.UseTLS,
		Region:    opts.Region,
		Transport: transport,
		// Few retries: a caller waiting on a download should hear "try
		// again" in seconds, and a worker's job is retried by River anyway.
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("creating object store client: %w", err)
	}
	return &Store{client: client, bucket: opts.Bucket, region: opts.Region}, nil
}

// EnsureBucket creates the bucket when it does not exist.
func (s *Store) EnsureBucket(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return translate(err)
	}
	if ok {
		return nil
	}
	if err := s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region}); err != nil {
		resp := minio.ToErrorResponse(err)
		if resp.Code == "BucketAlreadyOwnedByYou" || resp.Code == "BucketAlreadyExists" {
			return nil
		}
		return fmt.Errorf("creating bucket %s: %w", s.bucket, translate(err))
	}
	return nil
}

// Ping checks that the bucket is reachable.
func (s *Store) Ping(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return translate(err)
	}
	if !ok {
		return fmt.Errorf("bucket %s: %w", s.bucket, ErrNotFound)
	}
	return nil
}

// Put uploads r, of unknown length, to key and returns the bytes written. A
// file of at most SinglePutMax bytes (most reports) goes up in one request;
// a larger one in PartSize parts, one at a time. Writing the same key again
// replaces the object.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	buf := firstBytes.Get().(*[]byte)
	n, err := io.ReadFull(r, *buf)
	var info minio.UploadInfo
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// The whole file is in buf: one request instead of a multipart
		// upload's three, and no part buffer.
		info, err = s.client.PutObject(ctx, s.bucket, key, bytes.NewReader((*buf)[:n]), int64(n), minio.PutObjectOptions{
			ContentType: contentType,
		})
	case err == nil:
		info, err = s.client.PutObject(ctx, s.bucket, key, io.MultiReader(bytes.NewReader(*buf), r), -1, minio.PutObjectOptions{
			ContentType: contentType,
			PartSize:    PartSize,
			NumThreads:  1,
		})
	default: // r failed before any request was made
		firstBytes.Put(buf)
		return 0, fmt.Errorf("uploading %s: %w", key, err)
	}
	if err != nil {
		// A failed request's body may still be read by the transport:
		// buf is left to the garbage collector, not reused.
		return 0, fmt.Errorf("uploading %s: %w", key, translate(err))
	}
	firstBytes.Put(buf)
	return info.Size, nil
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Size         int64
	ContentType  string
	LastModified time.Time
	ETag         string
}

// Get opens an object for reading from offset; length < 0 reads to the end.
// The caller closes the reader. A missing object is ErrNotFound, detected
// before any byte is returned. The info's Size is the whole object's.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, ObjectInfo, error) {
	opts := minio.GetObjectOptions{}
	if offset > 0 || length >= 0 {
		end := int64(0)
		if length >= 0 {
			end = offset + length - 1
		}
		if err := opts.SetRange(offset, end); err != nil {
			return nil, ObjectInfo{}, err
		}
	}
	// One GET, whose response body is the reader. (minio.Object would send
	// a HEAD first, then hand every Read to a goroutine of its own, which
	// costs about a quarter of the download rate on a two-core machine.)
	body, info, header, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, key, opts)
	if err != nil {
		return nil, ObjectInfo{}, translate(err)
	}
	size := info.Size
	if _, total, ok := strings.Cut(header.Get("Content-Range"), "/"); ok { // bytes first-last/total
		if n, err := strconv.ParseInt(total, 10, 64); err == nil {
			size = n
		}
	}
	return body, ObjectInfo{Size: size, ContentType: info.ContentType, LastModified: info.LastModified, ETag: info.ETag}, nil
}

// Delete removes an object; a missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return nil
		}
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	return nil
}

// List calls fn with the key of every object under prefix.
func (s *Store) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return translate(obj.Err)
		}
		if err := fn(obj.Key, obj.Size); err != nil {
			return err
		}
	}
	return nil
}

// ReportKey is the object key of a report's file. It is built from ids the
// service generated, never from user input.
func ReportKey(orgID, applicationID, reportID, format string) string {
	return "reports/" + orgID + "/" + applicationID + "/" + reportID + "." + format
}

func translate(err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey", "NoSuchBucket", "NoSuchObject":
		return fmt.Errorf("%w: %s", ErrNotFound, resp.Message)
	case "XMinioServerNotInitialized", "ServiceUnavailable", "SlowDown", "XMinioStorageFull":
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %s", ErrNotFound, resp.Message)
	}
	if resp.StatusCode >= 500 {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}
