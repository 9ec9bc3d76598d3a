package tallytest

import (
	"context"
	"errors"
	"fmt"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/tally-compliance/tally/storage"
)

// Stat returns an object's metadata, or an error wrapping storage.ErrNotFound
// when there is no such object. It asks for the object and closes the answer
// unread: tests need to know whether a file exists, production never does.
func Stat(ctx context.Context, store *storage.Store, key string) (storage.ObjectInfo, error) {
	rc, info, err := store.Get(ctx, key, 0, -1)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return info, rc.Close()
}

// removeBucket deletes every object of the bucket opts names, then the bucket.
func removeBucket(ctx context.Context, opts storage.Opts) error {
	store, err := storage.New(opts)
	if err != nil {
		return err
	}
	err = store.List(ctx, "", func(key string, _ int64) error { return store.Delete(ctx, key) })
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("emptying bucket %s: %w", opts.Bucket, err)
	}
	client, err := minio.New(opts.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(opts.AccessKeyID, opts.SecretAccessKey, ""),
		Secure: opts.UseTLS,
		Region: opts.Region,
	})
	if err != nil {
		return err
	}
	if err := client.RemoveBucket(ctx, opts.Bucket); err != nil && minio.ToErrorResponse(err).Code != "NoSuchBucket" {
		return fmt.Errorf("removing bucket %s: %w", opts.Bucket, err)
	}
	return nil
}
