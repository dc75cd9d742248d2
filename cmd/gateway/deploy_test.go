package main

// Tests of deploy/: the Kubernetes base renders with kustomize and passes
// the Kubernetes JSON schemas (strict: unknown fields are errors); its pod
// follows the sidecar rules the deployment guide promises, and its gateway
// configuration passes the gateway's own --check-config; the compose file
// loads with the compose-spec loader (which validates it against the
// compose schema) and its gateway environment names real keys only.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"go.yaml.in/yaml/v3"

	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/ratelimit"
	"github.com/kafkagate/gateway/internal/testenv"
)

// kubernetesVersions are validated against: the first release where native
// sidecars are generally available, and the newest the schemas know.
var kubernetesVersions = []string{"1.33.0", "1.37.0"}

// renderKustomize runs the pinned kustomize on deploy/kubernetes.
func renderKustomize(t *testing.T) []byte {
	t.Helper()
	cmd := exec.Command("go", "tool", "-modfile=tools/go.mod", "kustomize", "build", "deploy/kubernetes")
	cmd.Dir = repoRoot
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize build deploy/kubernetes: %v\n%s", err, stderr.String())
	}
	return out
}

func TestKubernetesBasePassesTheKubernetesSchemas(t *testing.T) {
	t.Parallel()
	python := testenv.Python(t)
	validator := filepath.Join(filepath.Dir(python), "kubernetes-validate")
	rendered := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := os.WriteFile(rendered, renderKustomize(t), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, v := range kubernetesVersions {
		out, err := exec.Command(validator, "--strict", "--quiet", "-k", v, rendered).CombinedOutput()
		if err != nil {
			t.Errorf("kubernetes-validate --strict -k %s: %v\n%s", v, err, out)
		}
	}
}

// The parts of the rendered objects the tests read.
type (
	k8sObject struct {
		Kind     string                `yaml:"kind"`
		Metadata struct{ Name string } `yaml:"metadata"`
		Data     map[string]string     `yaml:"data"`
		Spec     struct {
			Template struct {
				Spec podSpec `yaml:"spec"`
			} `yaml:"template"`
			// A NetworkPolicy's.
			Ingress []struct {
				Ports []struct {
					Port string `yaml:"port"`
				} `yaml:"ports"`
			} `yaml:"ingress"`
		} `yaml:"spec"`
	}
	podSpec struct {
		TerminationGracePeriodSeconds int64 `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               struct {
			RunAsNonRoot bool  `yaml:"runAsNonRoot"`
			FSGroup      int64 `yaml:"fsGroup"`
		} `yaml:"securityContext"`
		InitContainers []container `yaml:"initContainers"`
		Containers     []container `yaml:"containers"`
		Volumes        []struct {
			Name      string    `yaml:"name"`
			EmptyDir  *struct{} `yaml:"emptyDir"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
			Secret *struct {
				SecretName string `yaml:"secretName"`
				Items      []struct {
					Key  string `yaml:"key"`
					Path string `yaml:"path"`
				} `yaml:"items"`
			} `yaml:"secret"`
		} `yaml:"volumes"`
	}
	container struct {
		Name          string   `yaml:"name"`
		RestartPolicy string   `yaml:"restartPolicy"`
		Args          []string `yaml:"args"`
		Env           []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom *struct {
				FieldRef *struct {
					FieldPath string `yaml:"fieldPath"`
				} `yaml:"fieldRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		StartupProbe   *probe `yaml:"startupProbe"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		Resources      struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	}
	probe struct {
		GRPC *struct {
			Port int `yaml:"port"`
		} `yaml:"grpc"`
	}
)

func (c container) mount(volume string) string {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	return ""
}

func TestKubernetesPodRunsTheGatewayAsANativeSidecarOnASharedSocket(t *testing.T) {
	t.Parallel()
	objects := map[string]k8sObject{}
	dec := yaml.NewDecoder(bytes.NewReader(renderKustomize(t)))
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		objects[o.Kind+"/"+o.Metadata.Name] = o
	}
	dep, ok := objects["Deployment/orders"]
	if !ok {
		t.Fatalf("no Deployment/orders in the rendered base")
	}
	pod := dep.Spec.Template.Spec
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != "gateway" {
		t.Fatalf("want the gateway as the one init container, got %d", len(pod.InitContainers))
	}
	gw := pod.InitContainers[0]
	if gw.RestartPolicy != "Always" {
		t.Errorf("gateway restartPolicy = %q, want Always (a native sidecar)", gw.RestartPolicy)
	}

	// The gateway reads its configuration from the ConfigMap the base generates.
	volumes := map[string]int{}
	for i, v := range pod.Volumes {
		volumes[v.Name] = i
	}
	cfgVol := pod.Volumes[volumes["gateway-config"]]
	if cfgVol.ConfigMap == nil || !strings.HasPrefix(cfgVol.ConfigMap.Name, "gateway-config-") {
		t.Fatalf("volume gateway-config is not the generated gateway-config ConfigMap")
	}
	cm, ok := objects["ConfigMap/"+cfgVol.ConfigMap.Name]
	if !ok {
		t.Fatalf("ConfigMap %s is not rendered", cfgVol.ConfigMap.Name)
	}
	if want := "--config=" + gw.mount("gateway-config") + "/gateway.yaml"; !slices.Contains(gw.Args, want) {
		t.Errorf("gateway args %v, want %s", gw.Args, want)
	}
	var cfg struct {
		Server struct {
			Listen       string `yaml:"listen"`
			UnixSocket   string `yaml:"unix_socket"`
			HealthListen string `yaml:"health_listen"`
			TLS          struct {
				CertFile string `yaml:"cert_file"`
			} `yaml:"tls"`
			Insecure bool `yaml:"insecure_plaintext_api_on_network"`
		} `yaml:"server"`
		Kafka struct {
			PropertyFiles map[string]string `yaml:"property_files"`
		} `yaml:"kafka"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["gateway.yaml"]), &cfg); err != nil {
		t.Fatalf("gateway.yaml in the ConfigMap: %v", err)
	}

	// The API is not on the pod network: server.listen is loopback (or
	// TLS), never plaintext on the network.
	if host, _, err := net.SplitHostPort(cfg.Server.Listen); cfg.Server.Listen != "" && (err != nil || host != "127.0.0.1" && cfg.Server.TLS.CertFile == "") || cfg.Server.Insecure {
		t.Errorf("server.listen %q (tls %q, insecure %v) serves the API on the pod network in plaintext", cfg.Server.Listen, cfg.Server.TLS.CertFile, cfg.Server.Insecure)
	}
	// The probes ask the gateway's gRPC health on its health-only listener,
	// and the container exposes no other gRPC port.
	_, port, err := net.SplitHostPort(cfg.Server.HealthListen)
	if err != nil {
		t.Fatalf("server.health_listen %q: %v", cfg.Server.HealthListen, err)
	}
	for name, p := range map[string]*probe{"startup": gw.StartupProbe, "readiness": gw.ReadinessProbe, "liveness": gw.LivenessProbe} {
		if p == nil || p.GRPC == nil || strconv.Itoa(p.GRPC.Port) != port {
			t.Errorf("gateway %s probe is not a gRPC probe on the health port %s", name, port)
		}
	}
	_, apiPort, _ := net.SplitHostPort(cfg.Server.Listen)
	for _, p := range gw.Ports {
		if strconv.Itoa(p.ContainerPort) == apiPort {
			t.Errorf("the gateway container exposes the API port %s", apiPort)
		}
	}
	// A NetworkPolicy admits only the health and metrics ports to the pod.
	np, ok := objects["NetworkPolicy/orders"]
	if !ok {
		t.Fatalf("no NetworkPolicy/orders in the rendered base")
	}
	named := map[string]int{}
	for _, p := range gw.Ports {
		named[p.Name] = p.ContainerPort
	}
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("a NetworkPolicy ingress rule admits every port")
		}
		for _, p := range rule.Ports {
			if p.Port != "health" && p.Port != "metrics" && p.Port != strconv.Itoa(named["health"]) && p.Port != strconv.Itoa(named["metrics"]) {
				t.Errorf("the NetworkPolicy admits port %s", p.Port)
			}
		}
	}

	// group.instance.id is the pod name.
	instanceFromPod := false
	for _, e := range gw.Env {
		if e.Name == config.EnvName("consumer.instance_id") && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			instanceFromPod = e.ValueFrom.FieldRef.FieldPath == "metadata.name"
		}
	}
	if !instanceFromPod {
		t.Errorf("%s is not set from metadata.name", config.EnvName("consumer.instance_id"))
	}

	// The socket lives in an emptyDir that the app mounts too, and the app
	// is pointed at it.
	sockDir := filepath.Dir(cfg.Server.UnixSocket)
	if cfg.Server.UnixSocket == "" || pod.Volumes[volumes["gateway-socket"]].EmptyDir == nil || gw.mount("gateway-socket") != sockDir {
		t.Errorf("server.unix_socket %q is not in the gateway-socket emptyDir mounted at %s", cfg.Server.UnixSocket, gw.mount("gateway-socket"))
	}
	for _, app := range pod.Containers {
		if app.mount("gateway-socket") != sockDir {
			t.Errorf("container %s does not mount the socket directory %s", app.Name, sockDir)
		}
		found := false
		for _, e := range app.Env {
			found = found || e.Value == "unix://"+cfg.Server.UnixSocket
		}
		if !found {
			t.Errorf("container %s has no variable pointing at unix://%s", app.Name, cfg.Server.UnixSocket)
		}
	}
	if !pod.SecurityContext.RunAsNonRoot || pod.SecurityContext.FSGroup == 0 {
		t.Errorf("pod securityContext: runAsNonRoot %v, fsGroup %d; want non-root with a shared group for the socket",
			pod.SecurityContext.RunAsNonRoot, pod.SecurityContext.FSGroup)
	}
	for _, c := range append([]container{gw}, pod.Containers...) {
		if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
			t.Errorf("container %s lacks cpu/memory requests or a memory limit", c.Name)
		}
	}

	// Every credential file the configuration names comes from the Secret.
	secretVol := pod.Volumes[volumes["kafka-credentials"]]
	if secretVol.Secret == nil {
		t.Fatalf("volume kafka-credentials is not a Secret")
	}
	secretDir := gw.mount("kafka-credentials")
	secretFiles := map[string]bool{}
	for _, it := range secretVol.Secret.Items {
		secretFiles[filepath.Join(secretDir, it.Path)] = true
	}
	for prop, path := range cfg.Kafka.PropertyFiles {
		if !secretFiles[path] {
			t.Errorf("kafka.property_files.%s names %s, which is not a file of the kafka-credentials Secret mounted at %s", prop, path, secretDir)
		}
	}

	// The grace period covers the gateway's whole shutdown after the app's.
	full, err := config.Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(cm.Data["gateway.yaml"]), &full); err != nil {
		t.Fatal(err)
	}
	shutdown := full.Server.ShutdownGrace + full.Consumer.DrainTimeout + 10*time.Second + full.Server.DrainTimeout + full.Producer.FlushTimeout
	if grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; grace < shutdown+20*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v leaves less than 20s for the app next to the gateway's %v shutdown", grace, shutdown)
	}

	// limits.file is the limits ConfigMap, mounted without a hash suffix
	// (so the kubelet updates it in place), and a valid limits document.
	limitsVol := pod.Volumes[volumes["gateway-limits"]]
	if limitsVol.ConfigMap == nil {
		t.Fatalf("volume gateway-limits is not a ConfigMap")
	}
	limitsCM, ok := objects["ConfigMap/"+limitsVol.ConfigMap.Name]
	if !ok {
		t.Fatalf("ConfigMap %s is not rendered", limitsVol.ConfigMap.Name)
	}
	limitsDir := gw.mount("gateway-limits")
	var lcfg struct {
		Limits struct {
			File string `yaml:"file"`
		} `yaml:"limits"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["gateway.yaml"]), &lcfg); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(limitsDir, "limits.yaml"); lcfg.Limits.File != want {
		t.Errorf("limits.file is %q, want the mounted ConfigMap's %s", lcfg.Limits.File, want)
	}
	if _, err := ratelimit.ParseDocument([]byte(limitsCM.Data["limits.yaml"])); err != nil {
		t.Errorf("limits.yaml of ConfigMap %s: %v", limitsVol.ConfigMap.Name, err)
	}

	// And the configuration is one the gateway accepts, with the Secret's
	// and the limits ConfigMap's files in place.
	checkConfigWithSecret(t, cm.Data["gateway.yaml"], secretDir, limitsDir, limitsCM.Data["limits.yaml"])
}

// checkConfigWithSecret runs the gateway's --check-config on a
// configuration whose Secret directory is replaced by a temporary one with
// stand-in credentials (a real CA certificate, since librdkafka loads it).
func checkConfigWithSecret(t *testing.T, gatewayYAML, secretDir, limitsDir, limits string) {
	t.Helper()
	dir := t.TempDir()
	gatewayYAML = strings.ReplaceAll(gatewayYAML, limitsDir+"/", dir+"/")
	for name, body := range map[string][]byte{"username": []byte("orders\n"), "password": []byte("s3cret\n"), "ca.crt": selfSignedCA(t), "limits.yaml": []byte(limits)} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(gatewayYAML, secretDir+"/", dir+"/")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "--config", path, "--check-config")
	cmd.Env = []string{"GATEWAY_CONSUMER_INSTANCE_ID=orders-7d9f-abcde"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the base's gateway.yaml fails --check-config: %v\n%s", err, out)
	}
}

func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestComposeStackLoadsAndConfiguresTheGatewayWithRealKeys(t *testing.T) {
	t.Parallel()
	file := filepath.Join(repoRoot, "deploy/compose/compose.yaml")
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithName("kafkagate"), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	// The loader validates the file against the compose specification's schema.
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for _, name := range []string{"kafka", "redis", "gateway", "app"} {
		if _, err := project.GetService(name); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	gw, _ := project.GetService("gateway")
	app, _ := project.GetService("app")

	// The gateway is built from this repository's Dockerfile.
	if gw.Build == nil {
		t.Fatalf("the gateway service is not built from the repository")
	}
	if _, err := os.Stat(filepath.Join(gw.Build.Context, gw.Build.Dockerfile)); err != nil {
		t.Errorf("gateway build: %v", err)
	}
	for _, v := range app.Volumes {
		if _, err := os.Stat(v.Source); err != nil {
			t.Errorf("app volume %s: %v", v.Source, err)
		}
	}

	// Every GATEWAY_ variable is a configuration key, and together they
	// make a configuration the gateway accepts.
	known := map[string]bool{}
	for _, k := range config.Keys() {
		known[config.EnvName(k.Path)] = true
	}
	var env []string
	for name, value := range gw.Environment {
		if !strings.HasPrefix(name, config.EnvPrefix) {
			continue
		}
		if !known[name] {
			t.Errorf("gateway variable %s is not a configuration key (docs/configuration.md)", name)
		}
		if value == nil {
			t.Errorf("gateway variable %s has no value", name)
			continue
		}
		env = append(env, name+"="+*value)
	}
	cmd := exec.Command(binary, "--check-config")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the compose gateway environment fails --check-config: %v\n%s", err, out)
	}

	// The app starts once the gateway is healthy, and talks to its listener.
	if dep, ok := app.DependsOn["gateway"]; !ok || dep.Condition != "service_healthy" {
		t.Errorf("the app does not wait for a healthy gateway: %+v", app.DependsOn)
	}
	if gw.HealthCheck == nil || len(gw.HealthCheck.Test) == 0 || !strings.Contains(strings.Join(gw.HealthCheck.Test, " "), "healthprobe") {
		t.Errorf("the gateway has no healthprobe health check")
	}
	// The API listens on the gateway's loopback only; the app shares the
	// gateway's network namespace (as in a pod) to reach it.
	listen := *gw.Environment[config.EnvName("server.listen")]
	if host, _, _ := net.SplitHostPort(listen); host != "127.0.0.1" {
		t.Errorf("the compose gateway serves the API on %s, not loopback", listen)
	}
	if app.NetworkMode != "service:gateway" {
		t.Errorf("the app's network_mode is %q, want service:gateway", app.NetworkMode)
	}
	if target := listen; !strings.Contains(strings.Join(app.Command, " "), "--target "+target) {
		t.Errorf("the app's command does not target %s: %q", target, app.Command)
	}
}
