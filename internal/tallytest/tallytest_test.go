package tallytest

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/storage"
)

// TestDBIsFreshMigratedAndIsolated: each call gets its own migrated
// database; a write in one is invisible in the other.
func TestDBIsFreshMigratedAndIsolated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := DB(t), DB(t)
	if _, err := db.CreateOrganization(ctx, a, "only in a"); err != nil {
		t.Fatal(err)
	}
	var na, nb int
	if err := a.QueryRow(ctx, `SELECT count(*) FROM organizations`).Scan(&na); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(ctx, `SELECT count(*) FROM organizations`).Scan(&nb); err != nil {
		t.Fatal(err)
	}
	if na != 1 || nb != 0 {
		t.Fatalf("organizations: a=%d b=%d, want 1 and 0", na, nb)
	}
	var river bool
	if err := b.QueryRow(ctx, `SELECT to_regclass('river_job') IS NOT NULL`).Scan(&river); err != nil || !river {
		t.Fatalf("River's tables missing from the clone (err %v)", err)
	}
}

// TestStoreHasOwnBucket: each call gets a distinct bucket that works, and
// the bucket is gone after the test.
func TestStoreHasOwnBucket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var bucket string
	var opts storage.Opts
	t.Run("use", func(t *testing.T) {
		o1, o2 := S3Opts(t), S3Opts(t)
		if o1.Bucket == o2.Bucket {
			t.Fatalf("two stores share bucket %s", o1.Bucket)
		}
		s1, err := storage.New(o1)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := storage.New(o2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s1.Put(ctx, "k", strings.NewReader("hello"), "text/plain"); err != nil {
			t.Fatal(err)
		}
		rc, _, err := s1.Get(ctx, "k", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, []byte("hello")) {
			t.Fatalf("read %q", got)
		}
		if _, _, err := s2.Get(ctx, "k", 0, -1); err == nil {
			t.Fatal("object visible in another test's bucket")
		}
		bucket = o1.Bucket
		opts = GetServices(t).S3
	})
	opts.Bucket = bucket
	s, err := storage.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatalf("bucket %s still exists after its test", bucket)
	}
}

// TestNoServicesFailsNamingBothWays: with no environment and no Docker the
// harness refuses with a message that names both ways to get services.
func TestNoServicesFailsNamingBothWays(t *testing.T) {
	t.Setenv("TALLY_TEST_DATABASE_URL", "")
	t.Setenv("TALLY_TEST_S3_ENDPOINT", "")
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	t.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	_, err := resolveServices()
	if err == nil {
		t.Skip("a Docker engine answered; the no-services path cannot be shown here")
	}
	msg := err.Error()
	for _, want := range []string{"TALLY_TEST_DATABASE_URL", "TALLY_TEST_S3_ENDPOINT", "make services", "Docker"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}

	t.Setenv("TALLY_TEST_DATABASE_URL", "postgres://x")
	if _, err := resolveServices(); err == nil || !strings.Contains(err.Error(), "set both") {
		t.Errorf("half-set environment: %v", err)
	}
}
