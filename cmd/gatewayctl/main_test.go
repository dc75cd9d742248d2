package main

// End-to-end tests: the built gatewayctl against the built gateway, on the
// real broker and Redis.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/testenv"
)

// The binaries, built once.
var gatewayBin, ctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatewayctl-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gatewayBin, ctlBin = filepath.Join(dir, "gateway"), filepath.Join(dir, "gatewayctl")
	for _, b := range []struct{ out, pkg string }{{gatewayBin, "../gateway"}, {ctlBin, "."}} {
		build := exec.Command("go", "build", "-o", b.out, b.pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b.pkg+":", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gatewayProcess is a running gateway binary.
type gatewayProcess struct {
	addr string // TCP address, or "unix://path"
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	logs []string
}

func (g *gatewayProcess) log() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.logs, "\n")
}

// startGateway runs the gateway binary against the real broker with args
// and waits until it serves; it is stopped with SIGTERM when the test ends.
func startGateway(t *testing.T, args ...string) *gatewayProcess {
	t.Helper()
	args = append([]string{"--log.format=json", "--metrics.listen=127.0.0.1:0", "--embedded.enabled=false", "--kafka.bootstrap_servers=" + testenv.Kafka(t),
		"--consumer.commit_interval=100ms", "--consumer.drain_timeout=1s"}, args...)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--server.unix_socket") }) {
		args = append(args, "--server.listen=127.0.0.1:0")
	}
	cmd := exec.Command(gatewayBin, args...)
	cmd.Env = append(os.Environ(), "GATEWAY_CONFIG=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &gatewayProcess{cmd: cmd, done: make(chan struct{})}
	addrs := make(chan []string, 1)
	go func() {
		defer close(g.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			g.mu.Lock()
			g.logs = append(g.logs, sc.Text())
			g.mu.Unlock()
			var entry struct {
				Msg   string   `json:"msg"`
				Addrs []string `json:"addrs"`
			}
			if json.Unmarshal(sc.Bytes(), &entry) == nil && entry.Msg == "gateway serving" {
				addrs <- entry.Addrs
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("gateway did not stop within 30s of SIGTERM")
		}
	})
	select {
	case a := <-addrs:
		g.addr = a[0]
		if strings.HasPrefix(g.addr, "/") {
			g.addr = "unix://" + g.addr
		}
	case <-g.done:
		t.Fatalf("gateway exited before serving:\n%s", g.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("gateway did not serve within 30s:\n%s", g.log())
	}
	return g
}

// result is one gatewayctl run.
type result struct {
	stdout, stderr string
	code           int
}

// ctl runs gatewayctl against g with stdin and args.
func ctl(t *testing.T, g *gatewayProcess, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctlBin, append([]string{"--addr", g.addr}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("gatewayctl %v: %v", args, err)
	}
	return r
}

// ok runs gatewayctl and fails the test unless it exits 0.
func ok(t *testing.T, g *gatewayProcess, stdin string, args ...string) string {
	t.Helper()
	r := ctl(t, g, stdin, args...)
	if r.code != 0 {
		t.Fatalf("gatewayctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// jsonLines decodes one JSON object per line.
func jsonLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var vs []T
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		vs = append(vs, v)
	}
	return vs
}

func decode[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	return v
}

// groupJSON is the part of lag's JSON output the tests read. int64 fields
// are strings in the proto JSON mapping.
type groupJSON struct {
	State       string `json:"state"`
	RunningHere bool   `json:"running_here"`
	TotalLag    string `json:"total_lag"`
	Partitions  []struct {
		Partition       int32  `json:"partition"`
		CommittedOffset string `json:"committed_offset"`
		LogEndOffset    string `json:"log_end_offset"`
		Lag             string `json:"lag"`
	} `json:"partitions"`
}

// An operator deletes a key of a compacted topic by writing a tombstone,
// and must see one when tailing. gatewayctl wrote "value": null as an empty
// value and tail printed a null key or value as an empty one. Now
// "value": null is a tombstone (a record without value still has an empty
// value), "key": "" an empty key, and tail prints null (JSON null) for
// what is null and "" for what is empty.
func TestProduceAndTailTellATombstoneFromAnEmptyValue(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	g := startGateway(t)
	in := `{"key":"k","value":null}` + "\n" + // a tombstone of k
		`{"key":"k"}` + "\n" + // an empty value
		`{"key":"","value":"v"}` + "\n" + // an empty key
		`{"value":"null"}` + "\n" // no key, a value whose text is null
	ok(t, g, in, "produce", "--topic", topic)

	type record struct {
		Offset int64   `json:"offset"`
		Key    *string `json:"key"`
		Value  *string `json:"value"`
	}
	str := func(s *string) string {
		if s == nil {
			return "null"
		}
		return fmt.Sprintf("%q", *s)
	}
	want := [][2]string{{`"k"`, "null"}, {`"k"`, `""`}, {`""`, `"v"`}, {"null", `"null"`}}
	group := testenv.UniqueName("g")
	got := jsonLines[record](t, ok(t, g, "", "tail", "--group", group, "--topic", topic, "--ordering", "partition", "--max", "4", "--output", "json"))
	if len(got) != len(want) {
		t.Fatalf("tailed %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if k, v := str(r.Key), str(r.Value); r.Offset != int64(i) || k != want[i][0] || v != want[i][1] {
			t.Errorf("record %d: offset %d, key %s, value %s; want key %s, value %s", i, r.Offset, k, v, want[i][0], want[i][1])
		}
	}
	for _, m := range testenv.ReadTopic(t, bootstrap, topic)[:1] {
		if m.Value != nil {
			t.Errorf("Kafka holds the tombstone with value %q, want null", m.Value)
		}
	}

	// The table output of another group.
	lines := strings.Split(strings.TrimSpace(ok(t, g, "", "tail", "--group", testenv.UniqueName("g"), "--topic", topic, "--ordering", "none", "--max", "4")), "\n")
	wantLines := []string{topic + "/0@0  k  null", topic + "/0@1  k  \"\"", topic + "/0@2  \"\"  v", topic + "/0@3  null  \"null\""}
	slices.Sort(lines)
	if !slices.Equal(lines, wantLines) {
		t.Errorf("table output:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
	}
}

func TestProduceTailAckAndLagThroughTheCommandLine(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 2)
	group := testenv.UniqueName("g")
	g := startGateway(t)

	// Ten records from a file: keys, headers, a JSON value, an explicit
	// partition; and one in base64.
	var in strings.Builder
	for i := range 9 {
		fmt.Fprintf(&in, `{"key":"k%d","value":"v%d","headers":{"n":"%d"}}`+"\n", i%3, i, i)
		if i == 4 {
			in.WriteString("\n") // skipped
		}
	}
	in.WriteString(`{"key":"k9","value":{"total":12},"partition":1}` + "\n")
	file := filepath.Join(t.TempDir(), "records.jsonl")
	if err := os.WriteFile(file, []byte(in.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	type produced struct {
		Line      int    `json:"line"`
		Partition int32  `json:"partition"`
		Offset    int64  `json:"offset"`
		MessageID string `json:"message_id"`
		Error     any    `json:"error"`
	}
	results := jsonLines[produced](t, ok(t, g, "", "produce", "--topic", topic, "--file", file, "--output", "json", "--batch", "4"))
	if len(results) != 10 {
		t.Fatalf("%d results, want 10", len(results))
	}
	ends := map[int32]int64{}
	for i, r := range results {
		if r.Error != nil || r.MessageID == "" {
			t.Errorf("result %d: %+v", i, r)
		}
		ends[r.Partition] = max(ends[r.Partition], r.Offset+1)
	}
	if results[9].Line != 11 || results[9].Partition != 1 {
		t.Errorf("last result %+v; want input line 11, partition 1", results[9])
	}
	out := ok(t, g, `{"key":"YmluYXJ5","value":"AAEC"}`+"\n", "produce", "--topic", topic, "--encoding", "base64")
	if !strings.HasPrefix(out, "1 records written to "+topic) || !strings.Contains(out, "PARTITION") {
		t.Errorf("table output %q", out)
	}
	for _, m := range testenv.ReadTopic(t, bootstrap, topic) {
		if string(m.Key) == "binary" {
			ends[m.TopicPartition.Partition] = max(ends[m.TopicPartition.Partition], int64(m.TopicPartition.Offset)+1)
			if !bytes.Equal(m.Value, []byte{0, 1, 2}) {
				t.Errorf("base64 value written as %v", m.Value)
			}
		}
		if string(m.Key) == "k9" && string(m.Value) != `{"total":12}` {
			t.Errorf("JSON value written as %q", m.Value)
		}
	}

	// Tail acks six; tail --no-ack prints the other five with ack IDs; ack
	// takes them from stdin.
	type record struct {
		Partition int32             `json:"partition"`
		Offset    int64             `json:"offset"`
		Key       string            `json:"key"`
		Value     string            `json:"value"`
		Headers   map[string]string `json:"headers"`
		AckID     string            `json:"ack_id"`
	}
	first := jsonLines[record](t, ok(t, g, "", "tail", "--group", group, "--topic", topic, "--ordering", "none", "--max", "6", "--output", "json"))
	rest := jsonLines[record](t, ok(t, g, "", "tail", "--group", group, "--topic", topic, "--ordering", "none", "--max", "5", "--no-ack", "--output", "json"))
	if len(first) != 6 || len(rest) != 5 {
		t.Fatalf("tailed %d and %d records, want 6 and 5", len(first), len(rest))
	}
	seen := map[[2]int64]bool{}
	var ids []string
	for _, r := range append(first, rest...) {
		seen[[2]int64{int64(r.Partition), r.Offset}] = true
		if r.Key == "k1" && r.Headers["n"] == "" {
			t.Errorf("record %+v lost its headers", r)
		}
	}
	for _, r := range rest {
		ids = append(ids, r.AckID)
	}
	if len(seen) != 11 {
		t.Errorf("the two tails saw %d distinct records, want all 11", len(seen))
	}
	if out := ok(t, g, strings.Join(ids, "\n")+"\n", "ack", "--group", group, "-"); !strings.Contains(out, "5 records acknowledged") {
		t.Errorf("ack output %q", out)
	}

	// Lag: everything committed.
	var d groupJSON
	testenv.Eventually(t, 20*time.Second, "lag 0 at the ends", func() bool {
		d = decode[groupJSON](t, ok(t, g, "", "lag", "--group", group, "--output", "json"))
		for _, p := range d.Partitions {
			if p.CommittedOffset != fmt.Sprint(ends[p.Partition]) || p.Lag != "0" {
				return false
			}
		}
		return d.TotalLag == "0" && len(d.Partitions) == 2
	})
	if !d.RunningHere || d.State != "Stable" {
		t.Errorf("lag: %+v", d)
	}
	table := ok(t, g, "", "lag", "--group", group)
	for _, want := range []string{"TOTAL LAG  0", "(this gateway)", "COMMITTED"} {
		if !strings.Contains(table, want) {
			t.Errorf("lag table lacks %q:\n%s", want, table)
		}
	}
}

func TestResetAndDeadLetterReplayThroughTheCommandLine(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	group := testenv.UniqueName("g")
	g := startGateway(t, "--dedupe.redis.addrs="+testenv.Redis(t), "--dedupe.key_prefix="+testenv.UniqueName("e2e")+":")
	var in strings.Builder
	for i := range 5 {
		fmt.Fprintf(&in, `{"value":"%d"}`+"\n", i)
	}
	ok(t, g, in.String(), "produce", "--topic", topic)

	// An app dead-letters values 1 and 3 and acks the rest.
	conn, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	consumer := gatewayv1.NewConsumerServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := consumer.Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: group, Topics: []string{topic}, Ordering: gatewayv1.Ordering_ORDERING_NONE})
	if err != nil {
		t.Fatal(err)
	}
	for handled := 0; handled < 5; {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.GetDeliveries().GetDeliveries() {
			handled++
			if v := string(d.GetValue()); v == "1" || v == "3" {
				_, err = consumer.Nack(ctx, &gatewayv1.NackRequest{Group: group, AckIds: []string{d.GetAckId()}, DeadLetter: true})
			} else {
				_, err = consumer.Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: []string{d.GetAckId()}})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	dlq := topic + ".dlq"
	testenv.Eventually(t, 30*time.Second, "2 dead letters", func() bool { return len(testenv.ReadTopic(t, bootstrap, dlq)) == 2 })

	type replayJSON struct {
		Total    string `json:"total"`
		Scanned  string `json:"scanned"`
		Replayed string `json:"replayed"`
		Skipped  string `json:"skipped"`
		Done     bool   `json:"done"`
	}
	dry := decode[replayJSON](t, ok(t, g, "", "dlq", "replay", "--topic", dlq, "--dry-run", "--output", "json"))
	if dry.Replayed != "2" || dry.Total != "2" || !dry.Done {
		t.Errorf("dry run: %+v", dry)
	}
	r := ctl(t, g, "", "dlq", "replay", "--topic", dlq, "--progress", "on")
	if r.code != 0 || !strings.Contains(r.stderr, "replayed 2 of 2 records") || !strings.Contains(r.stdout, "REPLAYED") {
		t.Fatalf("replay: exit %d\nstdout: %s\nstderr: %q", r.code, r.stdout, r.stderr)
	}
	// Again: nothing is written twice.
	ok(t, g, "", "dlq", "replay", "--topic", dlq)
	testenv.Eventually(t, 20*time.Second, "the app's group to get the 2 replayed records", func() bool {
		return len(testenv.ReadTopic(t, bootstrap, topic)) == 7
	})
	for got := 0; got < 2; {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.GetDeliveries().GetDeliveries() {
			got++
			if v := string(d.GetValue()); v != "1" && v != "3" {
				t.Errorf("after the replay the app got %q", v)
			}
			if _, err := consumer.Ack(ctx, &gatewayv1.AckRequest{Group: group, AckIds: []string{d.GetAckId()}}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Reset the live group: a dry run, then to offset 2.
	type resetJSON struct {
		DryRun     bool `json:"dry_run"`
		Partitions []struct {
			PreviousOffset string `json:"previous_offset"`
			TargetOffset   string `json:"target_offset"`
			Action         string `json:"action"`
		} `json:"partitions"`
	}
	testenv.Eventually(t, 20*time.Second, "everything committed", func() bool {
		d := decode[groupJSON](t, ok(t, g, "", "lag", "--group", group, "--output", "json"))
		return d.TotalLag == "0"
	})
	plan := decode[resetJSON](t, ok(t, g, "", "reset", "--group", group, "--topic", topic, "--to-offset", "2", "--dry-run", "--output", "json"))
	if !plan.DryRun || len(plan.Partitions) != 1 || plan.Partitions[0].PreviousOffset != "7" || plan.Partitions[0].TargetOffset != "2" ||
		plan.Partitions[0].Action != "RESET_ACTION_REPOSITIONED" {
		t.Errorf("dry run plan: %+v", plan)
	}
	out := ok(t, g, "", "reset", "--group", group, "--topic", topic, "--to-offset", "2")
	if !strings.Contains(out, "repositioned live") {
		t.Errorf("reset output:\n%s", out)
	}
	if d := decode[groupJSON](t, ok(t, g, "", "lag", "--group", group, "--output", "json")); d.Partitions[0].CommittedOffset != "2" {
		t.Errorf("committed after the reset: %+v", d)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no target", []string{"reset", "--group", group, "--topic", topic}, 2, "give a target"},
		{"two targets", []string{"reset", "--group", group, "--topic", topic, "--to-earliest", "--to-latest"}, 2, "one target"},
		{"bad offsets", []string{"reset", "--group", group, "--to-offsets", "x=1"}, 2, "TOPIC/PARTITION=OFFSET"},
		{"unknown group", []string{"lag", "--group", testenv.UniqueName("nobody")}, 1, "NOT_FOUND"},
		{"unknown topic", []string{"topics", "describe", testenv.UniqueName("missing")}, 1, "NOT_FOUND"},
		{"bad partition", []string{"reset", "--group", group, "--to-offsets", topic + "/5=1"}, 1, "INVALID_ARGUMENT: to_offsets.offsets[0].partition"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(t, g, "", tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", r.code, r.stderr, tc.code, tc.want)
			}
		})
	}
}

func TestTopicsOverAUnixSocketWithAnIdentity(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 3)
	sock := filepath.Join(t.TempDir(), "gw.sock")
	g := startGateway(t, "--server.unix_socket="+sock, "--server.listen=", "--identity.header=x-gateway-identity", "--admin.allowed_identities=ops")
	if g.addr != "unix://"+sock {
		t.Fatalf("gateway serves on %q, want the socket", g.addr)
	}
	r := ctl(t, g, "", "topics", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "PERMISSION_DENIED") {
		t.Errorf("without identity: exit %d, stderr %q", r.code, r.stderr)
	}
	out := ok(t, g, "", "--identity", "ops", "topics", "list")
	if !hasLine(out, topic, "3") {
		t.Errorf("topics list lacks %s with 3 partitions:\n%s", topic, out)
	}
	out = ok(t, g, "", "topics", "describe", topic, "--identity", "ops")
	if !strings.Contains(out, "PARTITIONS  3") || strings.Count(out, "(127.0.0.1:") != 3 {
		t.Errorf("topics describe:\n%s", out)
	}
}

// hasLine reports whether some line of out has exactly these fields.
func hasLine(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		if slices.Equal(strings.Fields(line), fields) {
			return true
		}
	}
	return false
}

func TestTailEndsCleanlyOnInterrupt(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topic := testenv.CreateTopic(t, bootstrap, 1)
	g := startGateway(t)
	ok(t, g, `{"value":"one"}`+"\n", "produce", "--topic", topic)

	cmd := exec.Command(ctlBin, "--addr", g.addr, "tail", "--group", testenv.UniqueName("g"), "--topic", topic)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, "one") {
		t.Fatalf("first line %q, %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("tail after SIGINT: %v (stderr %q); want exit 0", err, stderr.String())
	}
}
