package produce

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkagate/gateway/internal/kafkaclient"
)

// TestTheFirstProduceToATopicBeingCreatedWaitsForIt pins the first call
// to a new topic on Kafka 4 (KRaft) with auto-create on: the broker starts
// creating the topic, and its metadata answers say "unknown topic or
// partition" for a second or two. The gateway answered NOT_FOUND (and
// remembered the miss for a second); with auto-create on it must wait for
// the topic within the call's deadline and write the record. With
// auto-create off, an unknown topic is still NOT_FOUND at once.
func TestTheFirstProduceToATopicBeingCreatedWaitsForIt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		autoCreate bool
		want       error // nil: written
	}{
		{"auto-create on", true, nil},
		{"auto-create off", false, ErrUnknownTopic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := []kfake.Opt{kfake.NumBrokers(1)}
			if tc.autoCreate {
				opts = append(opts, kfake.AllowAutoTopicCreation())
			}
			cluster, err := kfake.NewCluster(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			const topic = "fresh"
			answerCreating(t, cluster, topic, 3)

			cfg := DefaultConfig()
			cfg.AutoCreateTopics = tc.autoCreate
			p, err := New(kafkaclient.Config{BootstrapServers: cluster.ListenAddrs()[0]}, cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
			if err != nil {
				t.Fatal(err)
			}
			ran := make(chan struct{})
			runCtx, stop := context.WithCancel(context.Background())
			go func() {
				defer close(ran)
				_ = p.Run(runCtx)
			}()
			defer func() { stop(); <-ran }()

			res, err := p.Produce(t.Context(), topic, []Record{{Value: []byte("first"), Partition: AnyPartition}})
			switch {
			case tc.want != nil:
				if !errors.Is(err, tc.want) {
					t.Fatalf("Produce: %v %+v, want %v", err, res, tc.want)
				}
			case err != nil || res[0].Err != nil:
				t.Fatalf("first Produce to a topic being created: %v %+v, want it written", err, res)
			case res[0].Offset != 0:
				t.Errorf("first record at offset %d, want 0", res[0].Offset)
			}
		})
	}
}

// answerCreating makes the broker answer the first n metadata requests
// that name topic the way Kafka 4 does while it creates a topic:
// UNKNOWN_TOPIC_OR_PARTITION. Later requests are handled as usual (with
// auto-creation allowed, the topic is created then).
func answerCreating(t *testing.T, cluster *kfake.Cluster, topic string, n int) {
	t.Helper()
	host, portStr, err := net.SplitHostPort(cluster.ListenAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	cluster.ControlKey(int16(kmsg.Metadata), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.MetadataRequest)
		named := false
		for _, rt := range req.Topics {
			named = named || rt.Topic != nil && *rt.Topic == topic
		}
		if !named || n == 0 {
			cluster.KeepControl()
			return nil, nil, false
		}
		n--
		cluster.KeepControl()
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = cluster.CurrentNode(), host, int32(port)
		resp.Brokers = []kmsg.MetadataResponseBroker{b}
		resp.ControllerID = b.NodeID
		rt := kmsg.NewMetadataResponseTopic()
		name := topic
		rt.Topic = &name
		rt.ErrorCode = 3 // UNKNOWN_TOPIC_OR_PARTITION
		resp.Topics = []kmsg.MetadataResponseTopic{rt}
		return resp, nil, true
	})
}
