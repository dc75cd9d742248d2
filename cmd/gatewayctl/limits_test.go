package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/testenv"
)

// TestLimitsSetThroughTheCommandLineReachTheGatewayAtOnce stores limits
// documents with gatewayctl into Redis and checks that a running gateway
// with limits.redis applies each within 2 s; an invalid document is refused
// by the command, naming the field, and nothing changes.
func TestLimitsSetThroughTheCommandLineReachTheGatewayAtOnce(t *testing.T) {
	t.Parallel()
	redisAddr := testenv.Redis(t)
	topic := testenv.CreateTopic(t, testenv.Kafka(t), 1)
	prefix := testenv.UniqueName("ctl-limits") + ":"
	g := startGateway(t, "--dedupe.redis.addrs="+redisAddr, "--dedupe.key_prefix="+prefix, "--limits.redis=true",
		"--identity.service=checkout")
	redisArgs := []string{"--redis", redisAddr, "--key-prefix", prefix}
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	deny := write("deny.yaml", fmt.Sprintf("version: deny\nrules:\n- {name: others, topic: %q, allow: [consume]}\n", topic))
	allow := write("allow.yaml", fmt.Sprintf("version: allow\nrules:\n- {name: checkout, identity: checkout, topic: %q, allow: [produce]}\n", topic))
	bad := write("bad.yaml", "rules:\n- {name: r, records: {per_second: 0}}\n")

	conn, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := gatewayv1.NewProducerServiceClient(conn)
	produce := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := client.Produce(ctx, &gatewayv1.ProduceRequest{Topic: topic, Records: []*gatewayv1.Record{{Value: []byte("v")}}})
		return err
	}
	if err := produce(); err != nil {
		t.Fatalf("before any limits: %v", err)
	}

	// check validates without Redis.
	if out := ok(t, g, "", "limits", "check", allow); !strings.Contains(out, "valid: 1 rules") {
		t.Fatalf("check: %s", out)
	}
	r := ctl(t, g, "", "limits", "check", bad)
	if r.code != 1 || !strings.Contains(r.stderr, "rules[0].records.per_second") {
		t.Fatalf("check of an invalid document: exit %d, stderr %s", r.code, r.stderr)
	}

	out := ok(t, g, "", append([]string{"limits", "set", "--by", "alice", deny}, redisArgs...)...)
	if !strings.Contains(out, "version 1") {
		t.Fatalf("set: %s", out)
	}
	testenv.Eventually(t, 2*time.Second, "the deny document to be in force within 2 s", func() bool {
		return status.Code(produce()) == codes.PermissionDenied
	})

	// An invalid document is refused as a whole, naming the field; the
	// last good one stays.
	r = ctl(t, g, "", append([]string{"limits", "set", bad}, redisArgs...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "rules[0].records.per_second") {
		t.Fatalf("set of an invalid document: exit %d, stderr %s", r.code, r.stderr)
	}
	// A change based on a stale version is refused too.
	r = ctl(t, g, "", append([]string{"limits", "set", "--if-version", "0", allow}, redisArgs...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "changed meanwhile") {
		t.Fatalf("set based on a stale version: exit %d, stderr %s", r.code, r.stderr)
	}
	if status.Code(produce()) != codes.PermissionDenied {
		t.Fatal("a refused document changed the limits in force")
	}

	// From stdin, based on the current version.
	doc, _ := os.ReadFile(allow)
	ok(t, g, string(doc), append([]string{"limits", "set", "--by", "bob", "--if-version", "1", "-"}, redisArgs...)...)
	testenv.Eventually(t, 2*time.Second, "the allow document to be in force within 2 s", func() bool { return produce() == nil })

	if out := ok(t, g, "", append([]string{"limits", "get"}, redisArgs...)...); out != string(doc) {
		t.Fatalf("get printed %q, want the stored document", out)
	}
	list := ok(t, g, "", append([]string{"limits", "list"}, redisArgs...)...)
	if !lineWith(list, "2", "bob", "allow", "1") || !lineWith(list, "1", "alice", "deny", "1") {
		t.Fatalf("list:\n%s", list)
	}
	type stored struct {
		Version   int64  `json:"version"`
		UpdatedBy string `json:"updated_by"`
		Document  string `json:"document"`
	}
	old := decode[stored](t, ok(t, g, "", append([]string{"--output", "json", "limits", "get", "--version", "1"}, redisArgs...)...))
	if old.Version != 1 || old.UpdatedBy != "alice" || !strings.Contains(old.Document, "version: deny") {
		t.Fatalf("get --version 1: %+v", old)
	}
}

// lineWith reports whether a line of out has the first field and, after it,
// every other field among its fields.
func lineWith(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != fields[0] {
			continue
		}
		all := true
		for _, want := range fields[1:] {
			all = all && slices.Contains(f[1:], want)
		}
		if all {
			return true
		}
	}
	return false
}
