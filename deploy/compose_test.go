// Package deploy holds the deployment files' tests: compose.yaml (at the
// repository root) and the Prometheus alert rules under deploy/prometheus
// are checked here without Docker or Prometheus.
package deploy

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/internal/tallytest"
)

// loadCompose loads ../compose.yaml with the compose-spec loader as
// `docker compose` would, in an empty environment: every ${VAR:-default}
// takes its default.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  "..",
		ConfigFiles: []types.ConfigFile{{Filename: "../compose.yaml"}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("tally", true) })
	if err != nil {
		t.Fatalf("loading compose.yaml: %v", err)
	}
	return project
}

// oneShot reports whether a service runs once to completion: it never
// restarts and another service waits for it to complete.
func oneShot(p *types.Project, name string) bool {
	if p.Services[name].Restart != types.RestartPolicyNo {
		return false
	}
	for _, s := range p.Services {
		if d, ok := s.DependsOn[name]; ok && d.Condition == types.ServiceConditionCompletedSuccessfully {
			return true
		}
	}
	return false
}

// splitImage returns an image reference's repository, fully qualified
// (Docker Hub's short names get docker.io/ and library/), and its tag or
// digest.
func splitImage(ref string) (repo, tag, digest string) {
	repo, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	first, _, hasSlash := strings.Cut(repo, "/")
	if !hasSlash || !strings.ContainsAny(first, ".:") && first != "localhost" {
		if !hasSlash {
			repo = "library/" + repo
		}
		repo = "docker.io/" + repo
	}
	repo = strings.Replace(repo, "index.docker.io/", "docker.io/", 1)
	return repo, tag, digest
}

func TestSplitImage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ ref, repo, tag, digest string }{
		{"postgres:15.20-bookworm", "docker.io/library/postgres", "15.20-bookworm", ""},
		{"minio/minio", "docker.io/minio/minio", "", ""},
		{"index.docker.io/minio/mc:latest", "docker.io/minio/mc", "latest", ""},
		{"quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", "quay.io/minio/minio", "RELEASE.2025-09-07T16-13-09Z", ""},
		{"localhost:5000/tally@sha256:abc", "localhost:5000/tally", "", "sha256:abc"},
	} {
		repo, tag, digest := splitImage(tc.ref)
		if repo != tc.repo || tag != tc.tag || digest != tc.digest {
			t.Errorf("splitImage(%q) = %q, %q, %q; want %q, %q, %q", tc.ref, repo, tag, digest, tc.repo, tc.tag, tc.digest)
		}
	}
}

// exactTag matches the tags taken as pinned: a major.minor version (a bare
// major such as postgres:15 moves with every minor release) or a MinIO
// release date.
var exactTag = regexp.MustCompile(`^v?[0-9]+\.[0-9]+|^RELEASE\.[0-9]{4}-`)

// TestComposeImagesArePinnedAndPullable: every image that compose pulls
// names an exact tag or a digest (never latest), none comes from the
// Docker Hub repositories MinIO deleted, no mc container remains, and
// PostgreSQL and MinIO are the images the test harness runs.
func TestComposeImagesArePinnedAndPullable(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	for name, s := range p.Services {
		if s.Build != nil {
			continue // built here from the Dockerfile; its image is the local name
		}
		repo, tag, digest := splitImage(s.Image)
		switch {
		case s.Image == "":
			t.Errorf("service %s has neither an image nor a build", name)
		case digest == "" && !exactTag.MatchString(tag):
			t.Errorf("service %s: image %q is not pinned to an exact version tag (like 15.20-bookworm or RELEASE.2025-…) or a digest", name, s.Image)
		case strings.HasPrefix(repo, "docker.io/minio/"):
			t.Errorf("service %s: image %q is on Docker Hub's minio/*, deleted in September 2026; use quay.io/minio/*", name, s.Image)
		case strings.HasSuffix(repo, "/mc"):
			t.Errorf("service %s runs mc (%q): the bucket is created by tallyctl storage init", name, s.Image)
		}
	}
	for name, want := range map[string]string{"postgres": tallytest.PostgresImage, "minio": tallytest.MinIOImage} {
		if got := p.Services[name].Image; got != want {
			t.Errorf("service %s: image %q, want %q (tallytest's, so that tests and compose run the same)", name, got, want)
		}
	}
}

// TestComposeLongRunningServicesHaveHealthChecks: everything but the
// one-shot jobs restarts and has a health check; the one-shots are the
// migrations and the bucket creation, and the API and workers start only
// after both completed.
func TestComposeLongRunningServicesHaveHealthChecks(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	var oneShots []string
	for name, s := range p.Services {
		if oneShot(p, name) {
			oneShots = append(oneShots, name)
			continue
		}
		if s.Restart == "" || s.Restart == types.RestartPolicyNo {
			t.Errorf("long-running service %s has restart %q", name, s.Restart)
		}
		if hc := s.HealthCheck; hc == nil || hc.Disable || len(hc.Test) == 0 {
			t.Errorf("long-running service %s has no health check", name)
		}
	}
	slices.Sort(oneShots)
	if want := []string{"migrate", "storage-init"}; !slices.Equal(oneShots, want) {
		t.Errorf("one-shot services %v, want %v", oneShots, want)
	}
	if got := p.Services["migrate"].Command; !slices.Equal(got, types.ShellCommand{"tallyctl", "migrate"}) {
		t.Errorf("migrate runs %q, want tallyctl migrate", got)
	}
	if got := p.Services["storage-init"].Command; !slices.Equal(got, types.ShellCommand{"tallyctl", "storage", "init"}) {
		t.Errorf("storage-init runs %q, want tallyctl storage init", got)
	}
	for _, name := range []string{"api", "worker"} {
		for _, dep := range []string{"migrate", "storage-init"} {
			if c := p.Services[name].DependsOn[dep].Condition; c != types.ServiceConditionCompletedSuccessfully {
				t.Errorf("%s depends on %s with condition %q, want %s", name, dep, c, types.ServiceConditionCompletedSuccessfully)
			}
		}
	}
}

// TestComposeStopGraceExceedsShutdown: compose sends SIGKILL after
// stop_grace_period, so the worker's must exceed River's soft stop plus the
// grace for cancelled jobs to return, and the API's its HTTP shutdown, at
// the configuration the services get from compose.
func TestComposeStopGraceExceedsShutdown(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	for name, need := range map[string]time.Duration{
		"worker": config.DefaultShutdownTimeout + config.WorkerStopGrace,
		"api":    config.DefaultShutdownTimeout,
	} {
		s := p.Services[name]
		env := map[string]string{}
		for k, v := range s.Environment {
			if v != nil {
				env[k] = *v
			}
		}
		cfg, err := config.LoadFrom(env)
		if err != nil {
			t.Fatalf("service %s: its environment is not a valid configuration: %v", name, err)
		}
		if cfg.ShutdownTimeout != config.DefaultShutdownTimeout {
			need += cfg.ShutdownTimeout - config.DefaultShutdownTimeout
		}
		var got time.Duration
		if s.StopGracePeriod != nil {
			got = time.Duration(*s.StopGracePeriod)
		}
		if got <= need {
			t.Errorf("service %s: stop_grace_period %s, want more than %s", name, got, need)
		}
	}
}
