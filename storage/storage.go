// Package storage keeps report files in an S3-compatible object store
// (MinIO in development and tests). It streams in both directions: uploads of
// unknown size go up in fixed parts, downloads come back as readers. MinIO
// error types stay inside this package.
package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"
	"github.com/minio/minio-go/v7/pkg/tags"
)

// Sentinel errors.
var (
	// ErrNotFound means the object or bucket does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrUnavailable means the object store could not be reached.
	ErrUnavailable = errors.New("storage: unavailable")
)

// PartSize is the size of the parts after the first of an upload of
// unknown length: S3's smallest, since it bounds the memory an upload
// holds (UploadConcurrency parts uploading plus the one being read) and
// 10,000 parts of it still make 50 GB.
const PartSize = 5 << 20

// SinglePutMax is the largest file Put sends in a single request: the
// first part. Put reads up to this much first; a longer file goes up in
// parts, this one first, then PartSize ones.
const SinglePutMax = 8 << 20

// partBufs holds SinglePutMax buffers between uploads. The PartSize
// buffers of a multipart upload are its own (putParts), and go with it.
var partBufs = sync.Pool{New: func() any { b := make([]byte, SinglePutMax); return &b }}

// Opts are the connection settings of a Store.
type Opts struct {
	Endpoint string // host:port
	// AccessKeyID and SecretAccessKey are static credentials. Both empty:
	// the AWS credential chain (see Credentials).
	AccessKeyID     string
	SecretAccessKey string
	Bucket          string
	Region          string
	UseTLS          bool
	// UploadConcurrency is how many parts of one multipart upload go up at
	// once while the next part is read; below 1 means 1.
	UploadConcurrency int
	// SSE is the server-side encryption every write asks for: SSENone
	// (the bucket's default), SSES3 or SSEKMS with SSEKMSKeyID (empty: the
	// account's default KMS key).
	SSE         string
	SSEKMSKeyID string
	// WrapTransport, when set, wraps the client's HTTP transport, for
	// tracing (telemetry.HTTPTransport).
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// Server-side encryption modes of Opts.SSE.
const (
	SSENone = ""
	SSES3   = "SSE-S3"
	SSEKMS  = "SSE-KMS"
)

// Store is a bucket of an S3-compatible object store.
type Store struct {
	client *minio.Client
	bucket string
	region string
	// inFlight is Opts.UploadConcurrency, at least 1.
	inFlight int
	sse      encrypt.ServerSide // nil: none asked for
}

// Credentials returns the credentials opts describe: the static keys when
// either is set; otherwise the first of the AWS chain that has some: the
// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN),
// the shared credentials file (~/.aws/credentials, AWS_PROFILE), then the
// instance's role: IRSA's web identity (AWS_WEB_IDENTITY_TOKEN_FILE,
// AWS_ROLE_ARN), the ECS container endpoint or the EC2 metadata service.
// Temporary credentials are refreshed before they expire.
func Credentials(opts Opts) *credentials.Credentials {
	if opts.AccessKeyID != "" || opts.SecretAccessKey != "" {
		return credentials.NewStaticV4(opts.AccessKeyID, opts.SecretAccessKey, "")
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{Region: opts.Region},
	})
}

// serverSide returns the encryption opts ask for, nil for none.
func serverSide(opts Opts) (encrypt.ServerSide, error) {
	switch opts.SSE {
	case SSENone:
		if opts.SSEKMSKeyID != "" {
			return nil, fmt.Errorf("a KMS key id is set but the encryption is not %s", SSEKMS)
		}
		return nil, nil
	case SSES3:
		if opts.SSEKMSKeyID != "" {
			return nil, fmt.Errorf("a KMS key id is set but the encryption is %s, not %s", SSES3, SSEKMS)
		}
		return encrypt.NewSSE(), nil
	case SSEKMS:
		return encrypt.NewSSEKMS(opts.SSEKMSKeyID, nil)
	}
	return nil, fmt.Errorf("unknown server-side encryption %q (want empty, %s or %s)", opts.SSE, SSES3, SSEKMS)
}

// New returns a Store; it does not contact the server.
func New(opts Opts) (*Store, error) {
	sse, err := serverSide(opts)
	if err != nil {
		return nil, err
	}
	transport, err := minio.DefaultTransport(opts.UseTLS)
	if err != nil {
		return nil, err
	}
	transport.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	transport.ResponseHeaderTimeout = 30 * time.Second
	var rt http.RoundTripper = transport
	if opts.WrapTransport != nil {
		rt = opts.WrapTransport(transport)
	}
	client, err := minio.New(opts.Endpoint, &minio.Options{
		Creds:     Credentials(opts),
		Secure:    opts.UseTLS,
		Region:    opts.Region,
		Transport: rt,
		// Few retries: a caller waiting on a download should hear "try
		// again" in seconds, and a worker's job is retried by River anyway.
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("creating object store client: %w", err)
	}
	return &Store{client: client, bucket: opts.Bucket, region: opts.Region, sse: sse, inFlight: max(opts.UploadConcurrency, 1)}, nil
}

// Bucket returns the name of the Store's bucket.
func (s *Store) Bucket() string { return s.bucket }

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

// MetaSHA256 is the user metadata that holds an object's hex SHA-256, as
// Put stored it: S3 returns it as the X-Amz-Meta-Sha256 header of every GET
// and HEAD, so a download checks the bytes it is about to send against the
// report without an extra request.
const MetaSHA256 = "Sha256"

// TagSHA256 is the object tag that holds the hex SHA-256 of a file Put
// uploaded in parts (MetaSHA256 holds it for a file sent in one request).
const TagSHA256 = "sha256"

// Put uploads r, of unknown length, to key and returns its size and
// SHA-256, which it also stores with the object. A file of at most
// SinglePutMax bytes (most reports) goes up in one request, its digest
// known before the request starts and sent as its MetaSHA256 metadata; a
// larger one as a multipart upload of that first part and PartSize ones, up to the store's
// UploadConcurrency of them at once while the next one is read (so that
// the writer feeding r never waits for a part's request), and then gets
// its digest as its TagSHA256 object tag. Get returns either as
// ObjectInfo.SHA256.
//
// Why a tag: user metadata must be sent when an upload starts, and the
// digest of a streamed file is known only at its end. Metadata could be
// set afterwards only by copying the object onto itself, which MinIO does
// by rewriting it: measured on the 147 MB file of a 1M-row report, the
// copy took 0.7 to 1.3 s and 0.6 to 0.8 s of MinIO's CPU, the tag 2 to 4
// ms. The tag is set before Put returns, so before any report can refer to
// the key: a committed report's object always has its digest, and an
// object written again at its key (keys are written once) loses its tags
// as it would lose its metadata. If tagging fails, Put deletes the object
// and returns the error.
//
// Keys are written once (storage.ReportKey holds a run id); writing the
// same key again would replace the object.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, contentType string) (Written, error) {
	h := sha256.New()
	buf := partBufs.Get().(*[]byte)
	n, err := io.ReadFull(r, *buf)
	h.Write((*buf)[:n]) // hashes exactly what the upload sends
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// The whole file is in buf: one request instead of a multipart
		// upload's three and a copy. The request carries the digest as
		// its signed payload hash (X-Amz-Content-Sha256), which the server
		// checks against the body: over plain HTTP that replaces the
		// aws-chunked streaming signature, a second SHA-256 of the file
		// plus a signature per 64 KiB chunk on both sides.
		digest := hex.EncodeToString(h.Sum(nil))
		info, err := minio.Core{Client: s.client}.PutObject(ctx, s.bucket, key, bytes.NewReader((*buf)[:n]), int64(n), "", digest, minio.PutObjectOptions{
			ContentType:          contentType,
			UserMetadata:         map[string]string{MetaSHA256: digest},
			ServerSideEncryption: s.sse,
			DisableContentSha256: true, // no streaming signature: the digest above is the payload hash
		})
		if err != nil {
			// A failed request's body may still be read by the transport:
			// buf is left to the garbage collector, not reused.
			return Written{}, fmt.Errorf("uploading %s: %w", key, s.putError(ctx, err))
		}
		partBufs.Put(buf)
		return Written{Size: info.Size, SHA256: digest}, nil
	case err != nil: // r failed before any request was made
		partBufs.Put(buf)
		return Written{}, fmt.Errorf("uploading %s: %w", key, err)
	}
	up, err := s.putParts(ctx, key, contentType, buf, r, h)
	if err != nil {
		return Written{}, fmt.Errorf("uploading %s: %w", key, err)
	}
	w := Written{Size: up.Size, SHA256: hex.EncodeToString(h.Sum(nil))}
	if err := s.setDigest(ctx, key, up, w.SHA256); err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = s.Delete(dctx, key) // best effort; the sweep deletes what is left
		return Written{}, fmt.Errorf("storing the digest of %s: %w", key, translate(err))
	}
	return w, nil
}

// putError translates the error of a single PUT. A server may answer a PUT
// to a missing bucket with 404 and close the connection before it reads
// the body (versitygw does, for a body of megabytes); the client then sees
// only the reset, an ErrUnavailable. Such an error is checked against the
// bucket: a missing bucket is ErrNotFound, as the 404 said.
func (s *Store) putError(ctx context.Context, err error) error {
	err = translate(err)
	if !errors.Is(err, ErrUnavailable) {
		return err
	}
	if exists, berr := s.client.BucketExists(ctx, s.bucket); berr == nil && !exists {
		return fmt.Errorf("%w: bucket %s does not exist (the upload failed with: %v)", ErrNotFound, s.bucket, err)
	}
	return err
}

// putParts uploads first (a full SinglePutMax buffer) and the rest of r in PartSize parts as a
// multipart upload, hashing into h in file order as it reads, and returns
// what was stored. Up to s.inFlight parts go up at once while the next is read;
// each part's buffer is reused once its request succeeded. On
// error the upload is aborted (best effort: the sweep aborts what is left).
func (s *Store) putParts(ctx context.Context, key, contentType string, first *[]byte, r io.Reader, h io.Writer) (minio.UploadInfo, error) {
	core := minio.Core{Client: s.client}
	// Server-side encryption is asked for when the upload starts; the
	// parts of an SSE-S3 or SSE-KMS upload carry no header of their own.
	uploadID, err := core.NewMultipartUpload(ctx, s.bucket, key, minio.PutObjectOptions{ContentType: contentType, ServerSideEncryption: s.sse})
	if err != nil {
		partBufs.Put(first)
		return minio.UploadInfo{}, translate(err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		parts []minio.CompletePart
		slots = make(chan struct{}, s.inFlight)
		size  int64
		// The buffers uploaded, first's included: with the one being
		// read, at most inFlight+1 are ever held, and inFlight made.
		free = make(chan *[]byte, s.inFlight+1)
	)
	nextBuf := func() *[]byte {
		select {
		case b := <-free:
			*b = (*b)[:PartSize]
			return b
		default:
			b := make([]byte, PartSize)
			return &b
		}
	}
	defer func() {
		// first goes back to Put's pool; the others go with the upload.
		for {
			select {
			case b := <-free:
				if cap(*b) == SinglePutMax {
					*b = (*b)[:SinglePutMax]
					partBufs.Put(b)
				}
			default:
				return
			}
		}
	}()
	fail := func(err error) { cancel(err) }
	upload := func(number int, buf *[]byte, n int) {
		defer func() { <-slots }()
		part, err := core.PutObjectPart(ctx, s.bucket, key, uploadID, number, bytes.NewReader((*buf)[:n]), int64(n), minio.PutObjectPartOptions{})
		if err != nil {
			fail(translate(err)) // buf is left to the garbage collector
			return
		}
		free <- buf
		mu.Lock()
		parts = append(parts, minio.CompletePart{PartNumber: number, ETag: part.ETag})
		mu.Unlock()
	}
	buf, n := first, SinglePutMax
	for number := 1; ; number++ {
		size += int64(n)
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		partBuf, partLen := buf, n
		wg.Go(func() { upload(number, partBuf, partLen) })
		buf = nextBuf()
		n, err = io.ReadFull(r, *buf)
		h.Write((*buf)[:n])
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			if n == 0 {
				break
			}
			err = nil
			size += int64(n)
			slots <- struct{}{} // the last part; nothing to read meanwhile
			lastBuf, lastLen := buf, n
			wg.Go(func() { upload(number+1, lastBuf, lastLen) })
			break
		}
		if err != nil {
			fail(err)
			break
		}
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		s.abort(ctx, key, uploadID)
		return minio.UploadInfo{}, err
	}
	slices.SortFunc(parts, func(a, b minio.CompletePart) int { return a.PartNumber - b.PartNumber })
	info, err := core.CompleteMultipartUpload(ctx, s.bucket, key, uploadID, parts, minio.PutObjectOptions{ContentType: contentType})
	if err != nil {
		s.abort(ctx, key, uploadID)
		return minio.UploadInfo{}, translate(err)
	}
	if info.Size == 0 {
		info.Size = size // CompleteMultipartUpload's answer carries no size
	}
	return info, nil
}

// abort aborts a failed multipart upload, best effort.
func (s *Store) abort(ctx context.Context, key, uploadID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = s.AbortUpload(ctx, Upload{Key: key, UploadID: uploadID})
}

// setDigest tags the object just uploaded (the version the upload
// created, where the bucket keeps versions) with its digest.
func (s *Store) setDigest(ctx context.Context, key string, up minio.UploadInfo, digest string) error {
	t, err := tags.NewTags(map[string]string{TagSHA256: digest}, true)
	if err != nil {
		return err
	}
	return s.client.PutObjectTagging(ctx, s.bucket, key, t, minio.PutObjectTaggingOptions{VersionID: up.VersionID})
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key          string
	Size         int64
	ContentType  string
	LastModified time.Time
	ETag         string
	// SHA256 is the hex SHA-256 Put computed (its MetaSHA256 metadata or
	// TagSHA256 tag), or empty for an object stored some other way.
	SHA256 string
	// Encryption is the server-side encryption the store reports for the
	// object (AES256 for SSE-S3, aws:kms for SSE-KMS), or empty.
	Encryption string
}

// metaSHA256Header is the response header carrying MetaSHA256.
const metaSHA256Header = "X-Amz-Meta-" + MetaSHA256

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
	digest := header.Get(metaSHA256Header)
	if digest == "" {
		// A file uploaded in parts: its digest is a tag of the version
		// this GET reads. (Asked for whatever X-Amz-Tagging-Count says:
		// not every S3 server sends it.)
		if digest, err = s.digestTag(ctx, key, header.Get(amzVersionID)); err != nil {
			_ = body.Close()
			return nil, ObjectInfo{}, err
		}
	}
	return body, ObjectInfo{Key: key, Size: size, ContentType: info.ContentType, LastModified: info.LastModified, ETag: info.ETag,
		SHA256: digest, Encryption: header.Get(encrypt.SseGenericHeader)}, nil
}

// amzVersionID is the response header of the version a GET read.
const amzVersionID = "X-Amz-Version-Id"

// digestTag returns the TagSHA256 tag of an object's version ("" for the
// latest), or "" when it has none.
func (s *Store) digestTag(ctx context.Context, key, versionID string) (string, error) {
	t, err := s.client.GetObjectTagging(ctx, s.bucket, key, minio.GetObjectTaggingOptions{VersionID: versionID})
	if err != nil {
		return "", fmt.Errorf("reading the digest tag of %s: %w", key, translate(err))
	}
	return t.ToMap()[TagSHA256], nil
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

// List calls fn with the key and size of every object under prefix.
func (s *Store) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	return s.ListInfo(ctx, prefix, func(o ObjectInfo) error { return fn(o.Key, o.Size) })
}

// ListInfo calls fn with every object under prefix: key, size, last
// modification and ETag (not the content type or SHA256, which a listing
// does not return).
func (s *Store) ListInfo(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return translate(obj.Err)
		}
		if err := fn(ObjectInfo{Key: obj.Key, Size: obj.Size, LastModified: obj.LastModified, ETag: obj.ETag}); err != nil {
			return err
		}
	}
	return nil
}

// Upload is an incomplete multipart upload.
type Upload struct {
	Key       string
	UploadID  string
	Initiated time.Time
}

// ListUploads calls fn with every incomplete multipart upload under prefix:
// an upload whose writer died before completing or aborting it. The whole
// bucket is listed and filtered here: MinIO lists uploads for no prefix or
// for one exact key only, and returns none for a shorter prefix.
func (s *Store) ListUploads(ctx context.Context, prefix string, fn func(Upload) error) error {
	for u := range s.client.ListIncompleteUploads(ctx, s.bucket, "", true) {
		if u.Err != nil {
			return translate(u.Err)
		}
		if !strings.HasPrefix(u.Key, prefix) {
			continue
		}
		if err := fn(Upload{Key: u.Key, UploadID: u.UploadID, Initiated: u.Initiated}); err != nil {
			return err
		}
	}
	return nil
}

// AbortUpload aborts one incomplete multipart upload and frees its parts;
// an upload already gone is not an error. (minio-go's RemoveIncompleteUpload
// would abort every upload of the key, a fresh one too.)
func (s *Store) AbortUpload(ctx context.Context, u Upload) error {
	if err := (minio.Core{Client: s.client}).AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID); err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return nil
		}
		return fmt.Errorf("aborting the upload of %s: %w", u.Key, err)
	}
	return nil
}

// ReportsPrefix is the prefix of every report file's key.
const ReportsPrefix = "reports/"

// ReportKey is the object key of one run's file of a report. Each run of a
// report's job writes its own key, so no run can replace a file that
// another committed; the report row records which key is its file. It is
// built from ids the service generated, never from user input.
func ReportKey(orgID, applicationID, reportID, runID, format string) string {
	return ReportsPrefix + orgID + "/" + applicationID + "/" + reportID + "/" + runID + "." + format
}

// ReportIDOfKey returns the report id of a key under ReportsPrefix, for the
// run keys of ReportKey and for the older reports/org/app/report.format.
func ReportIDOfKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, ReportsPrefix)
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, "/")
	switch len(parts) {
	case 4: // org/app/report/run.format
		return parts[2], parts[2] != ""
	case 3: // org/app/report.format
		id, _, ok := strings.Cut(parts[2], ".")
		return id, ok && id != ""
	}
	return "", false
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
