package produce

import "testing"

// TestJavaPartitionMatchesTheJavaClient: the partitions Kafka's Java
// client gives these keys (computed with kafka-clients' own partitioner),
// which a search for a vanished writer's record relies on.
func TestJavaPartitionMatchesTheJavaClient(t *testing.T) {
	vectors := []struct {
		key         string
		p3, p4, p12 int32
	}{
		{"", 0, 1, 9},
		{"a", 1, 0, 4},
		{"key-0", 1, 1, 1},
		{"key-3", 2, 3, 11},
		{"key-5", 2, 0, 8},
		{"key-7", 1, 3, 7},
		{"order-42", 0, 0, 0},
		{"customer/17", 1, 1, 1},
		{"héllo", 0, 2, 6},
		{"foobar", 0, 2, 6},
		{"a-little-bit-long-string", 2, 0, 8},
		{"a-little-bit-longer-string", 2, 3, 11},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 2, 1, 5},
	}
	for _, v := range vectors {
		for n, want := range map[int32]int32{3: v.p3, 4: v.p4, 12: v.p12} {
			if got := javaPartition([]byte(v.key), n); got != want {
				t.Errorf("key %q of %d partitions: %d, want %d", v.key, n, got, want)
			}
		}
	}
}
