package gateway_test

// The attacks of docs/security.md, each tried against the real gateway (a
// real broker behind it) and refused with its code. Two teams reach one
// gateway over mutual TLS, each named by its client certificate; the
// limits document gives each its own topics and groups. Team B attacks
// team A's group and topics.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
	"github.com/kafkagate/gateway/internal/config"
	"github.com/kafkagate/gateway/internal/identity"
	"github.com/kafkagate/gateway/internal/testenv"
)

type team struct {
	conn     *grpc.ClientConn
	producer gatewayv1.ProducerServiceClient
	consumer gatewayv1.ConsumerServiceClient
	admin    gatewayv1.AdminServiceClient
}

func TestAttacksFromAnotherIdentityAreRefused(t *testing.T) {
	t.Parallel()
	bootstrap := testenv.Kafka(t)
	topicA, topicB := testenv.CreateTopic(t, bootstrap, 1), testenv.CreateTopic(t, bootstrap, 1)
	dlqA := testenv.CreateTopic(t, bootstrap, 1)
	groupA, groupB := "a-"+testenv.UniqueName("g"), "b-"+testenv.UniqueName("g")
	ca := newTestCA(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvCert, srvKey := ca.issue(t, "gateway", "", true)
	socket := filepath.Join(dir, "gw.sock")
	gw, _ := limitsGateway(t, fmt.Sprintf(`
rules:
- {name: a-topics, identity: team-a, topic: %[1]q, allow: [produce, consume]}
- {name: a-dlq, identity: team-a, topic: %[3]q, allow: [consume]}
- {name: b-topics, identity: team-b, topic: %[2]q, allow: [produce, consume]}
groups:
- {name: a-groups, identity: team-a, group: "a-*", allow: [subscribe, ack, reset, describe]}
- {name: b-groups, identity: team-b, group: "b-*", allow: [subscribe, ack, reset, describe]}
`, topicA, topicB, dlqA), func(c *config.Config) {
		c.Server.TLS = config.TLSConfig{CertFile: write("srv.pem", srvCert), KeyFile: write("srv.key", srvKey), ClientCAFile: write("ca.pem", ca.pem)}
		c.Server.UnixSocket = socket
		c.Identity = identity.Config{Service: "sidecar-app", Header: "x-caller", TLSClientCert: true}
		c.Consumer.MaxGroupsPerIdentity = 2
	})
	tcp := gw.gw.Addrs()[0].String()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	as := func(cn string) team {
		c, k := ca.issue(t, cn, "", false)
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(tcp, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return team{conn, gatewayv1.NewProducerServiceClient(conn), gatewayv1.NewConsumerServiceClient(conn), gatewayv1.NewAdminServiceClient(conn)}
	}
	a, b := as("team-a"), as("team-b")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Team A produces, subscribes to its group and holds one delivery.
	if _, err := a.producer.Produce(ctx, oneRecord(topicA)); err != nil {
		t.Fatalf("team A produce: %v", err)
	}
	sub, err := a.consumer.Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: groupA, Topics: []string{topicA}})
	if err != nil {
		t.Fatal(err)
	}
	var held *gatewayv1.Delivery
	for held == nil {
		resp, err := sub.Recv()
		if err != nil {
			t.Fatalf("team A subscribe: %v", err)
		}
		if ds := resp.GetDeliveries().GetDeliveries(); len(ds) > 0 {
			held = ds[0]
		}
	}
	recv := func(s gatewayv1.ConsumerService_SubscribeClient, err error) error {
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}

	attacks := []struct {
		name string
		try  func() error
		want codes.Code
	}{
		{"subscribe to another identity's group", func() error {
			return recv(b.consumer.Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: groupA, Topics: []string{topicA}}))
		}, codes.PermissionDenied},
		{"consume another identity's group in a Consume stream", func() error {
			st, err := b.consumer.Consume(ctx)
			if err != nil {
				return err
			}
			if err := st.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Start{Start: &gatewayv1.ConsumeStart{
				Subscription: &gatewayv1.SubscribeRequest{Group: groupA, Topics: []string{topicA}}, Credit: &gatewayv1.Credit{Records: 10, Bytes: 1 << 20}}}}); err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		}, codes.PermissionDenied},
		{"subscribe to another identity's topic from one's own group", func() error {
			return recv(b.consumer.Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: groupB, Topics: []string{topicA}}))
		}, codes.PermissionDenied},
		{"ack another identity's delivery", func() error {
			_, err := b.consumer.Ack(ctx, &gatewayv1.AckRequest{Group: groupA, AckIds: []string{held.GetAckId()}})
			return err
		}, codes.PermissionDenied},
		{"nack another identity's delivery", func() error {
			_, err := b.consumer.Nack(ctx, &gatewayv1.NackRequest{Group: groupA, AckIds: []string{held.GetAckId()}, DeadLetter: true})
			return err
		}, codes.PermissionDenied},
		{"extend the lease of another identity's delivery", func() error {
			_, err := b.consumer.Extend(ctx, &gatewayv1.ExtendRequest{Group: groupA, AckIds: []string{held.GetAckId()}, Extension: durationpb.New(time.Minute)})
			return err
		}, codes.PermissionDenied},
		{"ack another identity's delivery in one's own group", func() error {
			_, err := b.consumer.Ack(ctx, &gatewayv1.AckRequest{Group: groupB, AckIds: []string{held.GetAckId()}})
			return err
		}, codes.PermissionDenied}, // the ID names topic A, which B may not consume
		{"reset another identity's offsets", func() error {
			_, err := b.admin.ResetOffsets(ctx, &gatewayv1.ResetOffsetsRequest{Group: groupA, Topics: []string{topicA},
				Target: &gatewayv1.ResetOffsetsRequest_ToPosition{ToPosition: gatewayv1.ResetPosition_RESET_POSITION_LATEST}})
			return err
		}, codes.PermissionDenied},
		{"describe another identity's group", func() error {
			_, err := b.admin.DescribeGroup(ctx, &gatewayv1.DescribeGroupRequest{Group: groupA, Topics: []string{topicA}})
			return err
		}, codes.PermissionDenied},
		{"replay another identity's dead letters", func() error {
			s, err := b.admin.ReplayDeadLetters(ctx, &gatewayv1.ReplayDeadLettersRequest{DeadLetterTopic: dlqA, TargetTopic: topicB})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.PermissionDenied},
		{"replay one's dead letters into a topic one may not produce to", func() error {
			s, err := a.admin.ReplayDeadLetters(ctx, &gatewayv1.ReplayDeadLettersRequest{DeadLetterTopic: dlqA, TargetTopic: topicB})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.PermissionDenied},
		{"guess an ack ID (a made-up one)", func() error {
			_, err := a.consumer.Ack(ctx, &gatewayv1.AckRequest{Group: groupA, AckIds: []string{fmt.Sprintf("%s/0/0/1/1/%s", topicA, strings.Repeat("0", 24))}})
			return err
		}, codes.FailedPrecondition},
		{"guess an ack ID (a real one altered)", func() error {
			forged := strings.Replace(held.GetAckId(), fmt.Sprintf("/%d/%d/", held.GetPartition(), held.GetOffset()), fmt.Sprintf("/%d/%d/", held.GetPartition(), held.GetOffset()+1), 1)
			_, err := a.consumer.Ack(ctx, &gatewayv1.AckRequest{Group: groupA, AckIds: []string{forged}})
			return err
		}, codes.FailedPrecondition},
		{"a group name over 249 characters", func() error {
			return recv(b.consumer.Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: "b-" + strings.Repeat("x", 300), Topics: []string{topicB}}))
		}, codes.InvalidArgument},
		{"a group name with characters Kafka refuses in names", func() error {
			return recv(b.consumer.Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: "b-\x00../evil", Topics: []string{topicB}}))
		}, codes.InvalidArgument},
		{"a topic name over 249 characters", func() error {
			_, err := b.producer.Produce(ctx, oneRecord(strings.Repeat("t", 300)))
			return err
		}, codes.InvalidArgument},
		{"a connection without a client certificate", func() error {
			conn, err := grpc.NewClient(tcp, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
			if err != nil {
				return err
			}
			defer conn.Close()
			_, err = gatewayv1.NewProducerServiceClient(conn).Produce(ctx, oneRecord(topicA))
			return err
		}, codes.Unavailable},
		{"a self-asserted identity header on a connection without a certificate", func() error {
			conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return err
			}
			defer conn.Close()
			claim := metadata.AppendToOutgoingContext(ctx, "x-caller", "team-a")
			_, err = gatewayv1.NewProducerServiceClient(conn).Produce(claim, oneRecord(topicA))
			return err
		}, codes.PermissionDenied}, // it is the sidecar's service, which may not write topic A
	}
	for _, at := range attacks {
		t.Run(at.name, func(t *testing.T) {
			requireCode(t, at.try(), at.want)
		})
	}

	// Group creation past the bound: team B may start two groups here.
	for i := range 3 {
		s, err := b.consumer.Subscribe(ctx, &gatewayv1.SubscribeRequest{Group: fmt.Sprintf("%s-%d", groupB, i), Topics: []string{topicB}})
		if err == nil {
			_, err = s.Recv()
		}
		switch {
		case i < 2 && err != nil:
			t.Fatalf("team B's group %d: %v", i, err)
		case i == 2:
			requireCode(t, err, codes.ResourceExhausted)
		}
	}

	// Nothing the attacks tried changed team A's state: its held delivery
	// is still its own to ack, and the group's commit reaches the end.
	if _, err := a.consumer.Ack(ctx, &gatewayv1.AckRequest{Group: groupA, AckIds: []string{held.GetAckId()}}); err != nil {
		t.Fatalf("team A's own ack after the attacks: %v", err)
	}
	offsets := newOffsetReader(t, bootstrap, groupA, topicA, 1)
	testenv.Eventually(t, 20*time.Second, "team A's commit at the end of its topic", func() bool { return offsets.committed()[0] == 1 })
	if _, err := a.producer.Produce(ctx, oneRecord(topicA)); err != nil {
		t.Fatalf("the gateway after the attacks: %v", err)
	}
}
