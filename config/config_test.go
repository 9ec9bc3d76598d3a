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
		cfg.SweepInterval != time.Hour || cfg.SweepGrace != time.Hour || cfg.ChainInterval != time.Second {
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
		WaitsPerUser: DefaultWaitsPerUser,
	}
	got := Config{
		RequestTimeout: cfg.RequestTimeout, CreateRateLimit: cfg.CreateRateLimit,
		SmallConcurrency: cfg.SmallConcurrency, LargeConcurrency: cfg.LargeConcurrency,
		LargeThreshold: cfg.LargeThreshold, JobTimeout: cfg.JobTimeout, ShutdownTimeout: cfg.ShutdownTimeout,
		MaxAttempts: cfg.MaxAttempts, FetchPollInterval: cfg.FetchPollInterval,
		DownloadsPerUser: cfg.DownloadsPerUser, DownloadsPerOrg: cfg.DownloadsPerOrg,
		DownloadMinRate: cfg.DownloadMinRate, DownloadStallTimeout: cfg.DownloadStallTimeout,
		WaitsPerUser: cfg.WaitsPerUser,
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
		"ZeroWaits":     {"TALLY_WAIT_PER_USER": "0"},
		"AdminAddrPort": {"TALLY_ADMIN_ADDR": "9091"},
		"NoWebhookTime": {"TALLY_WEBHOOK_TIMEOUT": "0s"},
		"ZeroWebhooks":  {"TALLY_WEBHOOK_CONCURRENCY": "0"},
		"BadWebhookNet": {"TALLY_WEBHOOK_ALLOWED_CIDRS": "10.0.0.0"},
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

func TestWebhookSettings(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFrom(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WebhookTimeout != 10*time.Second || cfg.WebhookConcurrency != 4 || cfg.WebhookAllowPrivate || len(cfg.WebhookAllowedCIDRs) != 0 {
		t.Errorf("webhook defaults: timeout %s, concurrency %d, allow private %v, allowed %v; want 10s, 4, false, none",
			cfg.WebhookTimeout, cfg.WebhookConcurrency, cfg.WebhookAllowPrivate, cfg.WebhookAllowedCIDRs)
	}
	cfg, err = LoadFrom(map[string]string{"TALLY_WEBHOOK_ALLOWED_CIDRS": "10.1.0.0/16,fd00::/8", "TALLY_WEBHOOK_ALLOW_PRIVATE": "true",
		"TALLY_WEBHOOK_TIMEOUT": "3s", "TALLY_WEBHOOK_CONCURRENCY": "8"})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cfg.WebhookAllowedCIDRs); got != "[10.1.0.0/16 fd00::/8]" || !cfg.WebhookAllowPrivate ||
		cfg.WebhookTimeout != 3*time.Second || cfg.WebhookConcurrency != 8 {
		t.Errorf("webhook settings: %s %v %s %d", got, cfg.WebhookAllowPrivate, cfg.WebhookTimeout, cfg.WebhookConcurrency)
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

// TestFileVariables: every secret variable reads <VAR>_FILE, without one
// trailing newline; both set, an empty file or a missing one are errors.
func TestFileVariables(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	environ := map[string]string{}
	for _, name := range FileVariables {
		environ[name+"_FILE"] = write(name, "from-file-"+name+"\n")
	}
	environ["TALLY_ADMIN_PASSWORD_FILE"] = write("crlf", "pass word\r\n")
	environ["DATABASE_URL_FILE"] = write("db", "postgres://tally_runtime:s3cret@db:5432/tally\n\n")
	cfg, err := LoadFrom(environ)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"DATABASE_URL":                 cfg.DatabaseURL.Reveal(),
		"S3_ACCESS_KEY_ID":             cfg.S3.AccessKeyID,
		"S3_SECRET_ACCESS_KEY":         cfg.S3.SecretAccessKey.Reveal(),
		"TALLY_ADMIN_USER":             cfg.AdminUser,
		"TALLY_ADMIN_PASSWORD":         cfg.AdminPassword.Reveal(),
		"TALLY_PSEUDONYM_RETIRED_KEYS": cfg.PseudonymRetiredKeys.Reveal(),
	}
	want := map[string]string{
		// Only one trailing newline goes.
		"DATABASE_URL":                 "postgres://tally_runtime:s3cret@db:5432/tally\n",
		"S3_ACCESS_KEY_ID":             "from-file-S3_ACCESS_KEY_ID",
		"S3_SECRET_ACCESS_KEY":         "from-file-S3_SECRET_ACCESS_KEY",
		"TALLY_ADMIN_USER":             "from-file-TALLY_ADMIN_USER",
		"TALLY_ADMIN_PASSWORD":         "pass word",
		"TALLY_PSEUDONYM_RETIRED_KEYS": "from-file-TALLY_PSEUDONYM_RETIRED_KEYS",
	}
	if len(got) != len(FileVariables) {
		t.Fatalf("test covers %d variables, FileVariables has %d", len(got), len(FileVariables))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("values = %q, want %q", got, want)
	}
	if environ["DATABASE_URL"] != "" {
		t.Error("LoadFrom wrote into the caller's map")
	}

	for _, tc := range []struct {
		name    string
		environ map[string]string
		want    string
	}{
		{"Both", map[string]string{"S3_SECRET_ACCESS_KEY": "x", "S3_SECRET_ACCESS_KEY_FILE": write("both", "y")}, "set S3_SECRET_ACCESS_KEY or S3_SECRET_ACCESS_KEY_FILE, not both"},
		{"Empty", map[string]string{"DATABASE_URL_FILE": write("empty", "\n")}, "DATABASE_URL_FILE " + filepath.Join(dir, "empty") + " is empty"},
		{"Missing", map[string]string{"TALLY_ADMIN_PASSWORD_FILE": filepath.Join(dir, "nope")}, "reading TALLY_ADMIN_PASSWORD_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadFrom(tc.environ)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestCheckSecrets: outside development the built-in development secrets
// are refused, each named; in development, or once replaced, they are not.
func TestCheckSecrets(t *testing.T) {
	t.Parallel()
	defaults, err := LoadFrom(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	// DATABASE_URL's envDefault is the constant; S3 keys have no default
	// (unset, the AWS credential chain applies).
	if defaults.DatabaseURL.Reveal() != DevelopmentDatabaseURL || defaults.S3.SecretAccessKey != "" {
		t.Fatalf("defaults %q and %q, want %q and none", defaults.DatabaseURL.Reveal(), defaults.S3.SecretAccessKey.Reveal(), DevelopmentDatabaseURL)
	}
	real := map[string]string{
		"DATABASE_URL":         "postgres://tally_runtime@db:5432/tally",
		"S3_ACCESS_KEY_ID":     "tally",
		"S3_SECRET_ACCESS_KEY": "a real one",
		"TALLY_PSEUDONYM_KEY":  "a real pseudonym key of 32 bytes or more",
	}
	for _, tc := range []struct {
		name    string
		environ map[string]string
		want    []string // the variables named; none: accepted
	}{
		{"ProductionDefaults", map[string]string{}, []string{"DATABASE_URL"}},
		{"ProductionDevPseudonymKeySetExplicitly", with(real, "TALLY_PSEUDONYM_KEY", DevelopmentPseudonymKey), []string{"TALLY_PSEUDONYM_KEY"}},
		{"ProductionDevS3KeySetExplicitly", with(real, "S3_SECRET_ACCESS_KEY", DevelopmentS3SecretAccessKey), []string{"S3_SECRET_ACCESS_KEY"}},
		{"ProductionReal", real, nil},
		{"DevelopmentDefaults", map[string]string{"TALLY_ENV": "development"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadFrom(tc.environ)
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.CheckSecrets()
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("CheckSecrets: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckSecrets accepted %v", tc.environ)
			}
			for _, v := range tc.want {
				if !strings.Contains(err.Error(), v) {
					t.Errorf("error %q does not name %s", err, v)
				}
			}
		})
	}

	// The development pseudonym key as the first line of the key file.
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(DevelopmentPseudonymKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadFrom(map[string]string{"TALLY_PSEUDONYM_KEY_FILE": keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := cfg.PseudonymKeys(); err == nil || !strings.Contains(err.Error(), "development pseudonym key is refused") {
		t.Errorf("PseudonymKeys with the development key in a file: %v, want refused", err)
	}
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for mk, mv := range m {
		if mk != k {
			out[mk] = mv
		}
	}
	return out
}
