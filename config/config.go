// Package config reads Tally's settings from the environment, once, into a
// typed struct, and builds the process logger. Secrets are a Secret type that
// prints masked, so a logged Config never leaks them.
package config

import (
	"fmt"
	"io"
	"log/slog"
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
	Endpoint        string `env:"ENDPOINT" envDefault:"127.0.0.1:9000"`
	AccessKeyID     string `env:"ACCESS_KEY_ID" envDefault:"tally"`
	SecretAccessKey Secret `env:"SECRET_ACCESS_KEY" envDefault:"tally-secret-key"`
	Bucket          string `env:"BUCKET" envDefault:"tally"`
	Region          string `env:"REGION" envDefault:"us-east-1"`
	UseTLS          bool   `env:"USE_TLS" envDefault:"false"`
}

// Defaults of the settings that another package also falls back on when a
// field of its options is zero (api.Opts, worker.Opts). They are declared
// here only; LoadFrom starts from them, so they are not repeated as
// envDefault tags.
const (
	DefaultRequestTimeout      = 30 * time.Second
	DefaultCreateRatePerMinute = 60.0
	DefaultLargeReportRows     = 200_000
	DefaultSmallConcurrency    = 4
	DefaultLargeConcurrency    = 1
	DefaultJobTimeout          = 15 * time.Minute
	DefaultShutdownTimeout     = 25 * time.Second
	DefaultMaxAttempts         = 5
	DefaultFetchPollInterval   = time.Second
	// RescueMargin is added to the job timeout to get the time after which
	// River's rescuer takes a job back from a worker that vanished, when
	// TALLY_RESCUE_STUCK_JOBS_AFTER is unset.
	RescueMargin = time.Minute
)

// Config is every setting of the three binaries. Each reads what it needs.
// Fields without an envDefault tag default to the constants above.
type Config struct {
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
	// SigningKeysDir holds the PEM Ed25519 keys that sign report manifests
	// and activity checkpoints (see evidence.LoadKeys); SigningKeyFile is
	// one such key. Both unset: an ephemeral key, for development.
	SigningKeysDir string `env:"TALLY_SIGNING_KEYS_DIR"`
	SigningKeyFile string `env:"TALLY_SIGNING_KEY_FILE"`

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
	}
	opts := env.Options{}
	if environ != nil {
		opts.Environment = environ
	}
	if err := env.ParseWithOptions(&cfg, opts); err != nil {
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
	if cfg.SmallConcurrency < 1 || cfg.LargeConcurrency < 1 {
		return nil, fmt.Errorf("worker concurrency must be at least 1")
	}
	return &cfg, nil
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
