// Package config reads Tally's settings from the environment, once, into a
// typed struct, and builds the process logger. Secrets are a Secret type that
// prints masked, so a logged Config never leaks them.
//
// The OpenTelemetry variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SDK_DISABLED,
// OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER and the other standard ones) are not
// part of Config: internal/telemetry hands them to the OpenTelemetry SDK,
// which reads them with its own defaults; README.md's Tracing section lists
// them.
package config

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Secret is a string that never prints itself.
type Secret string

// String masks the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "******"
}

// LogValue masks the secret in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText masks the secret in any text encoding.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the secret from the environment.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

// Reveal returns the secret itself, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// S3 is the object store's connection.
type S3 struct {
	Endpoint string `env:"ENDPOINT" envDefault:"127.0.0.1:9000"`
	// AccessKeyID and SecretAccessKey are static keys; both unset, the
	// credentials come from the AWS chain: AWS_* variables, the shared
	// credentials file, then the instance's role (IRSA, ECS, EC2).
	AccessKeyID     string `env:"ACCESS_KEY_ID"`
	SecretAccessKey Secret `env:"SECRET_ACCESS_KEY"`
	Bucket          string `env:"BUCKET" envDefault:"tally"`
	Region          string `env:"REGION" envDefault:"us-east-1"`
	UseTLS          bool   `env:"USE_TLS" envDefault:"false"`
	// SSE is the server-side encryption every write asks for: empty (the
	// bucket's default), SSE-S3, or SSE-KMS with SSEKMSKeyID (empty: the
	// account's default KMS key).
	SSE         string `env:"SSE"`
	SSEKMSKeyID string `env:"SSE_KMS_KEY_ID"`
}

// Environments of TALLY_ENV. Development relaxes what production requires
// (a pseudonym key).
const (
	EnvDevelopment = "development"
	EnvProduction  = "production"
)

// DevelopmentPseudonymKey is the pseudonym master key in development when
// none is configured. It is public: pseudonyms built with it protect nothing.
const DevelopmentPseudonymKey = "tally development pseudonym key: public, protects nothing"

// The built-in defaults that are development secrets: public, in this
// repository, fit for a laptop only. Outside development CheckSecrets
// refuses them (and DevelopmentPseudonymKey, and an ephemeral signing key).
const (
	// DevelopmentDatabaseURL is DATABASE_URL's default: the PostgreSQL
	// superuser on localhost without a password.
	DevelopmentDatabaseURL = "postgres://postgres@127.0.0.1:5432/tally?sslmode=disable"
	// DevelopmentS3SecretAccessKey is the local MinIO's secret key
	// (scripts/services.sh, compose.yaml). It is no default: unset keys
	// mean the AWS credential chain.
	DevelopmentS3SecretAccessKey = "tally-secret-key"
)

// FileVariables are the variables holding secrets. Each may instead name a
// file in <VAR>_FILE (a mounted Kubernetes or Docker secret): its contents,
// without one trailing newline, are the value; setting both is an error.
// TALLY_PSEUDONYM_KEY_FILE is its own: its further lines are retired keys.
var FileVariables = []string{
	"DATABASE_URL",
	"S3_ACCESS_KEY_ID",
	"S3_SECRET_ACCESS_KEY",
	"TALLY_ADMIN_USER",
	"TALLY_ADMIN_PASSWORD",
	"TALLY_PSEUDONYM_RETIRED_KEYS",
}

// Defaults of the settings that another package also falls back on when a
// field of its options is zero (api.Opts, worker.Opts). They are declared
// here only; LoadFrom starts from them, so they are not repeated as
// envDefault tags.
const (
	DefaultRequestTimeout       = 30 * time.Second
	DefaultCreateRatePerMinute  = 60.0
	DefaultLargeReportRows      = 200_000
	DefaultSmallConcurrency     = 4
	DefaultLargeConcurrency     = 1
	DefaultJobTimeout           = 15 * time.Minute
	DefaultShutdownTimeout      = 25 * time.Second
	DefaultMaxAttempts          = 5
	DefaultFetchPollInterval    = time.Second
	DefaultDownloadsPerUser     = 4
	DefaultDownloadsPerOrg      = 32
	DefaultDownloadMinRate      = 10 << 10 // bytes per second: 80 kbit/s; writes of rate × stall timeout = 300 KiB, capped at the 256 KiB copy buffer
	DefaultDownloadStallTimeout = 30 * time.Second
	DefaultSweepInterval        = time.Hour
	// DefaultChainInterval is how often each worker chains committed
	// activity events: an event is tamper-evident about this long after it
	// commits.
	DefaultChainInterval = time.Second
	// DefaultChainPendingGrace is the age above which tallyctl audit
	// verify calls an event not chained yet an error.
	DefaultChainPendingGrace = 5 * time.Minute
	// DefaultWaitsPerUser bounds the requests one user may hold open with
	// Prefer: wait at once; MaxWait is the longest wait honoured.
	DefaultWaitsPerUser = 20
	MaxWait             = 30 * time.Second
	// DefaultSweepGrace must exceed DefaultJobTimeout: a run may commit its
	// file up to its job timeout after it started.
	DefaultSweepGrace = time.Hour
	// DefaultWebhookTimeout bounds one webhook request, from dial to the
	// end of the answer.
	DefaultWebhookTimeout = 10 * time.Second
	// DefaultWebhookConcurrency is how many webhooks a worker sends at once.
	DefaultWebhookConcurrency = 4
	// WebhookRetryWindow is how long a webhook delivery is retried (with
	// exponential backoff) before it is failed; a rotated-out endpoint
	// secret keeps signing for as long, so that every delivery in flight at
	// the rotation still verifies with the secret its receiver knew.
	WebhookRetryWindow = 24 * time.Hour
	// WorkerStopGrace is how long a stopping worker waits for its jobs to
	// return once their contexts are canceled, after ShutdownTimeout: a
	// supervisor must allow ShutdownTimeout + WorkerStopGrace before it
	// kills the process (Kubernetes' terminationGracePeriodSeconds,
	// compose's stop_grace_period).
	WorkerStopGrace = 10 * time.Second
	// RescueMargin is added to the job timeout to get the time after which
	// River's rescuer takes a job back from a worker that vanished, when
	// TALLY_RESCUE_STUCK_JOBS_AFTER is unset.
	RescueMargin = time.Minute
)

// Config is every setting of the three binaries. Each reads what it needs.
// Fields without an envDefault tag default to the constants above.
type Config struct {
	// Env is development or production (the default).
	Env string `env:"TALLY_ENV" envDefault:"production"`

	DatabaseURL Secret `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/tally?sslmode=disable"`
	S3          S3     `envPrefix:"S3_"`

	// API.
	Port            int           `env:"PORT" envDefault:"8080"`
	PortalConfig    string        `env:"TALLY_PORTAL_CONFIG"`
	AdminUser       string        `env:"TALLY_ADMIN_USER"`
	AdminPassword   Secret        `env:"TALLY_ADMIN_PASSWORD"`
	RequestTimeout  time.Duration `env:"TALLY_REQUEST_TIMEOUT"`
	CreateRateLimit float64       `env:"TALLY_CREATE_RATE_PER_MINUTE"`
	APIMaxConns     int32         `env:"TALLY_API_DB_MAX_CONNS" envDefault:"16"`
	// TrustedProxies are the networks whose X-Forwarded-For the API
	// believes for the client address it records; empty means the peer
	// address is the client's.
	TrustedProxies []netip.Prefix `env:"TALLY_TRUSTED_PROXIES"`

	// Pseudonym keys (worker): the current master key, from the variable or
	// a file (its first line; further lines are retired keys), and retired
	// keys, comma-separated, still used to rebuild reports built with them.
	PseudonymKey         Secret `env:"TALLY_PSEUDONYM_KEY"`
	PseudonymKeyFile     string `env:"TALLY_PSEUDONYM_KEY_FILE"`
	PseudonymRetiredKeys Secret `env:"TALLY_PSEUDONYM_RETIRED_KEYS"`
	// AdminAddr, when set, is the address (host:port) of a listener of its
	// own for River UI and /metrics; the public port then answers 404 for
	// them.
	AdminAddr string `env:"TALLY_ADMIN_ADDR"`
	// Downloads stream outside request admission, at most DownloadsPerUser
	// and DownloadsPerOrg at once; a client taking in less than
	// DownloadMinRate bytes a second over DownloadStallTimeout is cut off.
	DownloadsPerUser     int           `env:"TALLY_DOWNLOADS_PER_USER"`
	DownloadsPerOrg      int           `env:"TALLY_DOWNLOADS_PER_ORG"`
	DownloadMinRate      int64         `env:"TALLY_DOWNLOAD_MIN_RATE"`
	DownloadStallTimeout time.Duration `env:"TALLY_DOWNLOAD_STALL_TIMEOUT"`
	// WaitsPerUser bounds the requests one user may hold open with
	// Prefer: wait at once (429 too_many_waits beyond).
	WaitsPerUser int `env:"TALLY_WAIT_PER_USER"`

	// Worker.
	MetricsPort       int           `env:"TALLY_METRICS_PORT" envDefault:"9090"`
	SmallConcurrency  int           `env:"TALLY_WORKER_CONCURRENCY"`
	LargeConcurrency  int           `env:"TALLY_WORKER_LARGE_CONCURRENCY"`
	LargeThreshold    int64         `env:"TALLY_LARGE_REPORT_ROWS"`
	JobTimeout        time.Duration `env:"TALLY_JOB_TIMEOUT"`
	ShutdownTimeout   time.Duration `env:"TALLY_SHUTDOWN_TIMEOUT"`
	MaxAttempts       int           `env:"TALLY_JOB_MAX_ATTEMPTS"`
	FetchPollInterval time.Duration `env:"TALLY_FETCH_POLL_INTERVAL"`
	// RescueStuckJobsAfter is how long a job may stay running before River's
	// rescuer hands it to another worker; unset means the job timeout plus
	// RescueMargin.
	RescueStuckJobsAfter time.Duration `env:"TALLY_RESCUE_STUCK_JOBS_AFTER"`
	// SweepInterval is how often sweep_objects deletes report files that no
	// committed report owns.
	SweepInterval time.Duration `env:"TALLY_SWEEP_INTERVAL"`
	// SweepGrace is the age below which the sweep keeps a file or upload
	// that a run in flight may still commit; it must exceed the job timeout.
	SweepGrace time.Duration `env:"TALLY_SWEEP_GRACE"`
	// ChainInterval is how often each worker appends committed activity
	// events to their organization's hash chain.
	ChainInterval time.Duration `env:"TALLY_CHAIN_INTERVAL"`
	// SigningKeysDir holds the PEM Ed25519 keys that sign report manifests
	// and activity checkpoints (see evidence.LoadKeys); SigningKeyFile is
	// one such key. Both unset: an ephemeral key, for development.
	SigningKeysDir string `env:"TALLY_SIGNING_KEYS_DIR"`
	SigningKeyFile string `env:"TALLY_SIGNING_KEY_FILE"`
	// ReportParallelism is how many parts of one report's file upload at
	// once (and how many ranges of a large scope are read at once); unset
	// means GOMAXPROCS, the cores this process may use.
	ReportParallelism int `env:"TALLY_REPORT_PARALLELISM"`
	// ReportSpillDir is where a large report's scope is sorted (a temporary
	// file, unlinked at once); empty means the system's temporary directory.
	ReportSpillDir string `env:"TALLY_REPORT_SPILL_DIR"`
	// ReportSpillMax is the most bytes one report's temporary file may
	// hold; a scope that needs more is read in ranges of the index instead.
	// Zero turns the temporary files off.
	ReportSpillMax int64 `env:"TALLY_REPORT_SPILL_MAX" envDefault:"1610612736"`
	// Pprof serves net/http/pprof on the worker's metrics port.
	Pprof bool `env:"TALLY_PPROF" envDefault:"false"`

	// Webhooks (worker, tallyctl). Outbound requests refuse loopback,
	// private, link-local, multicast and unspecified addresses unless
	// WebhookAllowPrivate is set or the address is in WebhookAllowedCIDRs.
	WebhookAllowPrivate bool           `env:"TALLY_WEBHOOK_ALLOW_PRIVATE"`
	WebhookAllowedCIDRs []netip.Prefix `env:"TALLY_WEBHOOK_ALLOWED_CIDRS"`
	WebhookTimeout      time.Duration  `env:"TALLY_WEBHOOK_TIMEOUT"`
	WebhookConcurrency  int            `env:"TALLY_WEBHOOK_CONCURRENCY"`

	LogLevel  string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"json"`
}

// Load parses the environment into a Config.
func Load() (*Config, error) {
	return LoadFrom(nil)
}

// LoadFrom parses the given environment (nil: the process environment).
func LoadFrom(environ map[string]string) (*Config, error) {
	cfg := Config{
		RequestTimeout:    DefaultRequestTimeout,
		CreateRateLimit:   DefaultCreateRatePerMinute,
		SmallConcurrency:  DefaultSmallConcurrency,
		LargeConcurrency:  DefaultLargeConcurrency,
		LargeThreshold:    DefaultLargeReportRows,
		JobTimeout:        DefaultJobTimeout,
		ShutdownTimeout:   DefaultShutdownTimeout,
		MaxAttempts:       DefaultMaxAttempts,
		FetchPollInterval: DefaultFetchPollInterval,
		SweepInterval:     DefaultSweepInterval,
		SweepGrace:        DefaultSweepGrace,
		ChainInterval:     DefaultChainInterval,

		DownloadsPerUser:     DefaultDownloadsPerUser,
		DownloadsPerOrg:      DefaultDownloadsPerOrg,
		DownloadMinRate:      DefaultDownloadMinRate,
		DownloadStallTimeout: DefaultDownloadStallTimeout,
		WaitsPerUser:         DefaultWaitsPerUser,

		WebhookTimeout:     DefaultWebhookTimeout,
		WebhookConcurrency: DefaultWebhookConcurrency,
	}
	if environ == nil {
		environ = env.ToMap(os.Environ())
	}
	environ, err := readFileVariables(environ)
	if err != nil {
		return nil, err
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	if _, err := parseLevel(cfg.LogLevel); err != nil {
		return nil, err
	}
	switch cfg.LogFormat {
	case "json", "text":
	default:
		return nil, fmt.Errorf("LOG_FORMAT must be json or text, not %q", cfg.LogFormat)
	}
	if cfg.Port <= 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("PORT must be between 1 and 65535, not %d", cfg.Port)
	}
	if (cfg.AdminUser == "") != (cfg.AdminPassword == "") {
		return nil, fmt.Errorf("set both TALLY_ADMIN_USER and TALLY_ADMIN_PASSWORD, or neither")
	}
	if cfg.Env != EnvDevelopment && cfg.Env != EnvProduction {
		return nil, fmt.Errorf("TALLY_ENV must be development or production, not %q", cfg.Env)
	}
	if cfg.PseudonymKey != "" && cfg.PseudonymKeyFile != "" {
		return nil, fmt.Errorf("set TALLY_PSEUDONYM_KEY or TALLY_PSEUDONYM_KEY_FILE, not both")
	}
	if cfg.ChainInterval <= 0 {
		return nil, fmt.Errorf("TALLY_CHAIN_INTERVAL must be positive, not %s", cfg.ChainInterval)
	}
	if cfg.DownloadsPerUser < 1 || cfg.DownloadsPerOrg < 1 || cfg.DownloadMinRate < 1 || cfg.DownloadStallTimeout <= 0 {
		return nil, fmt.Errorf("TALLY_DOWNLOADS_PER_USER, TALLY_DOWNLOADS_PER_ORG, TALLY_DOWNLOAD_MIN_RATE and TALLY_DOWNLOAD_STALL_TIMEOUT must be positive")
	}
	if cfg.WaitsPerUser < 1 {
		return nil, fmt.Errorf("TALLY_WAIT_PER_USER must be positive")
	}
	if cfg.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.AdminAddr); err != nil {
			return nil, fmt.Errorf("TALLY_ADMIN_ADDR must be host:port (host may be empty), not %q", cfg.AdminAddr)
		}
	}
	switch {
	case cfg.S3.SSE != "" && cfg.S3.SSE != "SSE-S3" && cfg.S3.SSE != "SSE-KMS":
		return nil, fmt.Errorf("S3_SSE must be empty, SSE-S3 or SSE-KMS, not %q", cfg.S3.SSE)
	case cfg.S3.SSEKMSKeyID != "" && cfg.S3.SSE != "SSE-KMS":
		return nil, fmt.Errorf("S3_SSE_KMS_KEY_ID needs S3_SSE=SSE-KMS")
	case (cfg.S3.AccessKeyID == "") != (cfg.S3.SecretAccessKey == ""):
		return nil, fmt.Errorf("set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither (then the AWS credential chain applies)")
	}
	if cfg.SmallConcurrency < 1 || cfg.LargeConcurrency < 1 || cfg.WebhookConcurrency < 1 {
		return nil, fmt.Errorf("worker concurrency must be at least 1")
	}
	if cfg.ReportParallelism < 0 {
		return nil, fmt.Errorf("TALLY_REPORT_PARALLELISM must be positive, not %d", cfg.ReportParallelism)
	}
	if cfg.ReportSpillMax < 0 {
		return nil, fmt.Errorf("TALLY_REPORT_SPILL_MAX must be 0 (no temporary files) or a size in bytes, not %d", cfg.ReportSpillMax)
	}
	if cfg.ReportParallelism == 0 {
		cfg.ReportParallelism = runtime.GOMAXPROCS(0)
	}
	if cfg.WebhookTimeout <= 0 {
		return nil, fmt.Errorf("TALLY_WEBHOOK_TIMEOUT must be positive")
	}
	return &cfg, nil
}

// readFileVariables returns environ with each of FileVariables whose
// <VAR>_FILE is set read from that file. environ itself is not changed.
func readFileVariables(environ map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(environ))
	for k, v := range environ {
		out[k] = v
	}
	for _, name := range FileVariables {
		path := environ[name+"_FILE"]
		if path == "" {
			continue
		}
		if environ[name] != "" {
			return nil, fmt.Errorf("set %s or %s_FILE, not both", name, name)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading %s_FILE: %w", name, err)
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			return nil, fmt.Errorf("%s_FILE %s is empty", name, path)
		}
		out[name] = v
	}
	return out, nil
}

// CheckSecrets refuses, outside development, the development secrets built
// into Tally: DevelopmentDatabaseURL, DevelopmentS3SecretAccessKey and
// DevelopmentPseudonymKey, whether they come from a default or were set
// explicitly. The API and the worker call it at start; it names every
// variable to set.
func (c *Config) CheckSecrets() error {
	if c.Env == EnvDevelopment {
		return nil
	}
	var bad []string
	if c.DatabaseURL.Reveal() == DevelopmentDatabaseURL {
		bad = append(bad, "DATABASE_URL (the passwordless local superuser)")
	}
	if c.S3.SecretAccessKey.Reveal() == DevelopmentS3SecretAccessKey {
		bad = append(bad, "S3_SECRET_ACCESS_KEY (the local MinIO's key)")
	}
	if c.PseudonymKey.Reveal() == DevelopmentPseudonymKey {
		bad = append(bad, "TALLY_PSEUDONYM_KEY (the public development key)")
	}
	if len(bad) > 0 {
		return fmt.Errorf("refusing to start with development secrets outside development (TALLY_ENV=%s): set %s, or TALLY_ENV=development on a laptop",
			c.Env, strings.Join(bad, ", "))
	}
	return nil
}

// PseudonymKeys returns the pseudonym master keys: the current one and the
// retired ones. Outside development a key is required; in development,
// without one, the current key is DevelopmentPseudonymKey and dev is true.
func (c *Config) PseudonymKeys() (current []byte, retired [][]byte, dev bool, err error) {
	var keys []string
	switch {
	case c.PseudonymKeyFile != "":
		b, err := os.ReadFile(c.PseudonymKeyFile)
		if err != nil {
			return nil, nil, false, fmt.Errorf("reading TALLY_PSEUDONYM_KEY_FILE: %w", err)
		}
		for line := range strings.Lines(string(b)) {
			if line = strings.TrimRight(line, "\r\n"); line != "" {
				keys = append(keys, line)
			}
		}
		if len(keys) == 0 {
			return nil, nil, false, fmt.Errorf("TALLY_PSEUDONYM_KEY_FILE %s holds no key", c.PseudonymKeyFile)
		}
	case c.PseudonymKey != "":
		keys = []string{c.PseudonymKey.Reveal()}
	case c.Env == EnvDevelopment:
		keys, dev = []string{DevelopmentPseudonymKey}, true
	default:
		return nil, nil, false, fmt.Errorf("TALLY_PSEUDONYM_KEY or TALLY_PSEUDONYM_KEY_FILE is required outside development (TALLY_ENV=%s)", c.Env)
	}
	if r := c.PseudonymRetiredKeys.Reveal(); r != "" {
		keys = append(keys, strings.Split(r, ",")...)
	}
	if keys[0] == DevelopmentPseudonymKey && c.Env != EnvDevelopment {
		return nil, nil, false, fmt.Errorf("the public development pseudonym key is refused outside development (TALLY_ENV=%s): set a key of your own", c.Env)
	}
	current = []byte(keys[0])
	for _, k := range keys[1:] {
		retired = append(retired, []byte(k))
	}
	return current, retired, dev, nil
}

// NewLogger returns the process logger described by LOG_LEVEL and LOG_FORMAT.
func (c *Config) NewLogger(w io.Writer) *slog.Logger {
	return NewLogger(w, c.LogLevel, c.LogFormat)
}

// NewLogger returns a logger writing level and above to w as JSON or text.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	lvl, err := parseLevel(level)
	if err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}
