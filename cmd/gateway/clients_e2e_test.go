package main

// End-to-end tests of the example apps in examples/ (Go, Python, TypeScript)
// against the built gateway, the real broker and the real Redis: each app
// produces records through the gateway, then consumes them with acks, and
// every record must have arrived exactly once. Every seventh record is a
// tombstone (sent without a value): Kafka must hold it with a null value,
// and the app must receive it without one.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kafkagate/gateway/internal/testenv"
)

// repoRoot is the repository, seen from this package's directory.
const repoRoot = "../.."

// event is one JSON line an example prints.
type event struct {
	Event     string   `json:"event"`
	MessageID string   `json:"message_id"`
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	Attempt   int32    `json:"attempt"`
	Duplicate bool     `json:"duplicate"`
	Tombstone bool     `json:"tombstone"`
	Assigned  []string `json:"assigned"`
	Revoked   []string `json:"revoked"`
}

// example is how to run one example app: the command and its environment,
// given the common flags.
type example struct {
	name string
	// transport says which gateway listener the app uses: "unix" or "tcp".
	transport string
	command   func(t *testing.T, args []string) *exec.Cmd
}

var (
	buildTSOnce sync.Once
	buildTSErr  error
	buildTSOut  []byte
)

// buildTS compiles the TypeScript example and the generated client once.
func buildTS(t *testing.T, node string) {
	t.Helper()
	buildTSOnce.Do(func() {
		dir := filepath.Join(repoRoot, "examples/node")
		if _, err := os.Stat(filepath.Join(dir, "node_modules/typescript/bin/tsc")); err != nil {
			buildTSErr = fmt.Errorf("examples/node/node_modules is not installed (run scripts/clients.sh install): %w", err)
			return
		}
		cmd := exec.Command(node, "node_modules/typescript/bin/tsc", "-p", ".")
		cmd.Dir = dir
		buildTSOut, buildTSErr = cmd.CombinedOutput()
	})
	if buildTSErr != nil {
		t.Fatalf("build the TypeScript example: %v\n%s", buildTSErr, buildTSOut)
	}
}

// goBuild builds a package of this module into a temporary directory.
func goBuild(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, filepath.Join(repoRoot, pkg)).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

func pythonEnv() []string {
	return append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1",
		"PYTHONPATH="+filepath.Join(repoRoot, "gen/python")+string(os.PathListSeparator)+filepath.Join(repoRoot, "examples/python"))
}

func examples(t *testing.T) []example {
	python := testenv.Python(t)
	node := testenv.Node(t)
	return []example{
		{name: "python", transport: "unix", command: func(t *testing.T, args []string) *exec.Cmd {
			cmd := exec.Command(python, append([]string{filepath.Join(repoRoot, "examples/python/app.py")}, args...)...)
			cmd.Env = pythonEnv()
			return cmd
		}},
		{name: "typescript", transport: "tcp", command: func(t *testing.T, args []string) *exec.Cmd {
			buildTS(t, node)
			return exec.Command(node, append([]string{filepath.Join(repoRoot, "examples/node/dist/examples/node/src/app.js")}, args...)...)
		}},
		{name: "go", transport: "unix", command: func(t *testing.T, args []string) *exec.Cmd {
			return exec.Command(goBuild(t, "examples/go"), args...)
		}},
	}
}

func TestClientExamplesProduceAndConsumeEveryRecordExactlyOnce(t *testing.T) {
	bootstrap := testenv.Kafka(t)
	redisAddr := testenv.Redis(t)
	apps := examples(t)

	socket := filepath.Join(t.TempDir(), "gw.sock")
	p := startBinary(t, "--embedded.enabled=false", "--kafka.bootstrap_servers="+bootstrap,
		"--server.unix_socket="+socket,
		"--dedupe.enabled=true", "--dedupe.redis.addrs="+redisAddr,
		"--dedupe.key_prefix="+testenv.UniqueName("clients")+":")

	// The image's health check answers for the gateway on either listener.
	probe := goBuild(t, "cmd/healthprobe")
	for _, addr := range []string{"unix://" + socket, p.addr} {
		if out, err := exec.Command(probe, "--addr", addr).CombinedOutput(); err != nil {
			t.Errorf("healthprobe --addr %s: %v\n%s", addr, err, out)
		}
	}

	t.Run("apps", func(t *testing.T) {
		for _, app := range apps {
			t.Run(app.name, func(t *testing.T) {
				t.Parallel()
				const n, tombstoneEvery = 300, 7
				target := p.addr
				if app.transport == "unix" {
					target = "unix://" + socket
				}
				topic := testenv.CreateTopic(t, bootstrap, 3)
				group := testenv.UniqueName("clients-" + app.name)
				runID := testenv.UniqueName(app.name)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				cmd := app.command(t, []string{"--target", target, "--topic", topic, "--group", group,
					"--produce", strconv.Itoa(n), "--consume", strconv.Itoa(n), "--batch", "40", "--run-id", runID,
					"--tombstone-every", strconv.Itoa(tombstoneEvery)})
				events := runExample(ctx, t, cmd, p)
				checkExactlyOnce(t, events, runID, n, topic)
				checkTombstones(t, events, n/tombstoneEvery)

				// What the app saw is what Kafka holds: n records, one per
				// message ID, the tombstones with a null value.
				var inKafka []string
				nullValues := map[string]bool{}
				for _, m := range testenv.ReadTopic(t, bootstrap, topic) {
					id, _ := testenv.Header(m, "message-id")
					inKafka = append(inKafka, id)
					nullValues[id] = m.Value == nil
				}
				slices.Sort(inKafka)
				if want := wantIDs(runID, n); !slices.Equal(inKafka, want) {
					t.Errorf("the topic holds %d records, want the %d written once each", len(inKafka), n)
				}
				for _, e := range events {
					if e.Event == "produced" && nullValues[e.MessageID] != e.Tombstone {
						t.Errorf("%s: sent as a tombstone %v, held in Kafka with a null value %v", e.MessageID, e.Tombstone, nullValues[e.MessageID])
					}
				}

				// The acks reach Kafka as the group's committed offsets.
				ends := map[int32]int64{}
				for _, e := range events {
					if e.Event == "produced" {
						ends[e.Partition] = max(ends[e.Partition], e.Offset+1)
					}
				}
				testenv.Eventually(t, 30*time.Second, "the group's commits at the partitions' ends", func() bool {
					got := committedE2E(t, bootstrap, group, topic, 3)
					for part, end := range ends {
						if got[part] != end {
							return false
						}
					}
					return true
				})
			})
		}
	})

	if err := p.stop(t); err != nil {
		t.Errorf("gateway exit after SIGTERM: %v\n%s", err, p.logs)
	}
}

// runExample runs an example app to its end and returns the events it
// printed; a failed run fails the test with the app's and the gateway's logs.
func runExample(ctx context.Context, t *testing.T, cmd *exec.Cmd, p *process) []event {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Start()
	if err == nil {
		stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
		err = cmd.Wait()
		stop()
	}
	if err != nil {
		t.Fatalf("%s: %v (context: %v)\nstderr:\n%s\ngateway:\n%s", cmd.Path, err, ctx.Err(), stderr.String(), p.logs)
	}
	var events []event
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s printed a line that is not a JSON event: %q", cmd.Path, sc.Text())
		}
		events = append(events, e)
	}
	return events
}

func wantIDs(runID string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", runID, i)
	}
	slices.Sort(ids)
	return ids
}

// checkExactlyOnce checks that the app wrote each of its n records once,
// consumed each once at the place it was written, and saw the group's
// partitions assigned.
func checkExactlyOnce(t *testing.T, events []event, runID string, n int, topic string) {
	t.Helper()
	type place struct {
		p int32
		o int64
	}
	produced := map[string]place{}
	consumed := map[string]int{}
	assigned := map[string]bool{}
	for _, e := range events {
		switch e.Event {
		case "produced":
			if _, dup := produced[e.MessageID]; dup {
				t.Errorf("%s reported as produced twice", e.MessageID)
			}
			produced[e.MessageID] = place{e.Partition, e.Offset}
		case "consumed":
			consumed[e.MessageID]++
			if want, ok := produced[e.MessageID]; !ok {
				t.Errorf("consumed %s, which the app did not produce", e.MessageID)
			} else if want != (place{e.Partition, e.Offset}) {
				t.Errorf("consumed %s at %d/%d, produced at %d/%d", e.MessageID, e.Partition, e.Offset, want.p, want.o)
			}
			if e.Duplicate || e.Attempt != 1 {
				t.Errorf("consumed %s again (attempt %d)", e.MessageID, e.Attempt)
			}
		case "assignment":
			for _, tp := range e.Assigned {
				assigned[tp] = true
			}
		default:
			t.Errorf("unknown event %q", e.Event)
		}
	}
	ids := slices.Sorted(maps.Keys(produced))
	if want := wantIDs(runID, n); !slices.Equal(ids, want) {
		t.Fatalf("produced %d message IDs, want %s-0 … %s-%d", len(ids), runID, runID, n-1)
	}
	var missing, twice []string
	for _, id := range ids {
		switch consumed[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			twice = append(twice, id)
		}
	}
	if len(missing) > 0 || len(twice) > 0 {
		t.Errorf("of %d records, %d never consumed (first %v), %d consumed more than once (first %v)",
			n, len(missing), missing[:min(len(missing), 5)], len(twice), twice[:min(len(twice), 5)])
	}
	for part := range 3 {
		if tp := fmt.Sprintf("%s/%d", topic, part); !assigned[tp] {
			t.Errorf("no Assignment frame assigned %s (assigned: %s)", tp, strings.Join(slices.Sorted(maps.Keys(assigned)), ", "))
		}
	}
}

// checkTombstones checks that the app sent want tombstones and received
// each record as it sent it: a tombstone without a value, any other record
// with one.
func checkTombstones(t *testing.T, events []event, want int) {
	t.Helper()
	sent := map[string]bool{}
	for _, e := range events {
		if e.Event == "produced" {
			sent[e.MessageID] = e.Tombstone
		}
	}
	tombstones := 0
	for _, tomb := range sent {
		if tomb {
			tombstones++
		}
	}
	if tombstones != want {
		t.Errorf("the app sent %d tombstones, want %d", tombstones, want)
	}
	for _, e := range events {
		if e.Event == "consumed" && e.Tombstone != sent[e.MessageID] {
			t.Errorf("%s: sent as a tombstone %v, received as one %v", e.MessageID, sent[e.MessageID], e.Tombstone)
		}
	}
}

// TestClientExampleUnitTests runs the Python and TypeScript examples' own
// tests of their retry rules (against in-process fake servers).
func TestClientExampleUnitTests(t *testing.T) {
	python := testenv.Python(t)
	node := testenv.Node(t)
	t.Run("python", func(t *testing.T) {
		cmd := exec.Command(python, "-m", "unittest", "discover", "-s", filepath.Join(repoRoot, "examples/python"))
		cmd.Env = pythonEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("python -m unittest: %v\n%s", err, out)
		}
	})
	t.Run("typescript", func(t *testing.T) {
		buildTS(t, node)
		cmd := exec.Command(node, "--test", "dist/examples/node/src/")
		cmd.Dir = filepath.Join(repoRoot, "examples/node")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("node --test: %v\n%s", err, out)
		}
	})
}
