package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

var tailCmd = &command{
	name:    "tail",
	summary: "subscribe to a consumer group, print its records and acknowledge them",
	help: `
Joins (or attaches to) the group on the gateway and prints each record as it
arrives, acknowledging it once printed, until --max records are done or the
command is interrupted. Partitions gained or lost are reported on stderr.
A null key or value (a tombstone's value is null) is printed as null, an
empty one as "" (a key or value whose text is null is quoted: "null").

With --no-ack nothing is acknowledged and each line carries its ack ID, for
"gatewayctl ack" (valid while the gateway owns the record's partition);
unacknowledged records are redelivered when the command ends. Under
partition (or key) ordering a partition (key) delivers its next record only
once the previous one is acknowledged, so without acks tail prints at most
one record per partition (key) until its ack timeout; use --ordering none
to see more. A group runs with one ordering on a gateway: every tail of it
must ask for the same.`,
	setup: func(fs *flag.FlagSet) runFunc {
		var topics stringList
		group := fs.String("group", "", "consumer group (required)")
		fs.Var(&topics, "topic", "topic to consume (repeatable, or comma-separated; required)")
		maxRecords := fs.Int("max", 0, "stop after this many records (0: until interrupted)")
		noAck := fs.Bool("no-ack", false, "do not acknowledge; print ack IDs instead")
		ordering := fs.String("ordering", "", "partition, key or none (default: the gateway's)")
		start := fs.String("start", "", "where a new group starts: earliest or latest (default: the gateway's)")
		ackTimeout := fs.Duration("ack-timeout", 0, "redeliver records not acknowledged in this time (default: the gateway's)")
		encoding := fs.String("encoding", "utf8", "how keys and values are printed: utf8 or base64")
		headers := fs.Bool("headers", false, "print headers too (table output)")
		return func(ctx context.Context, e *env, args []string) error {
			switch {
			case *group == "":
				return usageErr("--group is required")
			case len(topics) == 0:
				return usageErr("--topic is required")
			case *maxRecords < 0:
				return usageErr("--max: must not be negative")
			case *encoding != "utf8" && *encoding != "base64":
				return usageErr("--encoding: %q is not utf8 or base64", *encoding)
			case len(args) > 0:
				return usageErr("unexpected arguments %q", args)
			}
			req := &gatewayv1.SubscribeRequest{Group: *group, Topics: topics, MaxInFlight: 100}
			if *maxRecords > 0 {
				req.MaxInFlight = int32(min(*maxRecords, 100))
			}
			switch *ordering {
			case "":
			case "partition":
				req.Ordering = gatewayv1.Ordering_ORDERING_PARTITION
			case "key":
				req.Ordering = gatewayv1.Ordering_ORDERING_KEY
			case "none":
				req.Ordering = gatewayv1.Ordering_ORDERING_NONE
			default:
				return usageErr("--ordering: %q is not partition, key or none", *ordering)
			}
			switch *start {
			case "":
			case "earliest":
				req.StartPosition = gatewayv1.StartPosition_START_POSITION_EARLIEST
			case "latest":
				req.StartPosition = gatewayv1.StartPosition_START_POSITION_LATEST
			default:
				return usageErr("--start: %q is not earliest or latest", *start)
			}
			if *ackTimeout > 0 {
				req.AckTimeout = durationpb.New(*ackTimeout)
			}
			err := tail(ctx, e, req, *maxRecords, !*noAck, *encoding == "base64", *headers)
			if ctx.Err() != nil {
				return nil // interrupted: the normal end of a tail (a record printed but not yet acked comes again)
			}
			return err
		}
	},
}

// recordJSON is one record in JSON output.
type recordJSON struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Key       *string           `json:"key"`   // nil: a null key
	Value     *string           `json:"value"` // nil: a null value (a tombstone)
	Headers   map[string]string `json:"headers"`
	Timestamp time.Time         `json:"timestamp"`
	MessageID string            `json:"message_id"`
	Attempt   int32             `json:"attempt"`
	AckID     string            `json:"ack_id,omitempty"` // tail without --ack only
}

// tail prints the records of a subscription. With ack it consumes through
// a Consume stream: it grants credit for no more records than it will
// print (so a --max run takes no others out of the group's hands), acks
// each frame in the stream, and ends once every ack is answered. Without
// ack it subscribes, and prints each record's ack ID for a later ack.
func tail(ctx context.Context, e *env, req *gatewayv1.SubscribeRequest, maxRecords int, ack, b64 bool, showHeaders bool) error {
	client, err := e.consumer()
	if err != nil {
		return err
	}
	sctx, cancel := e.callCtx(ctx, false)
	defer cancel()
	p := &tailPrinter{e: e, b64: b64, showHeaders: showHeaders, showAckIDs: !ack}
	if ack {
		return tailConsume(sctx, client, req, maxRecords, p)
	}
	stream, err := client.Subscribe(sctx, req)
	if err != nil {
		return err
	}
	done := 0
	for maxRecords == 0 || done < maxRecords {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if a := resp.GetAssignment(); a != nil {
			p.assignment(a)
			continue
		}
		ds := resp.GetDeliveries().GetDeliveries()
		if maxRecords > 0 {
			ds = ds[:min(len(ds), maxRecords-done)]
		}
		for _, d := range ds {
			if err := p.print(d); err != nil {
				return err
			}
		}
		done += len(ds)
	}
	return nil
}

// tailConsume is tail --ack, through a Consume stream.
func tailConsume(ctx context.Context, client gatewayv1.ConsumerServiceClient, req *gatewayv1.SubscribeRequest, maxRecords int, p *tailPrinter) error {
	window := int64(req.GetMaxInFlight())
	if maxRecords > 0 {
		window = min(window, int64(maxRecords))
	}
	stream, err := client.Consume(ctx)
	if err != nil {
		return err
	}
	err = stream.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Start{Start: &gatewayv1.ConsumeStart{
		Subscription: req, Credit: &gatewayv1.Credit{Records: window, Bytes: 64 << 20},
	}}})
	if err != nil {
		return err
	}
	done := 0
	var sent, answered uint64
	for maxRecords == 0 || done < maxRecords || answered < sent {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		switch f := resp.GetFrame().(type) {
		case *gatewayv1.ConsumeResponse_Assignment:
			p.assignment(f.Assignment)
		case *gatewayv1.ConsumeResponse_Settled:
			answered = f.Settled.GetSequence()
			for _, o := range f.Settled.GetAcks() {
				if o != gatewayv1.SettleOutcome_SETTLE_OUTCOME_APPLIED {
					return fmt.Errorf("ack: %v (the record goes to the group again)", o)
				}
			}
		case *gatewayv1.ConsumeResponse_Deliveries:
			var tokens []uint64
			var bytes int64
			for _, d := range f.Deliveries.GetDeliveries() {
				if err := p.print(d); err != nil {
					return err
				}
				tokens = append(tokens, d.GetToken())
				bytes += int64(len(d.GetKey()) + len(d.GetValue()))
			}
			done += len(tokens)
			if len(tokens) == 0 {
				continue
			}
			grant := int64(len(tokens))
			if maxRecords > 0 {
				grant = 0 // the first credit covered every record to print
			}
			sent++
			if err := stream.Send(&gatewayv1.ConsumeRequest{Request: &gatewayv1.ConsumeRequest_Settle{Settle: &gatewayv1.Settle{
				Sequence: sent, Acks: tokens, Credit: &gatewayv1.Credit{Records: grant, Bytes: bytes},
			}}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// tailPrinter prints the records tail gets.
type tailPrinter struct {
	e                *env
	b64, showHeaders bool
	showAckIDs       bool
}

func (p *tailPrinter) assignment(a *gatewayv1.Assignment) {
	if len(a.GetAssigned()) > 0 {
		fmt.Fprintf(p.e.stderr, "# assigned %s\n", tpList(a.GetAssigned()))
	}
	if len(a.GetRevoked()) > 0 {
		fmt.Fprintf(p.e.stderr, "# revoked %s\n", tpList(a.GetRevoked()))
	}
}

func (p *tailPrinter) text(b []byte) string {
	if p.b64 {
		return base64.StdEncoding.EncodeToString(b)
	}
	return string(b)
}

// nullable is a key or value for JSON: unset (nil) when null, set and
// empty when empty.
func (p *tailPrinter) nullable(b []byte) *string {
	if b == nil {
		return nil
	}
	s := p.text(b)
	return &s
}

func (p *tailPrinter) shown(b []byte) string {
	if b == nil {
		return "null"
	}
	return printable(p.text(b))
}

func (p *tailPrinter) print(d *gatewayv1.Delivery) error {
	e := p.e
	if e.json() {
		r := recordJSON{
			Topic: d.GetTopic(), Partition: d.GetPartition(), Offset: d.GetOffset(),
			Key: p.nullable(d.Key), Value: p.nullable(d.Value), Headers: map[string]string{},
			Timestamp: d.GetTimestamp().AsTime(), MessageID: d.GetMessageId(), Attempt: d.GetAttempt(), AckID: d.GetAckId(),
		}
		for _, h := range d.GetHeaders() {
			r.Headers[h.GetKey()] = p.text(h.GetValue())
		}
		return e.printJSONLine(r)
	}
	line := fmt.Sprintf("%s/%d@%d  %s  %s", d.GetTopic(), d.GetPartition(), d.GetOffset(), p.shown(d.Key), p.shown(d.Value))
	if p.showHeaders {
		var hs []string
		for _, h := range d.GetHeaders() {
			hs = append(hs, h.GetKey()+"="+printable(p.text(h.GetValue())))
		}
		line += "  [" + strings.Join(hs, " ") + "]"
	}
	if p.showAckIDs {
		line += "  ack_id=" + d.GetAckId()
	}
	_, err := fmt.Fprintln(e.stdout, line)
	return err
}

func tpList(tps []*gatewayv1.TopicPartition) string {
	s := make([]string, len(tps))
	for i, tp := range tps {
		s[i] = fmt.Sprintf("%s/%d", tp.GetTopic(), tp.GetPartition())
	}
	return strings.Join(s, ", ")
}

// printable quotes s when it would not read well on one line, or would
// read as a null key or value.
func printable(s string) string {
	if s == "" || s == "null" {
		return fmt.Sprintf("%q", s)
	}
	if !utf8.ValidString(s) || strings.ContainsAny(s, "\n\r\t") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
