// Package helm_test checks the manifests the Tally chart (deploy/helm/tally)
// renders: `make helm-check` runs helm lint and helm template into
// artifacts/helm/<variant>.yaml, and this test decodes every document
// strictly (an unknown or misplaced field is an error) into the k8s.io/api
// type of its kind, then checks what Tally needs of them.
package helm_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/worker"
)

// variants are the renders make helm-check writes: default values, KEDA on,
// the HPA on.
var variants = []string{"default", "keda", "hpa"}

// renderedDir is where make helm-check writes; TALLY_HELM_RENDERED overrides.
func renderedDir() string {
	if d := os.Getenv("TALLY_HELM_RENDERED"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "artifacts", "helm")
}

// The KEDA resources have no k8s.io/api type: these structs hold the fields
// the chart uses, with the spellings of KEDA's v2 CRDs, so that strict
// decoding still catches a misspelt or misplaced field (but not a value KEDA
// would refuse: only a cluster with KEDA's CRDs checks that).
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount int32 `json:"minReplicaCount"`
		MaxReplicaCount int32 `json:"maxReplicaCount"`
		PollingInterval int32 `json:"pollingInterval"`
		CooldownPeriod  int32 `json:"cooldownPeriod"`
		Triggers        []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef struct {
				Name string `json:"name"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// rendered is one variant's objects by kind.
type rendered struct {
	deployments   map[string]*appsv1.Deployment // by component label
	jobs          []*batchv1.Job
	services      []*corev1.Service
	pdbs          []*policyv1.PodDisruptionBudget
	netpols       []*networkingv1.NetworkPolicy
	hpas          []*autoscalingv2.HorizontalPodAutoscaler
	scaledObjects []*scaledObject
	triggerAuths  []*triggerAuthentication
}

func load(t *testing.T, variant string) *rendered {
	t.Helper()
	path := filepath.Join(renderedDir(), variant+".yaml")
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Skipf("%s not rendered: run `make helm-check` (it builds Helm once and renders the chart; .ci/run does)", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{deployments: map[string]*appsv1.Deployment{}}
	docs := 0
	for _, doc := range bytes.Split(b, []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		docs++
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s: reading kind: %v\n%s", path, err, doc)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			d := &appsv1.Deployment{}
			obj = d
			defer func() { r.deployments[d.Labels["app.kubernetes.io/component"]] = d }()
		case "batch/v1 Job":
			j := &batchv1.Job{}
			obj, r.jobs = j, append(r.jobs, j)
		case "v1 Service":
			s := &corev1.Service{}
			obj, r.services = s, append(r.services, s)
		case "policy/v1 PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			obj, r.pdbs = p, append(r.pdbs, p)
		case "networking.k8s.io/v1 NetworkPolicy":
			n := &networkingv1.NetworkPolicy{}
			obj, r.netpols = n, append(r.netpols, n)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			h := &autoscalingv2.HorizontalPodAutoscaler{}
			obj, r.hpas = h, append(r.hpas, h)
		case "keda.sh/v1alpha1 ScaledObject":
			s := &scaledObject{}
			obj, r.scaledObjects = s, append(r.scaledObjects, s)
		case "keda.sh/v1alpha1 TriggerAuthentication":
			a := &triggerAuthentication{}
			obj, r.triggerAuths = a, append(r.triggerAuths, a)
		default:
			t.Fatalf("%s: a %s %s, which this test does not know: add its type", path, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Errorf("%s: %s: %v", path, tm.Kind, err)
		}
	}
	if docs == 0 {
		t.Fatalf("%s holds no manifest", path)
	}
	return r
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// TestChartObjects: each variant renders the objects Tally needs and only
// those; autoscaling takes the worker's replica count over.
func TestChartObjects(t *testing.T) {
	for _, variant := range variants {
		t.Run(variant, func(t *testing.T) {
			r := load(t, variant)
			got := fmt.Sprintf("deployments=%d jobs=%d services=%d pdbs=%d netpols=%d hpas=%d scaledobjects=%d triggerauths=%d",
				len(r.deployments), len(r.jobs), len(r.services), len(r.pdbs), len(r.netpols), len(r.hpas), len(r.scaledObjects), len(r.triggerAuths))
			want := map[string]string{
				"default": "deployments=2 jobs=1 services=3 pdbs=2 netpols=3 hpas=0 scaledobjects=0 triggerauths=0",
				"keda":    "deployments=2 jobs=1 services=3 pdbs=2 netpols=3 hpas=0 scaledobjects=1 triggerauths=1",
				"hpa":     "deployments=2 jobs=1 services=3 pdbs=2 netpols=3 hpas=1 scaledobjects=0 triggerauths=0",
			}[variant]
			if got != want {
				t.Fatalf("rendered %s, want %s", got, want)
			}
			api, wk := r.deployments["api"], r.deployments["worker"]
			if api == nil || wk == nil {
				t.Fatalf("deployments by component: %v", r.deployments)
			}
			if autoscaled := variant != "default"; (wk.Spec.Replicas == nil) != autoscaled {
				t.Errorf("worker replicas %v with autoscaling %v: the autoscaler must own the count", wk.Spec.Replicas, autoscaled)
			}
			for _, d := range r.deployments {
				sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
				if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
					t.Errorf("deployment %s: selector %v does not match its pods %v (%v)", d.Name, d.Spec.Selector, d.Spec.Template.Labels, err)
				}
			}
			for _, p := range r.pdbs {
				matched := 0
				for _, d := range r.deployments {
					if sel, _ := metav1.LabelSelectorAsSelector(p.Spec.Selector); sel.Matches(labels.Set(d.Spec.Template.Labels)) {
						matched++
					}
				}
				if matched != 1 {
					t.Errorf("PodDisruptionBudget %s selects %d deployments' pods, want 1", p.Name, matched)
				}
			}
			if len(r.jobs) == 1 {
				j := r.jobs[0]
				if hook := j.Annotations["helm.sh/hook"]; hook != "pre-install,pre-upgrade" {
					t.Errorf("migration Job hook %q, want pre-install,pre-upgrade", hook)
				}
				c := j.Spec.Template.Spec.Containers[0]
				if cmd := strings.Join(c.Command, " "); !strings.HasPrefix(cmd, "tallyctl migrate --runtime-role ") {
					t.Errorf("migration Job runs %q, want tallyctl migrate --runtime-role <role>", cmd)
				}
			}
		})
	}
}

// TestChartWorkerGrace: Kubernetes waits longer than the worker's soft stop
// plus config.WorkerStopGrace before it kills a worker.
func TestChartWorkerGrace(t *testing.T) {
	r := load(t, "default")
	wk := r.deployments["worker"]
	spec := wk.Spec.Template.Spec
	soft := config.DefaultShutdownTimeout
	if v, ok := envValue(spec.Containers[0], "TALLY_SHUTDOWN_TIMEOUT"); ok {
		var err error
		if soft, err = time.ParseDuration(v); err != nil {
			t.Fatalf("TALLY_SHUTDOWN_TIMEOUT %q: %v", v, err)
		}
	}
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("worker has no terminationGracePeriodSeconds")
	}
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= soft+config.WorkerStopGrace {
		t.Errorf("terminationGracePeriodSeconds %v, want more than TALLY_SHUTDOWN_TIMEOUT %v + WorkerStopGrace %v", grace, soft, config.WorkerStopGrace)
	}
	// The chart repeats the code's constant in its values.
	values, err := os.ReadFile(filepath.Join("tally", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Worker struct {
			StopGraceSeconds int `json:"stopGraceSeconds"`
		} `json:"worker"`
	}
	if err := yaml.Unmarshal(values, &v); err != nil {
		t.Fatal(err)
	}
	if time.Duration(v.Worker.StopGraceSeconds)*time.Second != config.WorkerStopGrace {
		t.Errorf("values worker.stopGraceSeconds %d, config.WorkerStopGrace %v", v.Worker.StopGraceSeconds, config.WorkerStopGrace)
	}
}

// TestChartContainers: every container runs as non-root on a read-only root
// filesystem without capabilities, asks for CPU and memory, and (in the
// Deployments) is probed on the paths and port its process serves them on.
func TestChartContainers(t *testing.T) {
	for _, variant := range variants {
		t.Run(variant, func(t *testing.T) {
			r := load(t, variant)
			pods := map[string]corev1.PodSpec{}
			for c, d := range r.deployments {
				pods["deployment "+c] = d.Spec.Template.Spec
			}
			for _, j := range r.jobs {
				pods["job "+j.Name] = j.Spec.Template.Spec
			}
			for name, spec := range pods {
				if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
					t.Errorf("%s: pod not runAsNonRoot", name)
				}
				if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
					t.Errorf("%s: mounts a service account token it does not use", name)
				}
				for _, c := range spec.Containers {
					sc := c.SecurityContext
					if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
						sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
						sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
						t.Errorf("%s/%s: securityContext %+v, want read-only root, no privilege escalation, drop ALL", name, c.Name, sc)
					}
					if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
						t.Errorf("%s/%s: requests %v, want cpu and memory", name, c.Name, c.Resources.Requests)
					}
					if c.Resources.Limits.Memory().IsZero() {
						t.Errorf("%s/%s: no memory limit", name, c.Name)
					}
				}
			}

			// The probes, on the port the process listens on.
			for component, portEnv := range map[string]string{"api": "PORT", "worker": "TALLY_METRICS_PORT"} {
				c := r.deployments[component].Spec.Template.Spec.Containers[0]
				port, ok := envValue(c, portEnv)
				if !ok {
					t.Errorf("%s: %s not set", component, portEnv)
				}
				for probe, want := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
					if want == nil || want.HTTPGet == nil {
						t.Errorf("%s: no HTTP probe for %s", component, probe)
						continue
					}
					if want.HTTPGet.Path != probe || containerPort(c, want.HTTPGet.Port) != port {
						t.Errorf("%s: probe %s on port %v (%s), want %s on %s=%s", component, want.HTTPGet.Path, want.HTTPGet.Port.String(),
							containerPort(c, want.HTTPGet.Port), probe, portEnv, port)
					}
				}
				if c.StartupProbe == nil {
					t.Errorf("%s: no startup probe", component)
				}
			}
		})
	}
}

// TestChartSecretsOnlyAsFiles: no secret reaches a process through its
// environment; each *_FILE variable is one config reads and names a key of a
// Secret volume mounted at that path.
func TestChartSecretsOnlyAsFiles(t *testing.T) {
	readsFile := map[string]bool{"TALLY_PSEUDONYM_KEY": true, "TALLY_SIGNING_KEY": true}
	for _, v := range config.FileVariables {
		readsFile[v] = true
	}
	r := load(t, "default")
	pods := map[string]corev1.PodSpec{}
	for c, d := range r.deployments {
		pods[c] = d.Spec.Template.Spec
	}
	for _, j := range r.jobs {
		pods[j.Name] = j.Spec.Template.Spec
	}
	for name, spec := range pods {
		files := map[string]bool{} // paths of secret files mounted
		for _, c := range spec.Containers {
			if len(c.EnvFrom) > 0 {
				t.Errorf("%s/%s: envFrom %v: secrets must come as files", name, c.Name, c.EnvFrom)
			}
			for _, m := range c.VolumeMounts {
				for _, vol := range spec.Volumes {
					if vol.Name != m.Name || vol.Secret == nil {
						continue
					}
					if len(vol.Secret.Items) == 0 {
						t.Errorf("%s: secret volume %s mounts every key; list the ones the pod reads", name, vol.Name)
					}
					for _, it := range vol.Secret.Items {
						files[filepath.Join(m.MountPath, it.Path)] = true
					}
				}
			}
			fileVars := 0
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					t.Errorf("%s/%s: %s from a secretKeyRef: secrets must come as files", name, c.Name, e.Name)
				}
				if readsFile[e.Name] {
					t.Errorf("%s/%s: secret %s set in the environment, want %s_FILE", name, c.Name, e.Name, e.Name)
				}
				base, ok := strings.CutSuffix(e.Name, "_FILE")
				if !ok {
					continue
				}
				fileVars++
				if !readsFile[base] {
					t.Errorf("%s/%s: %s, which config does not read", name, c.Name, e.Name)
				}
				if !files[e.Value] {
					t.Errorf("%s/%s: %s=%s, which no secret volume mounts (mounted: %v)", name, c.Name, e.Name, e.Value, files)
				}
			}
			if fileVars == 0 {
				t.Errorf("%s/%s: reads no secret file (not even DATABASE_URL_FILE)", name, c.Name)
			}
		}
	}
}

// TestChartAdminSurfaceOffThePortal: River UI and /metrics (the API's admin
// listener, TALLY_ADMIN_ADDR; the workers' metrics port) are reachable only
// from the admin namespaces; the portal's Service and network rule carry
// only the public port.
func TestChartAdminSurfaceOffThePortal(t *testing.T) {
	r := load(t, "default")
	api := r.deployments["api"].Spec.Template.Spec.Containers[0]
	adminAddr, ok := envValue(api, "TALLY_ADMIN_ADDR")
	if !ok {
		t.Fatal("the API has no TALLY_ADMIN_ADDR: /admin and /metrics would share the portal's port")
	}
	_, adminPort, err := net.SplitHostPort(adminAddr)
	if err != nil {
		t.Fatal(err)
	}
	publicPort, _ := envValue(api, "PORT")
	if adminPort == publicPort {
		t.Fatalf("admin port %s is the public port", adminPort)
	}
	wk := r.deployments["worker"].Spec.Template.Spec.Containers[0]
	metricsPort, _ := envValue(wk, "TALLY_METRICS_PORT")

	for _, s := range r.services {
		for _, p := range s.Spec.Ports {
			c := api
			if s.Spec.Selector["app.kubernetes.io/component"] == "worker" {
				c = wk
			}
			target := containerPort(c, p.TargetPort)
			isAdmin := target == adminPort || (c.Name == "worker" && target == metricsPort)
			if isAdmin != strings.HasSuffix(s.Name, "-admin") && !strings.HasSuffix(s.Name, "-metrics") {
				t.Errorf("service %s exposes port %s (admin %v): admin ports only on the -admin/-metrics Services", s.Name, target, isAdmin)
			}
		}
	}

	adminSelectors := 0
	for _, np := range r.netpols {
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("NetworkPolicy %s does not restrict ingress", np.Name)
		}
		component := np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"]
		var c corev1.Container
		switch component {
		case "api":
			c = api
		case "worker":
			c = wk
		default:
			continue
		}
		for _, rule := range np.Spec.Ingress {
			if len(rule.Ports) == 0 {
				t.Errorf("NetworkPolicy %s: a rule opens every port", np.Name)
			}
			for _, p := range rule.Ports {
				port := containerPort(c, *p.Port)
				admin := (component == "api" && port == adminPort) || (component == "worker" && port == metricsPort)
				if !admin {
					continue
				}
				adminSelectors++
				for _, from := range rule.From {
					if from.IPBlock != nil || from.NamespaceSelector == nil ||
						(len(from.NamespaceSelector.MatchLabels) == 0 && len(from.NamespaceSelector.MatchExpressions) == 0) {
						t.Errorf("NetworkPolicy %s lets %v reach admin port %s: want a namespace selector of the admin namespaces", np.Name, from, port)
					}
				}
				if len(rule.From) == 0 {
					t.Errorf("NetworkPolicy %s opens admin port %s to everyone", np.Name, port)
				}
			}
		}
	}
	if adminSelectors != 2 {
		t.Errorf("%d rules admit the admin namespaces to the API's admin port and the workers' metrics port, want 2", adminSelectors)
	}
}

// TestChartAutoscaling: the KEDA ScaledObject counts the report queues'
// available jobs in river_job; the HPA follows the workers' queue-age gauge
// (worker.MetricQueueOldest); both scale the worker Deployment.
func TestChartAutoscaling(t *testing.T) {
	t.Run("keda", func(t *testing.T) {
		r := load(t, "keda")
		so := r.scaledObjects[0]
		if so.Spec.ScaleTargetRef.Name != r.deployments["worker"].Name {
			t.Errorf("ScaledObject scales %q, want the worker Deployment %q", so.Spec.ScaleTargetRef.Name, r.deployments["worker"].Name)
		}
		if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "postgresql" {
			t.Fatalf("triggers %+v, want one postgresql", so.Spec.Triggers)
		}
		tr := so.Spec.Triggers[0]
		q := tr.Metadata["query"]
		for _, want := range []string{"FROM river_job", "state = 'available'", "'" + jobs.QueueReports + "'", "'" + jobs.QueueLarge + "'"} {
			if !strings.Contains(q, want) {
				t.Errorf("query %q lacks %q", q, want)
			}
		}
		if tr.Metadata["targetQueryValue"] == "" || tr.AuthenticationRef.Name != r.triggerAuths[0].Name {
			t.Errorf("trigger %+v: want a targetQueryValue and the chart's TriggerAuthentication %s", tr, r.triggerAuths[0].Name)
		}
		if refs := r.triggerAuths[0].Spec.SecretTargetRef; len(refs) != 1 || refs[0].Parameter != "connection" {
			t.Errorf("TriggerAuthentication refs %+v, want the connection from the Secret", refs)
		}
	})
	t.Run("hpa", func(t *testing.T) {
		r := load(t, "hpa")
		h := r.hpas[0]
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != r.deployments["worker"].Name {
			t.Errorf("HPA scales %+v, want the worker Deployment", h.Spec.ScaleTargetRef)
		}
		if len(h.Spec.Metrics) != 1 || h.Spec.Metrics[0].External == nil {
			t.Fatalf("HPA metrics %+v, want one External", h.Spec.Metrics)
		}
		m := h.Spec.Metrics[0].External
		if m.Metric.Name != worker.MetricQueueOldest {
			t.Errorf("HPA metric %q, want the workers' %q", m.Metric.Name, worker.MetricQueueOldest)
		}
		if m.Target.Type != autoscalingv2.ValueMetricType || m.Target.Value == nil || m.Target.Value.IsZero() {
			t.Errorf("HPA target %+v, want a Value in seconds", m.Target)
		}
	})
}

// TestChartEnvIsConfig: every variable the chart sets is one config reads
// (a misspelt name would be ignored silently and its default used), or
// OpenTelemetry's.
func TestChartEnvIsConfig(t *testing.T) {
	known := map[string]bool{}
	var walk func(typ reflect.Type, prefix string)
	walk = func(typ reflect.Type, prefix string) {
		for f := range typ.Fields() {
			if p, ok := f.Tag.Lookup("envPrefix"); ok {
				walk(f.Type, prefix+p)
			} else if name, ok := f.Tag.Lookup("env"); ok {
				known[prefix+name] = true
			}
		}
	}
	walk(reflect.TypeFor[config.Config](), "")
	for _, v := range config.FileVariables {
		known[v+"_FILE"] = true
	}
	if !known["TALLY_SHUTDOWN_TIMEOUT"] || !known["S3_ENDPOINT"] || !known["TALLY_SIGNING_KEY_FILE"] {
		t.Fatalf("read no variables from config.Config's tags: %v", known)
	}
	for _, variant := range variants {
		r := load(t, variant)
		var pods []corev1.PodSpec
		for _, d := range r.deployments {
			pods = append(pods, d.Spec.Template.Spec)
		}
		for _, j := range r.jobs {
			pods = append(pods, j.Spec.Template.Spec)
		}
		for _, p := range pods {
			for _, c := range p.Containers {
				for _, e := range c.Env {
					// OTEL_* belong to OpenTelemetry's SDK, not to config.
					if !known[e.Name] && !strings.HasPrefix(e.Name, "OTEL_") {
						t.Errorf("%s: container %s sets %s, which config does not read", variant, c.Name, e.Name)
					}
				}
			}
		}
	}
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// containerPort resolves a port (number or name) of c to its number.
func containerPort(c corev1.Container, p intstr.IntOrString) string {
	if p.Type == intstr.Int {
		return p.String()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return fmt.Sprint(cp.ContainerPort)
		}
	}
	return "unknown port " + p.StrVal
}

// TestChartAWSCredentialChain: with config.s3.credentials=chain (e.g. IRSA on
// EKS) no pod reads S3 keys from the Secret, so minio-go's AWS chain applies;
// the pods run as the named service account and get the encryption settings.
// With the default (static) the keys come from the Secret.
func TestChartAWSCredentialChain(t *testing.T) {
	for _, tc := range []struct {
		variant   string
		wantKeys  bool
		wantSA    string
		wantSSE   string
		wantKMSID string
	}{
		{variant: "default", wantKeys: true},
		{variant: "aws-chain", wantSA: "tally-irsa", wantSSE: "SSE-KMS", wantKMSID: "alias/tally"},
	} {
		r := load(t, tc.variant)
		for _, component := range []string{"api", "worker"} {
			d, ok := r.deployments[component]
			if !ok {
				t.Fatalf("%s: no %s Deployment", tc.variant, component)
			}
			spec := d.Spec.Template.Spec
			if spec.ServiceAccountName != tc.wantSA {
				t.Errorf("%s/%s: serviceAccountName %q, want %q", tc.variant, component, spec.ServiceAccountName, tc.wantSA)
			}
			c := spec.Containers[0]
			for _, name := range []string{"S3_ACCESS_KEY_ID_FILE", "S3_SECRET_ACCESS_KEY_FILE"} {
				if _, has := envValue(c, name); has != tc.wantKeys {
					t.Errorf("%s/%s: %s set = %v, want %v", tc.variant, component, name, has, tc.wantKeys)
				}
			}
			if v, _ := envValue(c, "S3_SSE"); v != tc.wantSSE {
				t.Errorf("%s/%s: S3_SSE %q, want %q", tc.variant, component, v, tc.wantSSE)
			}
			if v, _ := envValue(c, "S3_SSE_KMS_KEY_ID"); v != tc.wantKMSID {
				t.Errorf("%s/%s: S3_SSE_KMS_KEY_ID %q, want %q", tc.variant, component, v, tc.wantKMSID)
			}
		}
	}
}
