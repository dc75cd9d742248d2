package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClusterNode starts a redis-server of its own in cluster mode, on a
// free port, serving every hash slot: a Redis Cluster of one node, which is
// what a managed service's configuration endpoint looks like to a client.
// It returns the node's address and stops it when the test ends. Without
// redis-server on the PATH the test skips, unless
// GATEWAY_TEST_REQUIRE_SERVICES=1 turns the skip into a failure.
func RedisClusterNode(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("GATEWAY_TEST_REQUIRE_SERVICES") == "1" {
			t.Fatalf("redis-server is not installed: it is required (run `make test`)")
		}
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server in cluster mode: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	Eventually(t, 10*time.Second, "redis-server in cluster mode to answer", func() bool {
		return c.Ping(ctx).Err() == nil
	})
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("assign every hash slot to the node: %v", err)
	}
	Eventually(t, 10*time.Second, "the one-node cluster to be up", func() bool {
		info, err := c.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	})
	return addr
}
