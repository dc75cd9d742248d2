package main

import (
	"bytes"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	gatewayv1 "github.com/kafkagate/gateway/gen/gateway/v1"
)

// A record's key and value keep their presence: without a key, or with
// "key": null, the record has no key (null), and "key": "" is an empty key;
// "value": null is a null value (a tombstone), and a record without value,
// or with "value": "", has an empty value. Until the API could tell null
// from empty, "value": null wrote an empty value and "key": "" no key.
func TestParseRecord(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, line     string
		b64            bool
		key, value     string
		nullKey        bool
		nullValue      bool
		headers        []string // key=value
		partition      int32    // -1: none
		idempotencyKey string
		err            string
	}{
		{name: "strings", line: `{"key":"k","value":"héllo"}`, key: "k", value: "héllo", partition: -1},
		{name: "JSON value", line: `{"value": {"a": [1, 2]}}`, nullKey: true, value: `{"a":[1,2]}`, partition: -1},
		{name: "number value", line: `{"value": 12}`, nullKey: true, value: `12`, partition: -1},
		{name: "null value: a tombstone", line: `{"key":"k","value":null}`, key: "k", nullValue: true, partition: -1},
		{name: "no value: an empty value", line: `{"key":"k"}`, key: "k", partition: -1},
		{name: "empty value", line: `{"key":"k","value":""}`, key: "k", partition: -1},
		{name: "empty key", line: `{"key":"","value":"v"}`, value: "v", partition: -1},
		{name: "null key", line: `{"key":null,"value":"v"}`, nullKey: true, value: "v", partition: -1},
		{name: "empty key and value in base64", line: `{"key":"","value":""}`, b64: true, partition: -1},
		{name: "headers sorted", line: `{"headers":{"b":"2","a":"1"}}`, nullKey: true, headers: []string{"a=1", "b=2"}, partition: -1},
		{name: "partition and idempotency key", line: `{"partition":2,"idempotency_key":"id-1"}`, nullKey: true, partition: 2, idempotencyKey: "id-1"},
		{name: "base64", line: `{"key":"AAE=","value":"aGk=","headers":{"h":"eA=="}}`, b64: true, key: "\x00\x01", value: "hi", headers: []string{"h=x"}, partition: -1},
		{name: "bad base64", line: `{"value":"%%%"}`, b64: true, err: "value: not base64"},
		{name: "unknown field", line: `{"valeu":"x"}`, err: "unknown field"},
		{name: "not JSON", line: `hello`, err: "invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec, err := parseRecord([]byte(tc.line), tc.b64)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// What the gateway receives: presence survives the wire.
			wire, err := proto.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			rec = &gatewayv1.Record{}
			if err := proto.Unmarshal(wire, rec); err != nil {
				t.Fatal(err)
			}
			var hs []string
			for _, h := range rec.GetHeaders() {
				hs = append(hs, h.GetKey()+"="+string(h.GetValue()))
			}
			p := int32(-1)
			if rec.Partition != nil {
				p = rec.GetPartition()
			}
			if string(rec.GetKey()) != tc.key || string(rec.GetValue()) != tc.value || !slices.Equal(hs, tc.headers) ||
				p != tc.partition || rec.GetIdempotencyKey() != tc.idempotencyKey {
				t.Errorf("record = %v", rec)
			}
			if (rec.Key == nil) != tc.nullKey || (rec.Value == nil) != tc.nullValue {
				t.Errorf("key null %v, value null %v; want %v, %v", rec.Key == nil, rec.Value == nil, tc.nullKey, tc.nullValue)
			}
		})
	}
}

func TestParseOffsets(t *testing.T) {
	t.Parallel()
	got, err := parseOffsets("orders/0=5, orders.dlq/12=0")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].GetTopic() != "orders" || got[0].GetOffset() != 5 || got[1].GetTopic() != "orders.dlq" || got[1].GetPartition() != 12 {
		t.Errorf("parsed %v", got)
	}
	for _, bad := range []string{"orders=1", "orders/x=1", "orders/0=x", "/0=1", ""} {
		if _, err := parseOffsets(bad); err == nil {
			t.Errorf("parseOffsets(%q) succeeded", bad)
		}
	}
}

func TestCodeName(t *testing.T) {
	t.Parallel()
	for c, want := range map[codes.Code]string{codes.NotFound: "NOT_FOUND", codes.OK: "OK", codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.Unavailable: "UNAVAILABLE"} {
		if got := codeName(c); got != want {
			t.Errorf("codeName(%v) = %q, want %q", c, got, want)
		}
	}
}

func TestFlagsMayFollowPositionalArguments(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("output", "table", "")
	args, err := parseInterspersed(fs, []string{"a", "--output", "json", "b", "-"})
	if err != nil || *out != "json" || !slices.Equal(args, []string{"a", "b", "-"}) {
		t.Errorf("args %v, output %q, err %v", args, *out, err)
	}
}

func TestUsageErrorsExitTwoWithoutDialing(t *testing.T) {
	t.Parallel()
	for _, argv := range [][]string{
		{},
		{"frobnicate"},
		{"topics"},
		{"produce"},
		{"tail", "--topic", "t"},
		{"reset", "--group", "g", "--topic", "t"},
		{"lag", "--group", "g", "--output", "yaml"},
		{"--no-such-flag", "lag"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), argv, strings.NewReader(""), &stdout, &stderr); code != exitUsage {
			t.Errorf("gatewayctl %v: exit %d, want %d (stderr %q)", argv, code, exitUsage, stderr.String())
		}
	}
	var stdout bytes.Buffer
	if code := run(t.Context(), []string{"help", "dlq", "replay"}, nil, &stdout, io.Discard); code != exitOK || !strings.Contains(stdout.String(), "--target-topic") && !strings.Contains(stdout.String(), "-target-topic") {
		t.Errorf("help dlq replay: exit %d, output %q", code, stdout.String())
	}
}
