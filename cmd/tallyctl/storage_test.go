package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/storage"
)

// runStorage executes tallyctl with args against the object store opts
// names (and no database).
func runStorage(t *testing.T, opts storage.Opts, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	d := &deps{
		stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, logger: tallytest.Logger(t),
		openStore: func() (*storage.Store, error) { return storage.New(opts) },
	}
	root := newRootCmd(d)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return stdout.String(), err
}

// TestStorageInitCreatesTheBucketOnceAndAgainChangesNothing: the first run
// creates the bucket, the second finds it and succeeds, leaving an object
// already there in place.
func TestStorageInitCreatesTheBucketOnceAndAgainChangesNothing(t *testing.T) {
	t.Parallel()
	opts := tallytest.S3OptsNoBucket(t)
	store, err := storage.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.Ping(ctx); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("before init: Ping = %v, want ErrNotFound", err)
	}

	out, err := runStorage(t, opts, "storage", "init")
	if err != nil {
		t.Fatalf("storage init: %v", err)
	}
	if want := "bucket " + opts.Bucket + " ready\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if err := store.Ping(ctx); err != nil {
		t.Fatalf("after init: Ping = %v", err)
	}
	if _, err := store.Put(ctx, "kept", strings.NewReader("kept"), "text/plain"); err != nil {
		t.Fatal(err)
	}

	if _, err := runStorage(t, opts, "storage", "init"); err != nil {
		t.Fatalf("storage init again: %v", err)
	}
	if _, err := tallytest.Stat(ctx, store, "kept"); err != nil {
		t.Errorf("object after the second init: %v", err)
	}
}

// TestStorageInitFailsWithWrongCredentials: init is also the access check,
// so bad credentials fail it instead of passing silently.
func TestStorageInitFailsWithWrongCredentials(t *testing.T) {
	t.Parallel()
	opts := tallytest.S3Opts(t)
	opts.SecretAccessKey = "not-the-secret"
	if _, err := runStorage(t, opts, "storage", "init"); err == nil {
		t.Fatal("storage init with a wrong secret succeeded")
	}
}
