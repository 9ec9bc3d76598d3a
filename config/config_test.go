package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFrom(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 8080 || cfg.S3.Bucket != "tally" || cfg.JobTimeout != 15*time.Minute || cfg.LogFormat != "json" ||
		cfg.SmallConcurrency != 4 || cfg.AdminUser != "" || cfg.AdminAddr != "" ||
		cfg.SweepInterval != time.Hour || cfg.SweepGrace != time.Hour {
		t.Errorf("defaults = %+v", cfg)
	}
	// No static S3 keys by default: the AWS credential chain applies, and
	// no encryption header is sent.
	if cfg.S3.AccessKeyID != "" || cfg.S3.SecretAccessKey != "" || cfg.S3.SSE != "" {
		t.Errorf("S3 defaults = %+v, want no keys and no SSE", cfg.S3)
	}
	want := Config{
		RequestTimeout: DefaultRequestTimeout, CreateRateLimit: DefaultCreateRatePerMinute,
		SmallConcurrency: DefaultSmallConcurrency, LargeConcurrency: DefaultLargeConcurrency,
		LargeThreshold: DefaultLargeReportRows, JobTimeout: DefaultJobTimeout, ShutdownTimeout: DefaultShutdownTimeout,
		MaxAttempts: DefaultMaxAttempts, FetchPollInterval: DefaultFetchPollInterval,
		DownloadsPerUser: DefaultDownloadsPerUser, DownloadsPerOrg: DefaultDownloadsPerOrg,
		DownloadMinRate: DefaultDownloadMinRate, DownloadStallTimeout: DefaultDownloadStallTimeout,
	}
	got := Config{
		RequestTimeout: cfg.RequestTimeout, CreateRateLimit: cfg.CreateRateLimit,
		SmallConcurrency: cfg.SmallConcurrency, LargeConcurrency: cfg.LargeConcurrency,
		LargeThreshold: cfg.LargeThreshold, JobTimeout: cfg.JobTimeout, ShutdownTimeout: cfg.ShutdownTimeout,
		MaxAttempts: cfg.MaxAttempts, FetchPollInterval: cfg.FetchPollInterval,
		DownloadsPerUser: cfg.DownloadsPerUser, DownloadsPerOrg: cfg.DownloadsPerOrg,
		DownloadMinRate: cfg.DownloadMinRate, DownloadStallTimeout: cfg.DownloadStallTimeout,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults = %+v, want the Default constants %+v", got, want)
	}
}

// TestLoadOverridesDefaults: a variable that is set wins over the Default
// constant, and one set empty keeps it.
func TestLoadOverridesDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFrom(map[string]string{"TALLY_JOB_TIMEOUT": "2m", "TALLY_JOB_MAX_ATTEMPTS": "", "TALLY_LARGE_REPORT_ROWS": "10"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.JobTimeout != 2*time.Minute || cfg.MaxAttempts != DefaultMaxAttempts || cfg.LargeThreshold != 10 {
		t.Errorf("JobTimeout %v, MaxAttempts %d, LargeThreshold %d; want 2m0s, %d, 10",
			cfg.JobTimeout, cfg.MaxAttempts, cfg.LargeThreshold, DefaultMaxAttempts)
	}
}

func TestLoadRejects(t *testing.T) {
	t.Parallel()
	tests := map[string]map[string]string{
		"BadPort":       {"PORT": "70000"},
		"PortNotNumber": {"PORT": "http"},
		"BadLevel":      {"LOG_LEVEL": "loud"},
		"BadFormat":     {"LOG_FORMAT": "xml"},
		"HalfAdmin":     {"TALLY_ADMIN_USER": "admin"},
		"BadDuration":   {"TALLY_JOB_TIMEOUT": "soon"},
		"ZeroWorkers":   {"TALLY_WORKER_CONCURRENCY": "0"},
		"BadTLSBoolean": {"S3_USE_TLS": "maybe"},
		"ZeroDownloads": {"TALLY_DOWNLOADS_PER_USER": "0"},
		"NoStallTime":   {"TALLY_DOWNLOAD_STALL_TIMEOUT": "0s"},
		"AdminAddrPort": {"TALLY_ADMIN_ADDR": "9091"},
		"UnknownSSE":    {"S3_SSE": "AES256"},
		"KMSKeyNoKMS":   {"S3_SSE": "SSE-S3", "S3_SSE_KMS_KEY_ID": "alias/tally"},
		"HalfS3Keys":    {"S3_ACCESS_KEY_ID": "id"},
	}
	for name, env := range tests {
		if _, err := LoadFrom(env); err == nil {
			t.Errorf("%s: no error for %v", name, env)
		}
	}
}

// TestSecretsMasked: a logged or printed Config never shows a secret.
func TestSecretsMasked(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFrom(map[string]string{
		"DATABASE_URL": "postgres://u:db-pass-123@h/d", "S3_ACCESS_KEY_ID": "id", "S3_SECRET_ACCESS_KEY": "s3-secret-456",
		"TALLY_ADMIN_USER": "admin", "TALLY_ADMIN_PASSWORD": "admin-pass-789", "TALLY_PSEUDONYM_KEY": "pseudo-key-000", "TALLY_PSEUDONYM_RETIRED_KEYS": "pseudo-old-111",
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", slog.Any("config", cfg))
	out := buf.String() + fmt.Sprintf("%v %+v", cfg, cfg)
	for _, secret := range []string{"db-pass-123", "s3-secret-456", "admin-pass-789", "pseudo-key-000", "pseudo-old-111"} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q leaked: %s", secret, out)
		}
	}
	if cfg.AdminPassword.Reveal() != "admin-pass-789" {
		t.Error("Reveal does not return the secret")
	}
}

func TestPortal(t *testing.T) {
	t.Parallel()
	p, err := LoadPortal("")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.TypeNames(), ","); got != "activity_log,case_attestation,transaction_summary,transaction_summary_xlsx" {
		t.Errorf("types = %s", got)
	}
	if p.Retention() != 30*24*time.Hour {
		t.Errorf("retention = %v", p.Retention())
	}
	bad := map[string]string{
		"UnknownBuilder": "report_types:\n  - {name: x, builder: pdf_magic, format: csv}\n",
		"BadFormat":      "report_types:\n  - {name: x, builder: activity_log, format: xlsx}\n",
		"WrongFormat":    "report_types:\n  - {name: x, builder: case_attestation, format: csv}\n",
		"BOMNotCSV":      "report_types:\n  - {name: x, builder: transaction_summary_xlsx, format: xlsx, bom: true}\n",
		"BadExtension":   "report_types:\n  - {name: x, builder: activity_log, format: csv, extension: '../x'}\n",
		"BadContentType": "report_types:\n  - {name: x, builder: activity_log, format: csv, content_type: \"text/csv\\r\\nX: y\"}\n",
		"Duplicate":      "report_types:\n  - {name: x, builder: activity_log, format: csv}\n  - {name: x, builder: activity_log, format: csv}\n",
		"UnknownKey":     "report_types:\n  - {name: x, builder: activity_log, format: csv}\nsurprise: 1\n",
		"Empty":          "disclosure_flags: [a]\n",
		"BadName":        "report_types:\n  - {name: 'X Y', builder: activity_log, format: csv}\n",
	}
	for name, y := range bad {
		if _, err := ParsePortal([]byte(y)); err == nil {
			t.Errorf("%s: accepted %q", name, y)
		}
	}
	for name, want := range map[string][2]string{
		"transaction_summary":      {"text/csv; charset=utf-8", "csv"},
		"transaction_summary_xlsx": {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"},
		"case_attestation":         {"application/pdf", "pdf"},
	} {
		rt, _ := p.ReportType(name)
		if got := [2]string{rt.ContentType(), rt.FileExtension()}; got != want {
			t.Errorf("%s: content type and extension %v, want %v", name, got, want)
		}
	}
	p, err = ParsePortal([]byte("report_types:\n  - {name: audit, builder: activity_log, format: csv}\nretention_days: 7\n"))
	if err != nil || p.Retention() != 7*24*time.Hour {
		t.Fatalf("custom portal: %v %v", p, err)
	}
}

func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFrom(map[string]string{"TALLY_TRUSTED_PROXIES": "10.0.0.0/8,2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cfg.TrustedProxies); got != "[10.0.0.0/8 2001:db8::/32]" {
		t.Errorf("TrustedProxies = %s", got)
	}
	if _, err := LoadFrom(map[string]string{"TALLY_TRUSTED_PROXIES": "10.0.0.1"}); err == nil {
		t.Error("an address without a prefix length was accepted")
	}
}

func TestPseudonymKeys(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte("current-from-file\nretired-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		current string
		retired []string
		dev     bool
		wantErr bool
	}{
		{"ProductionWithoutKey", map[string]string{}, "", nil, false, true},
		{"DevelopmentWithoutKey", map[string]string{"TALLY_ENV": "development"}, DevelopmentPseudonymKey, nil, true, false},
		{"FromVariable", map[string]string{"TALLY_PSEUDONYM_KEY": "k1", "TALLY_PSEUDONYM_RETIRED_KEYS": "k0,k-1"}, "k1", []string{"k0", "k-1"}, false, false},
		{"FromFile", map[string]string{"TALLY_PSEUDONYM_KEY_FILE": file}, "current-from-file", []string{"retired-from-file"}, false, false},
		{"MissingFile", map[string]string{"TALLY_PSEUDONYM_KEY_FILE": file + ".nope"}, "", nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadFrom(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			cur, retired, dev, err := cfg.PseudonymKeys()
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			var got []string
			for _, r := range retired {
				got = append(got, string(r))
			}
			if string(cur) != tt.current || fmt.Sprint(got) != fmt.Sprint(tt.retired) || dev != tt.dev {
				t.Errorf("got %q %q %v, want %q %q %v", cur, got, dev, tt.current, tt.retired, tt.dev)
			}
		})
	}
	if _, err := LoadFrom(map[string]string{"TALLY_PSEUDONYM_KEY": "a", "TALLY_PSEUDONYM_KEY_FILE": file}); err == nil {
		t.Error("both the key and its file were accepted")
	}
	if _, err := LoadFrom(map[string]string{"TALLY_ENV": "staging"}); err == nil {
		t.Error("TALLY_ENV=staging was accepted")
	}
}
