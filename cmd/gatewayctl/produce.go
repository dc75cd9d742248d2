package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

var produceCmd = &command{
	name:    "produce",
	args:    "",
	summary: "write records from JSON lines (stdin or --file)",
	help: `
Each input line is one record:

  {"key": "order-42", "value": "hello", "headers": {"source": "cli"}}

Fields, all optional: key (string), value (a string, or any other JSON
value written as its JSON text), headers (object of strings), partition
(number), timestamp (RFC 3339), idempotency_key (string). Strings are
written as UTF-8; with --encoding base64, key, a string value and header
values are base64 and written decoded (for binary data). Empty lines are
skipped.

A record without key (or with "key": null) has no key; "key": "" is an
empty key. "value": null writes a null value: on a compacted topic, a
tombstone that deletes the key. A record without value, or with
"value": "", has an empty value, not a tombstone.

Records are written in input order, --batch per call. The table output
sums up per partition; --output json prints one line per record with its
input line, partition, offset and message_id, or its error.`,
	setup: func(fs *flag.FlagSet) runFunc {
		topic := fs.String("topic", "", "topic to write to (required)")
		file := fs.String("file", "-", "file of JSON lines; - reads stdin")
		encoding := fs.String("encoding", "utf8", "encoding of key, string values and header values: utf8 or base64")
		batch := fs.Int("batch", 500, "records per Produce call")
		return func(ctx context.Context, e *env, args []string) error {
			if *topic == "" {
				return usageErr("--topic is required")
			}
			if *encoding != "utf8" && *encoding != "base64" {
				return usageErr("--encoding: %q is not utf8 or base64", *encoding)
			}
			if *batch <= 0 {
				return usageErr("--batch: must be positive")
			}
			if len(args) > 0 {
				return usageErr("unexpected arguments %q", args)
			}
			in := e.stdin
			if *file != "-" {
				f, err := os.Open(*file)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			return produce(ctx, e, *topic, in, *encoding == "base64", *batch)
		}
	},
}

// inputRecord is one JSON line of produce's input.
type inputRecord struct {
	Key            *string           `json:"key"`
	Value          json.RawMessage   `json:"value"`
	Headers        map[string]string `json:"headers"`
	Partition      *int32            `json:"partition"`
	Timestamp      *time.Time        `json:"timestamp"`
	IdempotencyKey string            `json:"idempotency_key"`
}

// producedJSON is one line of produce's JSON output.
type producedJSON struct {
	Line      int         `json:"line"`
	Partition int32       `json:"partition"`
	Offset    int64       `json:"offset"`
	MessageID string      `json:"message_id"`
	Error     *statusJSON `json:"error,omitempty"`
}

func parseRecord(line []byte, b64 bool) (*gatewayv1.Record, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var in inputRecord
	if err := dec.Decode(&in); err != nil {
		return nil, err
	}
	text := func(s, what string) ([]byte, error) {
		if !b64 {
			return []byte(s), nil
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%s: not base64: %w", what, err)
		}
		return b, nil
	}
	rec := &gatewayv1.Record{Partition: in.Partition, IdempotencyKey: in.IdempotencyKey}
	var err error
	if in.Key != nil {
		if rec.Key, err = text(*in.Key, "key"); err != nil {
			return nil, err
		}
	}
	switch v := bytes.TrimSpace(in.Value); {
	case len(v) == 0:
		rec.Value = []byte{} // no "value": an empty value
	case bytes.Equal(v, []byte("null")):
		// "value": null: left unset, written as a null value (a tombstone)
	case v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("value: %w", err)
		}
		if rec.Value, err = text(s, "value"); err != nil {
			return nil, err
		}
	default:
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			return nil, fmt.Errorf("value: %w", err)
		}
		rec.Value = buf.Bytes()
	}
	keys := make([]string, 0, len(in.Headers))
	for k := range in.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, err := text(in.Headers[k], "headers."+k)
		if err != nil {
			return nil, err
		}
		rec.Headers = append(rec.Headers, &gatewayv1.Header{Key: k, Value: v})
	}
	if in.Timestamp != nil {
		rec.Timestamp = timestamppb.New(*in.Timestamp)
	}
	return rec, nil
}

// partitionSummary is produce's table row of one partition.
type partitionSummary struct {
	records     int
	first, last int64
}

func produce(ctx context.Context, e *env, topic string, in io.Reader, b64 bool, batchSize int) error {
	client, err := e.producer()
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	var (
		recs      []*gatewayv1.Record
		lines     []int
		lineNo    int
		written   int
		failed    int
		summaries = map[int32]*partitionSummary{}
	)
	send := func() error {
		if len(recs) == 0 {
			return nil
		}
		cctx, cancel := e.callCtx(ctx, true)
		resp, err := client.Produce(cctx, &gatewayv1.ProduceRequest{Topic: topic, Records: recs})
		cancel()
		if err != nil {
			return fmt.Errorf("lines %d-%d (%d records written before): %w", lines[0], lines[len(lines)-1], written, err)
		}
		for i, r := range resp.GetResults() {
			out := producedJSON{Line: lines[i], Partition: r.GetPartition(), Offset: r.GetOffset(), MessageID: r.GetMessageId()}
			if r.GetError() != nil {
				failed++
				out.Error = &statusJSON{Code: codeName(codes.Code(r.GetError().GetCode())), Message: r.GetError().GetMessage()}
				e.progress.clear()
				fmt.Fprintf(e.stderr, "line %d: %s: %s\n", lines[i], out.Error.Code, out.Error.Message)
			} else {
				written++
				s := summaries[r.GetPartition()]
				if s == nil {
					s = &partitionSummary{first: r.GetOffset()}
					summaries[r.GetPartition()] = s
				}
				s.records++
				s.first, s.last = min(s.first, r.GetOffset()), max(s.last, r.GetOffset())
			}
			if e.json() {
				if err := e.printJSONLine(out); err != nil {
					return err
				}
			}
		}
		recs, lines = recs[:0], lines[:0]
		e.progress.update(false, "%d records written to %s", written, topic)
		return nil
	}
	for sc.Scan() {
		lineNo++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		rec, err := parseRecord(line, b64)
		if err != nil {
			return fmt.Errorf("line %d: %w (%d records written before)", lineNo, err, written)
		}
		recs, lines = append(recs, rec), append(lines, lineNo)
		if len(recs) >= batchSize {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read input: %w (%d records written before)", err, written)
	}
	if err := send(); err != nil {
		return err
	}
	e.progress.update(true, "%d records written to %s", written, topic)
	e.progress.done()
	if !e.json() {
		fmt.Fprintf(e.stdout, "%d records written to %s", written, topic)
		if failed > 0 {
			fmt.Fprintf(e.stdout, ", %d failed", failed)
		}
		fmt.Fprintln(e.stdout)
		if len(summaries) > 0 {
			fmt.Fprintln(e.stdout)
			t := e.table("PARTITION", "RECORDS", "FIRST OFFSET", "LAST OFFSET")
			parts := make([]int32, 0, len(summaries))
			for p := range summaries {
				parts = append(parts, p)
			}
			slices.Sort(parts)
			for _, p := range parts {
				s := summaries[p]
				t.row(p, s.records, s.first, s.last)
			}
			t.flush()
		}
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d records were not written", errPartial, failed, failed+written)
	}
	return nil
}
