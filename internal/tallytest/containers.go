package tallytest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcminio "github.com/testcontainers/testcontainers-go/modules/minio"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"

	"github.com/tally-compliance/tally/storage"
)

// The images the harness runs, and compose.yaml's defaults too
// (deploy/compose_test.go checks that they agree): exact tags, PostgreSQL at
// the minor version CI's Debian cluster runs, MinIO from quay.io, where its
// last community image, RELEASE.2025-09-07T16-13-09Z, stays frozen (Docker
// Hub's minio/minio is gone).
const (
	PostgresImage = "postgres:15.20-bookworm"
	MinIOImage    = "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
)

// startContainers runs PostgreSQL and MinIO with testcontainers-go when a
// Docker engine answers. Ryuk removes the containers when the test binary
// exits.
func startContainers() (*Services, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		return nil, fmt.Errorf("%s (Docker: %v)", noServices, err)
	}
	defer provider.Close()
	if err := provider.Health(ctx); err != nil {
		return nil, fmt.Errorf("%s (Docker: %v)", noServices, err)
	}

	pg, err := tcpostgres.Run(ctx, PostgresImage,
		tcpostgres.WithDatabase("tally_test"),
		tcpostgres.WithUsername("postgres"),
		tcpostgres.WithPassword("postgres"),
		tcpostgres.BasicWaitStrategies(),
	)
	if err != nil {
		return nil, fmt.Errorf("starting postgres container: %w", err)
	}
	dbURL, err := pg.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		return nil, err
	}

	mc, err := tcminio.Run(ctx, MinIOImage,
		tcminio.WithUsername("tally"), tcminio.WithPassword("tally-secret-key"))
	if err != nil {
		return nil, fmt.Errorf("starting minio container: %w", err)
	}
	endpoint, err := mc.ConnectionString(ctx)
	if err != nil {
		return nil, err
	}
	endpoint = strings.TrimPrefix(strings.TrimPrefix(endpoint, "http://"), "https://")
	if endpoint == "" {
		return nil, errors.New("minio container has no endpoint")
	}
	return &Services{
		DatabaseURL: dbURL,
		S3: storage.Opts{
			Endpoint: endpoint, AccessKeyID: "tally", SecretAccessKey: "tally-secret-key", Region: "us-east-1",
		},
	}, nil
}
